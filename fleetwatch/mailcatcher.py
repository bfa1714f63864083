"""A local SMTP catcher for the demo and the tests: accepts every email and keeps it as a file.

`MailCatcher(directory, port)` runs an aiosmtpd server on 127.0.0.1:<port> in a background thread
(`start()` / `stop()`, or `with`). Each message is stored as `<directory>/<n>.eml` (n = 1, 2, ...) and kept
in `messages`; an optional callback gets (sender, recipients, subject). `fail_next(n)` answers the next n
messages with a transient `451` (the sender should retry), for tests of retries. Port 0 picks a free port
(`port` holds the real one after `start()`).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller

MailCallback = Callable[[str, list[str], str], None]


class _Handler:
    def __init__(self, catcher: MailCatcher) -> None:
        self.catcher = catcher

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # the name aiosmtpd calls
        return self.catcher._received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))


class _Controller(Controller):
    """aiosmtpd's controller, able to listen on port 0 (it must learn the port before its self-test)."""

    def _trigger_server(self) -> None:
        if self.port == 0 and isinstance(self.server, asyncio.Server):
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class MailCatcher:
    """SMTP server on 127.0.0.1 that stores what it receives (thread-safe accessors)."""

    def __init__(
        self, directory: Path, port: int = 0, callback: MailCallback | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.directory = directory
        self.host = host
        self.port = port
        self.callback = callback
        self._lock = threading.Lock()
        self._messages: list[EmailMessage] = []
        self._failures_left = 0
        self.refused = 0
        """Messages answered with 451 by `fail_next`."""
        self._controller: _Controller | None = None

    def start(self) -> MailCatcher:
        self.directory.mkdir(parents=True, exist_ok=True)
        controller = _Controller(_Handler(self), hostname=self.host, port=self.port)
        controller.start()
        self._controller = controller
        self.port = controller.port
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailCatcher:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def fail_next(self, count: int) -> None:
        """Answer the next `count` messages with `451` (transient failure) instead of accepting them."""
        with self._lock:
            self._failures_left = count

    @property
    def messages(self) -> list[EmailMessage]:
        """Every accepted message so far, in arrival order."""
        with self._lock:
            return list(self._messages)

    def _received(self, sender: str, recipients: list[str], content: bytes) -> str:
        with self._lock:
            if self._failures_left > 0:
                self._failures_left -= 1
                self.refused += 1
                return "451 4.3.0 Try again later (mail catcher told to fail)"
            message = email.message_from_bytes(content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            self._messages.append(message)
            (self.directory / f"{len(self._messages)}.eml").write_bytes(content)
        if self.callback is not None:
            self.callback(sender, recipients, str(message.get("Subject", "")))
        return "250 Message accepted for delivery"
