"""The simulated fleet on loopback: one thin aiohttp server on a few ports and a pool of tcp listeners.

Http server `i` answers at ``/s/<i>`` on any of the ports (the inventory spreads the servers over them), or
at any path with the header ``Host: s<i>.sim``. Tcp server `i` listens on its own loopback address (see
`FleetLayout.tcp_host`), all on one port, so it can refuse connections on its own. What a server does comes
from the scenario at the fleet's elapsed seconds (by the injected clock); nothing is kept per server but
the tcp listeners. ``GET /sim/info`` says what the fleet is; ``GET /sim/outages?start=S&end=E`` is the
scenario's ground truth for that window (fleet seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from aiohttp import web

from fleetcore.clock import Clock, SystemClock
from fleetwatch.demo_fleet import LoopbackFleet, _reset, _TcpEndpoint
from fleetwatch.simfleet.inventory import Endpoints
from fleetwatch.simfleet.layout import SimFleetError
from fleetwatch.simfleet.scenario import Mode, Scenario

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0
"""Probe timeout of the simulated servers (in their inventory records)."""
_JSON = "application/json"


class SimFleet(LoopbackFleet):
    """Serves a simulated fleet on `host` until `stop()`."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        host: str = "127.0.0.1",
        ports: Sequence[int] = (0, 0),
        tcp_port: int = 0,
        clock: Clock | None = None,
        timeout_s: float = TIMEOUT_S,
        slow_s: float | None = None,
        tcp_check_interval_s: float = 0.25,
        seed: int = 0,
    ) -> None:
        if not ports:
            raise SimFleetError("the simulated fleet needs at least one http port")
        self.scenario = scenario
        self.layout = scenario.layout
        self.host = host
        self.ports = list(ports)
        self.tcp_port = tcp_port
        self.timeout_s = timeout_s
        self.slow_s = slow_s if slow_s is not None else timeout_s * 0.3
        self.seed = seed
        self.requests = 0
        """Http requests answered (any outcome)."""
        self._clock = clock or SystemClock()
        super().__init__(tcp_check_interval_s)
        self._tcp: dict[int, _TcpEndpoint] = {}

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the http ports and the tcp listeners; the scenario's clock starts now."""
        self._t0 = self._clock.now()
        server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        runner = web.ServerRunner(server, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        self._runner = runner
        try:
            for n, port in enumerate(self.ports):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, port))
                self.ports[n] = sock.getsockname()[1]
                await web.SockSite(runner, sock, shutdown_timeout=1.0, backlog=1024).start()
            self._open_tcp_pool()
        except BaseException:
            await self.stop()
            raise
        self._start_reconciler()
        log.info("simulated fleet of %d servers on %s", self.layout.servers, ", ".join(self.http_urls))

    def _open_tcp_pool(self) -> None:
        """Every tcp server listens once at start (so its address and port are ours), then follows the
        scenario."""
        for i in self.layout.tcp_servers():
            endpoint = _TcpEndpoint(self.layout.tcp_host(i))
            endpoint.port = self.tcp_port
            endpoint.open()
            self.tcp_port = endpoint.port
            self._tcp[i] = endpoint

    # -- what it serves ------------------------------------------------------------------------------
    @property
    def http_urls(self) -> list[str]:
        return [f"http://{self.host}:{port}" for port in self.ports]

    def endpoints(self) -> Endpoints:
        return Endpoints(self.host, tuple(self.ports), self.tcp_port if self._tcp else None, self.timeout_s)

    def target(self, i: int) -> str:
        """How server `i` is probed: its status URL (http) or host:port (tcp)."""
        return self.endpoints().target(self.layout, i)

    @property
    def started_at(self) -> datetime:
        if self._t0 is None:
            raise SimFleetError("start the simulated fleet first")
        return self._t0

    def elapsed_s(self) -> float:
        return 0.0 if self._t0 is None else (self._clock.now() - self._t0).total_seconds()

    def info(self) -> dict[str, Any]:
        """Where the fleet listens and what it is (what `fleetwatch sim` prints and `/sim/info` serves)."""
        layout = self.layout
        return {
            "servers": layout.servers,
            "seed": self.seed,
            "started_at": self.started_at.isoformat(),
            "http": self.http_urls,
            "tcp_port": self.tcp_port if self._tcp else None,
            "tcp_servers": layout.tcp_count,
            "customers": layout.customers,
            "sites": layout.sites,
            "layout": {
                "per_customer": layout.per_customer,
                "sites": layout.sites,
                "partners": layout.partners,
                "tcp_fraction": layout.tcp_fraction,
            },
            "timeout_s": self.timeout_s,
            "rules": len(self.scenario.rules),
        }

    # -- tcp -----------------------------------------------------------------------------------------
    def _reconcile_tcp(self) -> None:
        if self._t0 is None or self._closing.is_set():
            return
        t = self.elapsed_s()
        mode_at = self.scenario.mode_at
        for i, endpoint in self._tcp.items():
            serving = mode_at(i, t) in (Mode.UP, Mode.SLOW)
            if serving and not endpoint.listening:
                try:
                    endpoint.open()
                except OSError as exc:  # someone took the port meanwhile: stays refusing, said once a tick
                    log.warning("simulated tcp server %d could not listen again: %s", i, exc)
            elif not serving and endpoint.listening:
                endpoint.close()

    # -- http ----------------------------------------------------------------------------------------
    def _index(self, request: web.BaseRequest) -> int | None:
        path = request.path
        raw = path[3:].partition("/")[0] if path.startswith("/s/") else None
        if raw is None:
            host = request.host.partition(":")[0]
            if host.startswith("s") and host.endswith(".sim"):
                raw = host[1:-4]
        if raw is None or not raw.isdigit():
            return None
        i = int(raw)
        return i if i < self.layout.servers else -1

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        i = self._index(request)
        if i is None:
            return await self._control(request)
        if i < 0 or self.layout.is_tcp(i):
            return web.json_response({"error": f"no http server {request.path!r} in this fleet"}, status=404)
        self.requests += 1
        t = self.elapsed_s()
        rule = self.scenario.rule_at(i, t)
        mode = Mode.UP if rule is None else rule.mode
        if mode is Mode.DOWN:
            return _reset(cast(web.Request, request))  # only its transport is used
        if mode is Mode.STATUS_503:
            return web.Response(body=b'{"status":"unavailable"}', status=503, content_type=_JSON)
        if mode is Mode.HANG:
            await self._wait(self.timeout_s * 5)
            return web.Response(body=b'{"status":"late"}', status=504, content_type=_JSON)
        if mode is Mode.SLOW:
            await self._wait(rule.delay_s if rule is not None and rule.delay_s is not None else self.slow_s)
        return web.Response(body=self._health(i, t), content_type=_JSON)

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closing.wait()

    def _health(self, i: int, t: float) -> bytes:
        """Plausible, deterministic health figures of server `i` at `t` (cheap: a few multiplications)."""
        wave = (math.sin(t / 60.0 + i % 7) + 1) / 2
        users = 5 + (i * 7919) % 40
        return (
            f'{{"status":"ok","server_id":"{self.layout.server_id(i)}","load1":{0.2 + 3.5 * wave:.2f},'
            f'"connections":{users * 3 + int(20 * wave)},"users":{users + int(10 * wave)},'
            f'"cpu_percent":{10 + 70 * wave:.1f},"memory_percent":{40 + (i * 31) % 30 + 10 * wave:.1f},'
            f'"disk_percent":{30 + (i * 17) % 50:.1f}}}'
        ).encode()

    async def _control(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path in ("/", "/sim/info"):
            return web.json_response(self.info())
        if request.path == "/sim/outages":
            try:
                start = float(request.query.get("start", "0"))
                end = float(request.query.get("end", str(self.elapsed_s())))
            except ValueError:
                return web.json_response({"error": "start and end are fleet seconds (numbers)"}, status=400)
            if not 0 <= start <= end or end - start > 7 * 86400:
                return web.json_response({"error": "need 0 <= start <= end, at most 7 days"}, status=400)
            outages = await asyncio.to_thread(self.scenario.outages, start, end)
            rows = [
                {
                    "server_id": o.server_id,
                    "customer_id": o.customer_id,
                    "site": o.site,
                    "kind": o.kind,
                    "mode": o.mode.value,
                    "start_s": o.start_s,
                    "end_s": o.end_s,
                }
                for o in outages
            ]
            return web.json_response({"started_at": self.started_at.isoformat(), "outages": rows})
        return web.json_response({"error": f"no such path {request.path!r}: try /s/<index>"}, status=404)
