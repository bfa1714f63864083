"""A local webhook receiver for the demo and the tests: records pages and calls.

`WebhookCatcher(port, path)` runs an aiohttp server on 127.0.0.1:<port> in a background thread
(`start()` / `stop()`, or `with`):

  POST /v2/enqueue   a page, PagerDuty Events API v2 shaped; answers 202 like PagerDuty
  POST /call         a call request (generic JSON); answers 200
  POST /webhook      any other notification (generic JSON); answers 200

Each accepted request is appended to `records` as {"kind": "page"|"call"|"webhook", "body": ...}, to the
JSONL file `path` when given, and passed to the callback (kind, body). A body that is not a JSON object is
answered 400. `fail_next(n)` answers the next n requests with 500 (for retry tests); `requests` counts
every request, failed ones included. Port 0 picks a free port (`port` holds the real one after `start()`).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

WebhookCallback = Callable[[str, dict[str, Any]], None]

ROUTES = {"/v2/enqueue": ("page", 202), "/call": ("call", 200), "/webhook": ("webhook", 200)}


class WebhookCatcher:
    """HTTP receiver on 127.0.0.1 that records pages and calls (thread-safe accessors)."""

    def __init__(
        self,
        port: int = 0,
        path: Path | None = None,
        callback: WebhookCallback | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.callback = callback
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        self._failures_left = 0
        self.requests = 0
        """Every request received, failed ones included."""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pager_url(self) -> str:
        """URL to give the notifier as `pager_url`."""
        return f"{self.base_url}/v2/enqueue"

    @property
    def call_url(self) -> str:
        """URL to give the notifier as `call_url`."""
        return f"{self.base_url}/call"

    @property
    def webhook_url(self) -> str:
        """URL to give the notifier as `webhook_url`."""
        return f"{self.base_url}/webhook"

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Bodies accepted so far (of one kind when given), in arrival order."""
        with self._lock:
            return [r["body"] for r in self._records if kind is None or r["kind"] == kind]

    def fail_next(self, count: int) -> None:
        """Answer the next `count` requests with 500 instead of accepting them."""
        with self._lock:
            self._failures_left = count

    # -- server ----------------------------------------------------------------------------------------

    async def _receive(self, request: web.Request) -> web.Response:
        kind, status = ROUTES[request.path]
        with self._lock:
            self.requests += 1
            if self._failures_left > 0:
                self._failures_left -= 1
                return web.json_response({"status": "error", "message": "told to fail"}, status=500)
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"status": "invalid event", "message": "body is not JSON"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"status": "invalid event", "message": "expected an object"}, status=400)
        record = {"kind": kind, "body": body}
        with self._lock:
            self._records.append(record)
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(record, sort_keys=True) + "\n")
        if self.callback is not None:
            self.callback(kind, body)
        if kind == "page":
            return web.json_response(
                {"status": "success", "message": "Event processed", "dedup_key": body.get("dedup_key")},
                status=status,
            )
        return web.json_response({"status": "ok"}, status=status)

    async def _serve(self) -> None:
        app = web.Application()
        for route in ROUTES:
            app.router.add_post(route, self._receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            self.port = runner.addresses[0][1]
            self._stopped = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            await self._stopped.wait()
        finally:
            await runner.cleanup()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._ready.set()

    def start(self, timeout_s: float = 10.0) -> WebhookCatcher:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="webhook-catcher", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"webhook catcher did not start within {timeout_s} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._loop = None

    def __enter__(self) -> WebhookCatcher:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
