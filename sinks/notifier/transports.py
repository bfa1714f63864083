"""Transports: send one planned action (an email over SMTP, a JSON POST) and say how it went.

Thin adapters around aiosmtplib and aiohttp: every answer or error becomes an `Attempt` (sent, retry,
permanent) through the pure classifiers in `outcomes`; nothing here raises on a delivery failure.
"""

from __future__ import annotations

from typing import Protocol

import aiohttp
import aiosmtplib

from sinks.notifier.delivery import Action, EmailSend, HttpPost
from sinks.notifier.outcomes import Attempt, classify_http, classify_smtp


class Sender(Protocol):
    """Anything that can attempt one action."""

    async def send(self, action: Action) -> Attempt: ...


class Transports:
    """SMTP to one server and JSON webhooks over one aiohttp session (open with `async with`)."""

    def __init__(self, smtp_host: str, smtp_port: int, timeout_s: float = 10.0) -> None:
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Transports:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers={"User-Agent": "fleetwatch-notifier"},
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, action: Action) -> Attempt:
        if isinstance(action, EmailSend):
            return await self.send_email(action)
        return await self.post_json(action)

    async def send_email(self, action: EmailSend) -> Attempt:
        """One email to one recipient through the configured SMTP server."""
        try:
            await aiosmtplib.send(
                action.message,
                recipients=[action.recipient],
                hostname=self.smtp_host,
                port=self.smtp_port,
                timeout=self.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0] if exc.recipients else None
            if refused is None:
                return Attempt.permanent("SMTP: every recipient refused")
            return classify_smtp(refused.code, refused.message)
        except aiosmtplib.SMTPResponseException as exc:
            return classify_smtp(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError) as exc:  # connection refused/lost, timeouts
            return Attempt.retry(f"SMTP {self.smtp_host}:{self.smtp_port}: {type(exc).__name__}: {exc}")
        return Attempt.sent()

    async def post_json(self, action: HttpPost) -> Attempt:
        """POST a JSON body; the status decides (connection errors and timeouts retry)."""
        if self._session is None:
            raise RuntimeError("Transports used outside `async with`")
        try:
            async with self._session.post(action.url, json=action.body) as response:
                text = "" if 200 <= response.status < 300 else await response.text(errors="replace")
                return classify_http(response.status, text)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Attempt.retry(f"POST {action.url}: {type(exc).__name__}: {exc}".rstrip(": "))
