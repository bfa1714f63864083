"""A built-in demo fleet of simulated "MyCorpServer"s, for `fleetwatch up`, tests and benchmarks.

One aiohttp app on 127.0.0.1 serves every http server at ``/srv/{server_id}/status``: 200 with a JSON body
of health metrics (load1, connections, users, cpu/memory/disk percent) while the server is up. A few tcp
servers listen on their own ports (asyncio servers). What each server does is its mode:

- ``up``: healthy (http 200 + metrics; tcp accepts);
- ``down``: http 503; tcp stops listening (connection refused);
- ``hang``: http never answers within the probe timeout; tcp as ``down``;
- ``reset``: http connection reset before an answer; tcp as ``down``;
- ``slow``: http 200 after `slow_s` (still within the timeout); tcp as ``up``.

The mode comes from the script, plain data: `Outage(server_id, start_s, end_s, mode)` entries, seconds since
the fleet started as the injected fleetcore Clock tells it (a ScaledClock runs the script in policy time;
tests pass a clock they move by hand). `set_down`/`set_up` override the script for one server;
`follow_script` removes the override.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from aiohttp import web

from fleetcore.clock import Clock, SystemClock
from schemas.inventory import ProbeKind, Server, ServerRole

log = logging.getLogger(__name__)

TIMEOUT_S = 2.0
"""Probe timeout of the demo servers: a hanging server fails within two seconds."""


class Mode(StrEnum):
    """What a demo server does when probed."""

    UP = "up"
    DOWN = "down"
    HANG = "hang"
    RESET = "reset"
    SLOW = "slow"


@dataclass(frozen=True)
class Outage:
    """One line of the script: `server_id` behaves as `mode` from `start_s` to `end_s` (fleet seconds)."""

    server_id: str
    start_s: float
    end_s: float
    mode: Mode

    def active(self, elapsed_s: float) -> bool:
        return self.start_s <= elapsed_s < self.end_s


@dataclass(frozen=True)
class DemoServer:
    """One simulated server: who owns it and how it is probed."""

    server_id: str
    customer_id: str
    partner_id: str | None = None
    role: ServerRole = ServerRole.PRIMARY
    backup_of: str | None = None
    kind: ProbeKind = ProbeKind.HTTP


P, S = ServerRole.PRIMARY, ServerRole.SECONDARY
DEMO_SERVERS: tuple[DemoServer, ...] = (
    DemoServer("demo-srv-01", "acme", "northwind-partners"),
    DemoServer("demo-srv-02", "acme", "northwind-partners", S, "demo-srv-01"),
    DemoServer("demo-srv-03", "globex", "telco-isp"),
    DemoServer("demo-srv-04", "globex", "telco-isp", S, "demo-srv-03"),
    DemoServer("demo-srv-05", "initech"),
    DemoServer("demo-srv-06", "initech", None, S, "demo-srv-05"),
    DemoServer("demo-srv-07", "umbrella", "northwind-partners"),
    DemoServer("demo-srv-08", "umbrella", "northwind-partners"),
    DemoServer("demo-srv-09", "hooli"),
    DemoServer("demo-srv-10", "hooli", None, S, "demo-srv-09"),
    DemoServer("demo-srv-11", "stark", "telco-isp"),
    DemoServer("demo-srv-12", "wayne"),
    DemoServer("demo-tcp-01", "acme", "northwind-partners", kind=ProbeKind.TCP),
    DemoServer("demo-tcp-02", "globex", "telco-isp", kind=ProbeKind.TCP),
)
"""The default demo fleet: a dozen http servers (primary/secondary pairs, partners) and two tcp servers."""


def flapping(
    server_id: str, start_s: float, up_s: float, down_s: float, cycles: int, mode: Mode
) -> list[Outage]:
    """A server that goes `mode` for `down_s`, then up for `up_s`, `cycles` times from `start_s`."""
    period = up_s + down_s
    return [
        Outage(server_id, start_s + i * period, start_s + i * period + down_s, mode) for i in range(cycles)
    ]


DEFAULT_SCRIPT: tuple[Outage, ...] = (
    Outage("demo-srv-03", 5.0, 5.0 + 300.0, Mode.DOWN),  # a real outage: a Sev1 with its whole timeline
    *flapping("demo-srv-07", 30.0, 90.0, 45.0, 20, Mode.RESET),  # flapping: fails a few times, recovers
    Outage("demo-srv-05", 0.0, math.inf, Mode.SLOW),  # always slow but within its timeout
    Outage("demo-srv-11", 60.0, 120.0, Mode.HANG),  # hangs past the probe timeout for a minute
    Outage("demo-tcp-02", 40.0, 100.0, Mode.DOWN),  # tcp port closed for a minute
)
"""The default script: demo-srv-03 down from t=5 s for 5 minutes (at the demo's 60x policy clock: page at
open, VP escalation at 1 h under globex's own plan, hourly status notices from 2 h), demo-srv-07 flapping,
demo-srv-05 slow, demo-srv-11 hanging for a minute, demo-tcp-02 refusing connections for a minute."""


def generated_servers(count: int, prefix: str = "fleet-srv") -> list[DemoServer]:
    """`count` http demo servers spread over a few customers (for tests and benchmarks)."""
    customers = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne")
    return [DemoServer(f"{prefix}-{i:05d}", customers[i % len(customers)]) for i in range(count)]


def demo_inventory(
    http_base: str,
    tcp_targets: Mapping[str, str],
    specs: Iterable[DemoServer] = DEMO_SERVERS,
    timeout_s: float = TIMEOUT_S,
) -> list[Server]:
    """The inventory of a demo fleet: http servers at `<http_base>/srv/<id>/status`, tcp at `host:port`."""
    servers = []
    for spec in specs:
        if spec.kind is ProbeKind.TCP:
            target = tcp_targets[spec.server_id]
        else:
            target = f"{http_base.rstrip('/')}/srv/{spec.server_id}/status"
        servers.append(
            Server(
                server_id=spec.server_id,
                customer_id=spec.customer_id,
                partner_id=spec.partner_id,
                role=spec.role,
                backup_of=spec.backup_of,
                probe=spec.kind,
                target=target,
                timeout_s=timeout_s,
            )
        )
    return servers


def health_body(server_id: str, elapsed_s: float) -> dict[str, float | int | str]:
    """Plausible, deterministic health figures of one server at one moment."""
    seed = int.from_bytes(hashlib.sha256(server_id.encode()).digest()[:4], "big")
    wave = (math.sin(elapsed_s / 60.0 + seed % 7) + 1) / 2  # 0..1, slow
    users = 5 + seed % 40
    return {
        "status": "ok",
        "server_id": server_id,
        "load1": round(0.2 + 3.5 * wave, 2),
        "connections": users * 3 + int(20 * wave),
        "users": users + int(10 * wave),
        "cpu_percent": round(10 + 70 * wave, 1),
        "memory_percent": round(40 + (seed % 30) + 10 * wave, 1),
        "disk_percent": round(30 + (seed % 50), 1),
    }


class _TcpEndpoint:
    """One tcp demo server: a listening socket that can be closed and reopened on the same port.

    The loop watches the socket with `add_reader`; accepted connections are closed at once (a tcp probe only
    needs the connect to succeed). `open` and `close` take effect synchronously, and `close` unregisters
    the socket before closing it: a selector entry left for a closed socket would be inherited by the next
    socket that gets its fd number (that socket's connect then fails with FileNotFoundError). An
    `asyncio.start_server` task in between had such windows (closed while the task was starting the server,
    or after it finished but before its done callback ran).
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self.sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def listening(self) -> bool:
        return self.sock is not None

    def open(self) -> None:
        """Listen now (from the loop's thread): connections are accepted and closed from here on."""
        if self.sock is not None:
            return
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._accept, sock)
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self.sock = sock
        self._loop = loop

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(128):  # what is waiting now; the loop calls again for more
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: pause a second rather than spin (as asyncio's servers do)
                log.warning("demo tcp server on port %d could not accept: %s", self.port, exc)
                if self._loop is not None and self.sock is sock:
                    self._loop.remove_reader(sock.fileno())
                    self._loop.call_later(1.0, self._resume, sock)
                return
            conn.close()

    def _resume(self, sock: socket.socket) -> None:
        if self._loop is not None and self.sock is sock:  # not closed (or reopened) meanwhile
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        """Stop listening now: new connections are refused."""
        sock, loop = self.sock, self._loop
        self.sock = self._loop = None
        if sock is None:
            return
        if loop is not None and not loop.is_closed():
            loop.remove_reader(sock.fileno())  # before the fd is closed and its number reused
        sock.close()


class LoopbackFleet:
    """What the demo fleet and the simulated fleet share: an aiohttp runner, tcp endpoints that follow a
    script (opened and closed by `_reconcile_tcp`, every `_tcp_check_interval_s`), and a clean stop."""

    _tcp: Mapping[Any, _TcpEndpoint]

    def __init__(self, tcp_check_interval_s: float) -> None:
        self._tcp_check_interval_s = tcp_check_interval_s
        self._t0: datetime | None = None
        self._runner: web.BaseRunner | None = None
        self._closing = asyncio.Event()
        self._reconciler: asyncio.Task[None] | None = None

    def _reconcile_tcp(self) -> None:
        """Open or close each tcp endpoint as the script says now."""
        raise NotImplementedError

    def _start_reconciler(self) -> None:
        self._reconcile_tcp()
        if self._tcp:
            self._reconciler = asyncio.create_task(self._reconcile_loop())

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tcp_check_interval_s)
            try:
                self._reconcile_tcp()
            except OSError:
                log.exception("a tcp server could not be reopened")

    async def stop(self) -> None:
        """Stop serving (hanging requests are released first)."""
        self._closing.set()
        if self._reconciler is not None:
            self._reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciler
            self._reconciler = None
        for endpoint in self._tcp.values():
            endpoint.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        raise NotImplementedError


class DemoFleet(LoopbackFleet):
    """Serves a scripted demo fleet on 127.0.0.1 until `stop()`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        specs: Sequence[DemoServer] = DEMO_SERVERS,
        script: Iterable[Outage] = DEFAULT_SCRIPT,
        clock: Clock | None = None,
        timeout_s: float = TIMEOUT_S,
        slow_s: float | None = None,
        tcp_check_interval_s: float = 0.05,
    ) -> None:
        self.host = host
        self.port = port
        self.specs = list(specs)
        self.script = list(script)
        self.timeout_s = timeout_s
        self.slow_s = slow_s if slow_s is not None else timeout_s * 0.4
        self.hits: Counter[str] = Counter()
        """Requests (http) or connections attempted while listening (tcp) per server id."""
        self._clock = clock or SystemClock()
        self._by_id = {spec.server_id: spec for spec in self.specs}
        if len(self._by_id) != len(self.specs):
            raise ValueError("demo server ids must be unique")
        self._overrides: dict[str, Mode] = {}
        super().__init__(tcp_check_interval_s)
        self._tcp = {s.server_id: _TcpEndpoint(host) for s in self.specs if s.kind is ProbeKind.TCP}

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the http app and the tcp servers; the script's clock starts now."""
        self._t0 = self._clock.now()
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/srv/{server_id}/status", self._status)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(runner, sock, shutdown_timeout=1.0).start()
        self._runner = runner
        self._start_reconciler()
        log.info("demo fleet of %d servers on %s", len(self.specs), self.base_url)

    # -- what it serves ------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def servers(self) -> list[Server]:
        """The inventory of this fleet (after `start()`, when the ports are known)."""
        if self._t0 is None:
            raise RuntimeError("start the demo fleet first")
        targets = {sid: f"{self.host}:{ep.port}" for sid, ep in self._tcp.items()}
        return demo_inventory(self.base_url, targets, self.specs, self.timeout_s)

    def elapsed_s(self) -> float:
        """Script seconds since start (by the fleet's clock)."""
        if self._t0 is None:
            return 0.0
        return (self._clock.now() - self._t0).total_seconds()

    def mode_of(self, server_id: str) -> Mode:
        """The mode a server is in now: its override, else the script, else up."""
        if server_id in self._overrides:
            return self._overrides[server_id]
        elapsed = self.elapsed_s()
        for outage in self.script:
            if outage.server_id == server_id and outage.active(elapsed):
                return outage.mode
        return Mode.UP

    def set_down(self, server_id: str, mode: Mode | str = Mode.DOWN) -> None:
        """Force a server into `mode` (default: down) until `set_up` or `follow_script`."""
        self._require(server_id)
        self._overrides[server_id] = Mode(mode)
        self._reconcile_tcp()

    def set_up(self, server_id: str) -> None:
        """Force a server up (whatever the script says) until `follow_script`."""
        self._require(server_id)
        self._overrides[server_id] = Mode.UP
        self._reconcile_tcp()

    def follow_script(self, server_id: str) -> None:
        """Drop a server's override: the script decides again."""
        self._require(server_id)
        self._overrides.pop(server_id, None)
        self._reconcile_tcp()

    def _require(self, server_id: str) -> None:
        if server_id not in self._by_id:
            raise KeyError(f"no demo server {server_id!r}")

    # -- tcp -----------------------------------------------------------------------------------------
    def _reconcile_tcp(self) -> None:
        if self._t0 is None or self._closing.is_set():
            return
        for server_id, endpoint in self._tcp.items():
            serving = self.mode_of(server_id) in (Mode.UP, Mode.SLOW)
            if serving and not endpoint.listening:
                endpoint.open()
            elif not serving and endpoint.listening:
                endpoint.close()

    # -- http ----------------------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "servers": [
                    {"server_id": s.server_id, "mode": self.mode_of(s.server_id).value} for s in self.specs
                ]
            }
        )

    async def _status(self, request: web.Request) -> web.StreamResponse:
        server_id = request.match_info["server_id"]
        spec = self._by_id.get(server_id)
        if spec is None or spec.kind is not ProbeKind.HTTP:
            return web.json_response({"error": f"no http demo server {server_id!r}"}, status=404)
        self.hits[server_id] += 1
        mode = self.mode_of(server_id)
        if mode is Mode.DOWN:
            return web.json_response({"status": "down", "server_id": server_id}, status=503)
        if mode is Mode.HANG:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout_s * 5):
                    await self._closing.wait()
            return web.json_response({"status": "late"}, status=504)
        if mode is Mode.RESET:
            return _reset(request)
        if mode is Mode.SLOW:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.slow_s):
                    await self._closing.wait()
        return web.json_response(health_body(server_id, self.elapsed_s()))


def _reset(request: web.Request) -> web.StreamResponse:
    """Abort the connection with a TCP RST (SO_LINGER 0), no answer."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    raise asyncio.CancelledError  # nothing to send: the connection is gone


async def run_demo_fleet(port: int = 0, clock: Clock | None = None) -> DemoFleet:
    """Start the default demo fleet (for `fleetwatch up`); the caller stops it."""
    fleet = DemoFleet(port=port, clock=clock)
    await fleet.start()
    return fleet


class DemoFleetThread(threading.Thread):
    """Serves a DemoFleet on its own asyncio loop in a thread, so blocking callers (the `up` process, tests
    that poll Kafka synchronously) never stall its answers."""

    def __init__(self, fleet: DemoFleet) -> None:
        super().__init__(name="demo-fleet", daemon=True)
        self.fleet = fleet
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.fleet.start())
        except BaseException as exc:  # reported by start_serving
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.fleet.stop())
        self._loop.close()

    def start_serving(self, timeout_s: float = 30.0) -> list[Server]:
        """Start the thread and return the fleet's inventory once it serves."""
        self.start()
        if not self._ready.wait(timeout_s) or self._error is not None:
            raise RuntimeError(f"the demo fleet did not start: {self._error}")
        return self.fleet.servers()

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self.join(timeout=15)
