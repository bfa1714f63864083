"""The IO of a health check: an HTTP GET with aiohttp or a TCP connect with asyncio.

A check never raises (except on cancellation): it returns the raw facts (`RawProbe`) that
`probes.classify.classify` turns into a ProbeResult. aiohttp's own exception types are unwrapped here into
the standard-library exceptions classify understands (refused, DNS, TLS, reset, timeout).

HTTP checks share one `ClientSession` (see `new_session`): no connection reuse between probes (each probe
opens its own connection, as a health check should), redirects are not followed (the status received is the
status judged), at most `MAX_BODY` bytes of the body are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from fleetcore.clock import Clock
from schemas.inventory import ProbeKind, Server

MAX_BODY = 64 * 1024
"""Bytes of a status body read at most."""
USER_AGENT = "fleetwatch-probe/0.1"


@dataclass(frozen=True)
class RawProbe:
    """What one check observed, before classification."""

    started_at: datetime
    """When the check started (from the worker's Clock)."""
    latency_ms: float
    """Time to the answer or to the failure (monotonic, real milliseconds)."""
    status_code: int | None = None
    """HTTP status received (http checks)."""
    body: bytes | None = None
    """The first MAX_BODY bytes of the body (http checks)."""
    error: BaseException | None = None
    """The exception that ended the check, in standard-library terms where possible."""


def new_session(concurrency: int) -> aiohttp.ClientSession:
    """The one HTTP session of a worker: up to `concurrency` connections, none kept alive."""
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=True, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json, */*;q=0.5"},
        raise_for_status=False,
        auto_decompress=True,
    )


def unwrap(exc: BaseException) -> BaseException:
    """The standard-library exception behind an aiohttp one (itself when there is none)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error: BaseException = exc.certificate_error
        return cert_error
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error: BaseException = exc.os_error
        if isinstance(exc, aiohttp.ClientConnectorDNSError) and not isinstance(os_error, socket.gaierror):
            return socket.gaierror(str(exc))
        if isinstance(exc, aiohttp.ClientSSLError) and not isinstance(os_error, ssl.SSLError):
            return ssl.SSLError(str(exc))
        return os_error
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ConnectionResetError(f"server disconnected: {exc}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ConnectionResetError(f"body cut short: {exc}")
    return exc


async def _read_some(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def http_check(session: aiohttp.ClientSession, server: Server, clock: Clock) -> RawProbe:
    """GET the server's status URL within its timeout; read the status and up to MAX_BODY body bytes."""
    started_at = clock.now()
    start = time.monotonic()
    status: int | None = None
    body: bytes | None = None
    error: BaseException | None = None
    try:
        async with asyncio.timeout(server.timeout_s):
            async with session.get(
                server.target,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=server.timeout_s),
            ) as response:
                status = response.status
                body = await _read_some(response, MAX_BODY)
    except TimeoutError as exc:
        error = TimeoutError(f"no complete answer within {server.timeout_s:g} s") if not str(exc) else exc
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        error = unwrap(exc)
    latency_ms = (time.monotonic() - start) * 1000.0
    return RawProbe(started_at, latency_ms, status, body, error)


def split_host_port(target: str) -> tuple[str, int]:
    """Host and port of a tcp target `host:port` (IPv6 hosts may be bracketed: `[::1]:22`)."""
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


async def tcp_check(server: Server, clock: Clock) -> RawProbe:
    """Open a TCP connection to host:port within the server's timeout, then close it."""
    started_at = clock.now()
    start = time.monotonic()
    error: BaseException | None = None
    host, port = split_host_port(server.target)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(server.timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        error = TimeoutError(f"no connection within {server.timeout_s:g} s")
    except (OSError, ValueError) as exc:
        error = exc
    latency_ms = (time.monotonic() - start) * 1000.0
    if writer is not None:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return RawProbe(started_at, latency_ms, error=error)


async def check(session: aiohttp.ClientSession, server: Server, clock: Clock) -> RawProbe:
    """Run the check the server's probe kind calls for."""
    if server.probe is ProbeKind.TCP:
        return await tcp_check(server, clock)
    return await http_check(session, server, clock)
