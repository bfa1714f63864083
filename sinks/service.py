"""The sink process: owns the history store, runs the ingest loop in a thread, serves the query API.

`run(settings)` is the blocking entry of `fleetwatch sink` (and `python -m sinks`): SIGINT/SIGTERM stop it
cleanly (the chunk being filled is abandoned uncommitted, the consumer leaves its group). `SinkService`
adds run-until options for tests: `stop_event`, `until(stats)`, `max_idle_s` (burst: stop when drained).

At start the store is migrated and its retention applied (`history.retention`); a second thread keeps the
maintenance_windows table equal to the maintenance topic (`sinks.windows`).

HTTP (aiohttp, settings.sink_http_host:sink_http_port; port 0 picks a free one):
  GET /api/history/{server_id}?limit=N   a server's recent probes and case events (JSON; 400 on bad input)
  GET /api/counts                        rows and distinct keys per table (JSON)
  GET /api/reports/{uptime|sla|capacity|cases}?month=YYYY-MM[&customer=..&server=..&format=json|csv
      &threshold_ms=..][&case=<id|ticket>]  a report (history.reports; case: the sla report of one case);
                                         /api/reports/{name}.svg its chart
  GET /healthz                           liveness and ingest totals (JSON)
  GET /metrics                           Prometheus text
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict
from types import FrameType
from typing import Any

from aiohttp import web
from clickhouse_connect.driver.client import Client
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fleetcore.errors import FleetwatchError, StoreError
from fleetcore.logs import setup_logging
from fleetcore.settings import Settings
from history.charts import render as render_chart
from history.ddl import migrate
from history.queries import InvalidQuery, counts, server_history
from history.reports import load_policies, parse, run_request, to_csv
from history.retention import apply_retention
from history.store import connect, redact
from policy.maintenance_feed import MaintenanceFeed
from schemas.topics import Topics
from sinks.analysts import AnalystsServer, start_analysts
from sinks.clickhouse import ClickHouseSink, SinkMetrics, SinkStats
from sinks.windows import WindowWriter

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 20
MAINTENANCE_WAIT_S = 30.0
"""How long the sink waits at start for the maintenance topic before it stores results regardless."""


class SinkService:
    """One sink process's worth of work, runnable in-process with stop conditions."""

    def __init__(
        self,
        settings: Settings,
        *,
        stop_event: threading.Event | None = None,
        until: Callable[[SinkStats], bool] | None = None,
        max_idle_s: float | None = None,
        http: bool = True,
        grace_ms: int = 2000,
        max_poll_records: int = 500,
    ) -> None:
        self.settings = settings
        self.stop_event = stop_event or threading.Event()
        self.until = until
        self.max_idle_s = max_idle_s
        self.http = http
        self.grace_ms = grace_ms
        self.max_poll_records = max_poll_records
        self.metrics = SinkMetrics()
        self.ready = threading.Event()
        """Set once the store is migrated, the consumer started and the HTTP API listening."""
        self.http_url: str | None = None
        """Base URL of the HTTP API once listening (the real port when settings asked for 0)."""
        self.analysts_url: str | None = None
        """Base URL of the analysts' read-only ClickHouse HTTP endpoint (sinks.analysts) once listening,
        when settings.analysts_port is on and the store is embedded."""
        self.analysts: AnalystsServer | None = None
        """The analysts' endpoint while it runs (its query slots and sign-in throttle)."""
        self.stats: SinkStats | None = None
        self.maintenance: MaintenanceFeed | None = None
        """The followed maintenance windows while running."""
        self._query_client: Client | None = None
        self._query_lock = threading.Lock()

    # -- queries (HTTP thread pool) ------------------------------------------------------------------

    def _query(self, fn: Callable[[Client], Any]) -> Any:
        with self._query_lock:
            if self._query_client is None:
                raise StoreError("the history store is not open")
            return fn(self._query_client)

    async def _history(self, request: web.Request) -> web.Response:
        server_id = request.match_info["server_id"]
        raw_limit = request.query.get("limit", str(DEFAULT_LIMIT))
        try:
            limit = int(raw_limit)
        except ValueError:
            return web.json_response({"error": f"limit must be an integer (got {raw_limit!r})"}, status=400)
        try:
            data = await asyncio.to_thread(self._query, lambda c: server_history(c, server_id, limit))
        except InvalidQuery as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except StoreError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.json_response(data)

    async def _counts(self, request: web.Request) -> web.Response:
        try:
            data = await asyncio.to_thread(self._query, counts)
        except StoreError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        return web.json_response(data)

    async def _report(self, request: web.Request) -> web.Response:
        try:
            wanted = parse(request.match_info["name"], request.query)
            policies = load_policies(self.settings.sla_policy_file)
            data = await asyncio.to_thread(self._query, lambda c: run_request(c, wanted, policies))
        except InvalidQuery as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except FleetwatchError as exc:
            return web.json_response({"error": str(exc)}, status=503)
        if wanted.svg:
            return web.Response(text=render_chart(data), content_type="image/svg+xml")
        if wanted.format == "csv":
            return web.Response(text=to_csv(data["rows"]), content_type="text/csv")
        return web.json_response(data)

    async def _healthz(self, request: web.Request) -> web.Response:
        stats = asdict(self.stats) if self.stats is not None else {}
        stats.pop("last_message_at", None)
        return web.json_response(
            {"status": "ok", "store": redact(self.settings.store_dsn()), "ingest": stats}
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    def app(self) -> web.Application:
        """The HTTP API."""
        app = web.Application()
        app.router.add_get("/api/history/{server_id}", self._history)
        app.router.add_get("/api/counts", self._counts)
        app.router.add_get("/api/reports/{name}", self._report)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        return app

    # -- run -----------------------------------------------------------------------------------------

    def _ingest(self, sink: ClickHouseSink) -> SinkStats:
        try:
            return sink.run(self.stop_event, until=self.until, max_idle_s=self.max_idle_s)
        finally:
            self.stop_event.set()

    async def _serve(self, sink: ClickHouseSink) -> SinkStats:
        runner: web.AppRunner | None = None
        if self.http:
            runner = web.AppRunner(self.app(), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, self.settings.sink_http_host, self.settings.sink_http_port)
            try:
                await site.start()
            except OSError as exc:
                await runner.cleanup()
                raise FleetwatchError(
                    f"sink HTTP API cannot listen on {self.settings.sink_http_host}:"
                    f"{self.settings.sink_http_port}: {exc}"
                ) from exc
            host, port = runner.addresses[0][:2]
            self.http_url = f"http://{host}:{port}"
            log.info("sink: query API on %s", self.http_url)
        analysts: AnalystsServer | None = None
        try:
            analysts = self.analysts = await start_analysts(self.settings)
            self.analysts_url = analysts.url if analysts is not None else None
            self.ready.set()
            return await asyncio.to_thread(self._ingest, sink)
        finally:
            self.stop_event.set()
            if analysts is not None:
                await analysts.close()
            if runner is not None:
                await runner.cleanup()

    def run(self) -> SinkStats:
        """Open and migrate the store, start consuming, serve HTTP; return when a stop condition holds."""
        dsn = self.settings.store_dsn()
        if self.settings.create_topics:
            from fleetcore.kafka_admin import ensure_topics

            ensure_topics(self.settings.kafka_bootstrap, Topics(self.settings.topic_prefix))
        ingest_client = connect(dsn, self.settings.clickhouse_database)
        try:
            applied = migrate(ingest_client)
            if applied:
                log.info("sink: history store %s migrated to %s", redact(dsn), applied)
            apply_retention(
                ingest_client,
                self.settings.history_raw_retention_days,
                self.settings.history_rollup_retention_days,
            )
            self._query_client = connect(dsn, self.settings.clickhouse_database)
            maintenance = self.maintenance = MaintenanceFeed(
                self.settings.kafka_bootstrap,
                Topics(self.settings.topic_prefix).maintenance,
                "sink-maintenance",
            )
            maintenance.start(MAINTENANCE_WAIT_S, self.stop_event)
            windows_client = connect(dsn, self.settings.clickhouse_database)
            windows = threading.Thread(
                target=WindowWriter(windows_client, maintenance.follower).run,
                args=(self.stop_event,),
                name="sink-windows",
                daemon=True,
            )
            windows.start()
            try:
                sink = ClickHouseSink(
                    self.settings,
                    ingest_client,
                    metrics=self.metrics,
                    grace_ms=self.grace_ms,
                    max_poll_records=self.max_poll_records,
                    planned=maintenance.planned,
                )
                self.stats = sink.stats
                sink.start()
                try:
                    return asyncio.run(self._serve(sink))
                finally:
                    sink.close()
            finally:
                self.stop_event.set()
                windows.join(10)
                windows_client.close()
                maintenance.stop()
        finally:
            self.ready.clear()
            with self._query_lock:
                if self._query_client is not None:
                    self._query_client.close()
                    self._query_client = None
            ingest_client.close()


def run(settings: Settings) -> None:
    """Blocking entry of `fleetwatch sink`: runs until SIGINT or SIGTERM."""
    setup_logging(settings.log_level)
    service = SinkService(settings)

    def _stop(signum: int, frame: FrameType | None) -> None:
        log.info("sink: signal %d, stopping", signum)
        service.stop_event.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stats = service.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("sink: stopped after %d messages, rows %s", stats.messages, stats.rows)
