"""The simulator on 127.0.0.1 answers each server by index (path or Host) with its scripted behaviour; tcp
servers refuse and accept as scripted. Real aiohttp client, real sockets, a clock moved by hand."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from fleetwatch.simfleet.layout import FleetLayout
from fleetwatch.simfleet.scenario import Scenario
from fleetwatch.simfleet.server import SimFleet
from tests.helpers import ManualClock, eventually

SCRIPT = """
- {at: 10s, for: 60s, what: down, servers: [1]}
- {at: 10s, for: 60s, what: "503", servers: [2]}
- {at: 10s, for: 60s, what: hang, servers: [3]}
- {at: 10s, for: 60s, what: slow, servers: [4], delay: 300ms}
- {at: 10s, for: 60s, what: customer-down, customer: cust-0002}
- {at: 10s, for: 60s, what: down, servers: [9]}
"""
LAYOUT = FleetLayout(100, tcp_fraction=0.1)  # tcp servers: 9, 19, ..., 99


@pytest.fixture
async def sim() -> AsyncIterator[tuple[SimFleet, ManualClock, aiohttp.ClientSession]]:
    clock = ManualClock()
    fleet = SimFleet(
        Scenario.from_yaml(SCRIPT, LAYOUT), clock=clock, timeout_s=0.5, tcp_check_interval_s=0.02
    )
    async with fleet, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        yield fleet, clock, session


async def status_of(session: aiohttp.ClientSession, url: str, **kw: object) -> int | str:
    try:
        async with session.get(url, **kw) as resp:  # type: ignore[arg-type]
            await resp.read()
            return resp.status
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        return "reset"
    except TimeoutError:
        return "timeout"


async def test_servers_answer_by_index_with_their_scripted_status(
    sim: tuple[SimFleet, ManualClock, aiohttp.ClientSession],
) -> None:
    fleet, clock, session = sim
    urls = {i: fleet.target(i) for i in (0, 1, 2, 3, 4, 16, 23, 24)}
    assert urls[1].endswith("/s/1")
    assert urls[1] != urls[2].replace("/s/2", "/s/1")
    before = {i: await status_of(session, url) for i, url in urls.items()}
    assert set(before.values()) == {200}
    clock.advance(10)
    short = aiohttp.ClientTimeout(total=1.0)
    got = {i: await status_of(session, url, timeout=short) for i, url in urls.items()}
    assert got == {0: 200, 1: "reset", 2: 503, 3: "timeout", 4: 200, 16: "reset", 23: "reset", 24: 200}
    start = time.monotonic()
    assert await status_of(session, urls[4]) == 200
    assert time.monotonic() - start >= 0.3  # slow, by its rule's delay
    clock.advance(60)
    assert {i: await status_of(session, url) for i, url in urls.items()} == before


async def test_a_server_answers_by_host_header_and_unknown_ones_get_404(
    sim: tuple[SimFleet, ManualClock, aiohttp.ClientSession],
) -> None:
    fleet, _, session = sim
    base = fleet.http_urls[0]
    async with session.get(f"{base}/status", headers={"Host": "s7.sim"}) as resp:
        assert resp.status == 200
        assert (await resp.json())["server_id"] == "sim-0000007"
    for path in ("/s/100", "/s/9", "/nothing"):  # out of range, a tcp server, no index
        async with session.get(f"{base}{path}") as resp:
            assert resp.status == 404
            assert "error" in await resp.json()


async def test_info_and_ground_truth_endpoints(
    sim: tuple[SimFleet, ManualClock, aiohttp.ClientSession],
) -> None:
    fleet, _, session = sim
    base = fleet.http_urls[1]
    async with session.get(f"{base}/sim/info") as resp:
        info = await resp.json()
    assert info["servers"] == 100
    assert info["http"] == fleet.http_urls
    assert info["tcp_port"] == fleet.tcp_port
    async with session.get(f"{base}/sim/outages", params={"start": "0", "end": "100"}) as resp:
        rows = (await resp.json())["outages"]
    assert {r["server_id"] for r in rows} == {LAYOUT.server_id(i) for i in (1, 2, 3, 4, 9, *range(16, 24))}
    assert all((r["start_s"], r["end_s"]) == (10, 70) for r in rows)
    for query in ({"start": "x"}, {"start": "5", "end": "1"}):
        async with session.get(f"{base}/sim/outages", params=query) as resp:
            assert resp.status == 400
            assert "error" in await resp.json()


async def connects(target: str) -> bool:
    host, _, port = target.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2)
    except ConnectionRefusedError:
        return False
    writer.close()
    return True


async def test_tcp_servers_refuse_while_down_and_accept_again(
    sim: tuple[SimFleet, ManualClock, aiohttp.ClientSession],
) -> None:
    fleet, clock, _ = sim
    down, up = fleet.target(9), fleet.target(29)
    assert down.rpartition(":")[0] != up.rpartition(":")[0]  # own loopback addresses, one port
    assert await connects(down)
    assert await connects(up)
    clock.advance(10)
    await eventually(lambda: _refused(down), 5, "tcp server 9 refusing")
    assert await connects(up)
    clock.advance(60)
    await eventually(lambda: connects(down), 5, "tcp server 9 accepting again")


async def _refused(target: str) -> bool:
    return not await connects(target)
