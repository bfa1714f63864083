"""Turn the raw facts of one health check into a `ProbeResult`. Pure: no IO, no clock, no aiohttp.

The check (`probes.checks`) only gathers facts: when it started, how long it took, the HTTP status and the
first bytes of the body, or the exception that ended it. `classify()` decides what they mean:

- ok: no error, the expected status (http) or an open connection (tcp), and within `server.timeout_s`;
- otherwise one error class: ``timeout``, ``refused``, ``dns``, ``reset``, ``tls``, ``unexpected_status``
  or ``error`` (anything else), with a short human-readable message;
- a JSON object body is searched for `HealthMetrics` fields (top level, or under ``metrics``/``health``);
  fields that are missing or invalid are left out, and a body that is not JSON carries no metrics. The body
  never changes whether the probe passed.

Exceptions are classified by standard-library type (`TimeoutError`, `socket.gaierror`, `ssl.SSLError`,
`ConnectionRefusedError`, ...) and errno, walking ``__cause__``/``__context__``; the check unwraps its HTTP
client's own exception types into these before calling.
"""

from __future__ import annotations

import errno
import socket
import ssl
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import ValidationError

from fleetcore.clock import to_epoch_ms
from schemas.inventory import ProbeKind, Server
from schemas.probes import HealthMetrics, ProbeResult

MAX_MESSAGE = 1000
"""ProbeResult.error_message is cut to this many characters."""


class ErrorClass(StrEnum):
    """Why a probe failed."""

    TIMEOUT = "timeout"
    """No (complete) answer within the server's timeout."""
    REFUSED = "refused"
    """The connection was refused: nothing listens on the port."""
    DNS = "dns"
    """The host name did not resolve."""
    RESET = "reset"
    """The connection was reset or closed before an answer."""
    TLS = "tls"
    """TLS handshake or certificate failure."""
    UNEXPECTED_STATUS = "unexpected_status"
    """An HTTP answer arrived, but not with the expected status."""
    ERROR = "error"
    """Any other failure."""


_RESET_ERRNOS = {errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ENOTCONN}
_HEALTH_FIELDS = tuple(HealthMetrics.model_fields)


def probe_id_for(server_id: str, started_at: datetime) -> str:
    """The unique id of one probe: `<server_id>@<epoch ms of its start>`."""
    return f"{server_id}@{to_epoch_ms(started_at)}"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _class_of_one(exc: BaseException) -> ErrorClass | None:
    # Order matters: ssl.SSLError and socket.gaierror are OSErrors, TimeoutError is one too.
    if isinstance(exc, TimeoutError):
        return ErrorClass.TIMEOUT
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return ErrorClass.TLS
    if isinstance(exc, socket.gaierror | socket.herror):
        return ErrorClass.DNS
    if isinstance(exc, ConnectionRefusedError):
        return ErrorClass.REFUSED
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        return ErrorClass.RESET
    if isinstance(exc, OSError):
        if exc.errno == errno.ECONNREFUSED:
            return ErrorClass.REFUSED
        if exc.errno in _RESET_ERRNOS:
            return ErrorClass.RESET
        if exc.errno == errno.ETIMEDOUT:
            return ErrorClass.TIMEOUT
    return None


def error_class_of(exc: BaseException) -> ErrorClass:
    """The error class of an exception that ended a check (first recognised one along its cause chain)."""
    for link in _chain(exc):
        found = _class_of_one(link)
        if found is not None:
            return found
    return ErrorClass.ERROR


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def _cut(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def parse_health(body: bytes | None) -> HealthMetrics | None:
    """HealthMetrics from a JSON status body; None when the body has none. Never raises."""
    if not body:
        return None
    stripped = body.lstrip()
    if not stripped.startswith(b"{"):
        return None
    try:
        data = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    source: dict[str, Any] = data
    if not any(name in data for name in _HEALTH_FIELDS):
        nested = data.get("metrics", data.get("health"))
        if not isinstance(nested, dict):
            return None
        source = nested
    fields: dict[str, Any] = {}
    for name in _HEALTH_FIELDS:
        value = source.get(name)
        if value is None or isinstance(value, bool):
            continue
        try:  # one field at a time: a bad field is dropped, the good ones are kept
            HealthMetrics.model_validate({name: value})
        except ValidationError:
            continue
        fields[name] = value
    return HealthMetrics.model_validate(fields) if fields else None


def classify(
    server: Server,
    started_at: datetime,
    latency_ms: float,
    status_code: int | None,
    body: bytes | None,
    error: BaseException | None,
    worker_id: str,
) -> ProbeResult:
    """The ProbeResult of one check of `server` from its raw facts.

    `latency_ms` is the time from the start to the answer (or to the failure); `status_code` and `body`
    are what an http check received (None for tcp checks or when nothing arrived); `error` is the exception
    that ended the check, if any.
    """
    latency = max(0, round(latency_ms))
    timeout_ms = server.timeout_s * 1000.0
    status = status_code if status_code is not None and 100 <= status_code <= 599 else None
    is_http = server.probe is ProbeKind.HTTP
    if not is_http:
        status = None

    error_class: ErrorClass | None = None
    message: str | None = None
    if error is not None:
        error_class = error_class_of(error)
        message = _describe(error)
    elif latency_ms > timeout_ms:
        error_class = ErrorClass.TIMEOUT
        message = f"answered after {latency} ms, timeout is {round(timeout_ms)} ms"
    elif is_http and status_code is None:
        error_class = ErrorClass.ERROR
        message = "no HTTP status received"
    elif is_http and status != server.expected_status:
        error_class = ErrorClass.UNEXPECTED_STATUS
        message = f"expected HTTP {server.expected_status}, got {status_code}"

    return ProbeResult(
        server_id=server.server_id,
        customer_id=server.customer_id,
        partner_id=server.partner_id,
        probe_id=probe_id_for(server.server_id, started_at),
        started_at=started_at,
        latency_ms=latency,
        ok=error_class is None,
        status_code=status,
        error_class=None if error_class is None else error_class.value,
        error_message=None if message is None else _cut(message),
        worker_id=worker_id,
        health=parse_health(body) if is_http else None,
        backup_of=server.backup_of,
    )
