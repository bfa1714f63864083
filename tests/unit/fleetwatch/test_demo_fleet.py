"""The demo fleet: inventory shape, scripted modes under a hand-moved clock, overrides, tcp servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from fleetwatch.demo_fleet import (
    DEFAULT_SCRIPT,
    DemoFleet,
    Mode,
    Outage,
    demo_inventory,
    flapping,
    generated_servers,
)
from probes import checks
from probes.classify import classify
from schemas.inventory import ProbeKind, Server, ServerRole
from schemas.probes import ProbeResult
from tests.helpers import ManualClock, eventually


@pytest.fixture
async def fleet() -> AsyncIterator[tuple[DemoFleet, ManualClock]]:
    clock = ManualClock()
    async with DemoFleet(clock=clock, timeout_s=0.5, slow_s=0.1) as demo:
        yield demo, clock


async def probe(fleet: DemoFleet, server_id: str) -> ProbeResult:
    server = next(s for s in fleet.servers() if s.server_id == server_id)
    async with checks.new_session(4) as session:
        raw = await checks.check(session, server, ManualClock())
    return classify(server, raw.started_at, raw.latency_ms, raw.status_code, raw.body, raw.error, "t")


async def test_inventory_shape(fleet: tuple[DemoFleet, ManualClock]) -> None:
    demo, _ = fleet
    servers = demo.servers()
    assert len(servers) == 14
    assert len({s.server_id for s in servers}) == 14
    ids = {s.server_id for s in servers}
    secondaries = [s for s in servers if s.role is ServerRole.SECONDARY]
    assert secondaries
    assert all(s.backup_of in ids for s in secondaries)
    assert {"acme", "globex", "initech"} <= {s.customer_id for s in servers}
    assert any(s.partner_id for s in servers)
    tcp = [s for s in servers if s.probe is ProbeKind.TCP]
    assert len(tcp) == 2
    assert all(s.target.startswith("127.0.0.1:") for s in tcp)
    assert all(
        s.target == f"{demo.base_url}/srv/{s.server_id}/status" for s in servers if s.probe is ProbeKind.HTTP
    )


async def test_healthy_server_returns_metrics(fleet: tuple[DemoFleet, ManualClock]) -> None:
    demo, _ = fleet
    result = await probe(demo, "demo-srv-01")
    assert result.ok
    assert result.status_code == 200
    assert result.health is not None
    assert result.health.load1 is not None
    assert result.health.users is not None
    assert demo.hits["demo-srv-01"] == 1


async def test_default_script_takes_demo_srv_03_down_for_five_minutes(
    fleet: tuple[DemoFleet, ManualClock],
) -> None:
    demo, clock = fleet
    assert demo.mode_of("demo-srv-03") is Mode.UP
    assert (await probe(demo, "demo-srv-03")).ok
    clock.advance(5)
    assert demo.mode_of("demo-srv-03") is Mode.DOWN
    result = await probe(demo, "demo-srv-03")
    assert not result.ok
    assert result.status_code == 503
    clock.advance(299.9)
    assert demo.mode_of("demo-srv-03") is Mode.DOWN
    clock.advance(0.1)
    assert (await probe(demo, "demo-srv-03")).ok


async def test_default_script_has_flapping_slow_and_hanging_servers() -> None:
    modes = {(o.server_id, o.mode) for o in DEFAULT_SCRIPT}
    assert ("demo-srv-07", Mode.RESET) in modes
    assert len([o for o in DEFAULT_SCRIPT if o.server_id == "demo-srv-07"]) > 3
    assert ("demo-srv-05", Mode.SLOW) in modes
    assert ("demo-srv-11", Mode.HANG) in modes


async def test_flapping_script() -> None:
    outages = flapping("s", 10, up_s=5, down_s=2, cycles=3, mode=Mode.DOWN)
    assert [(o.start_s, o.end_s) for o in outages] == [(10, 12), (17, 19), (24, 26)]


async def test_modes_as_a_probe_sees_them(fleet: tuple[DemoFleet, ManualClock]) -> None:
    demo, _ = fleet
    demo.set_down("demo-srv-01", Mode.RESET)
    demo.set_down("demo-srv-02", Mode.HANG)
    demo.set_down("demo-srv-04", Mode.SLOW)
    demo.set_down("demo-srv-06")
    reset, hang, slow, down = await asyncio.gather(
        probe(demo, "demo-srv-01"),
        probe(demo, "demo-srv-02"),
        probe(demo, "demo-srv-04"),
        probe(demo, "demo-srv-06"),
    )
    assert reset.error_class == "reset"
    assert hang.error_class == "timeout"
    assert hang.latency_ms >= 500
    assert slow.ok
    assert slow.latency_ms >= 100
    assert down.error_class == "unexpected_status"
    assert down.status_code == 503


async def test_overrides_beat_the_script_until_follow_script(fleet: tuple[DemoFleet, ManualClock]) -> None:
    demo, clock = fleet
    clock.advance(10)
    demo.set_up("demo-srv-03")
    assert (await probe(demo, "demo-srv-03")).ok
    demo.follow_script("demo-srv-03")
    assert not (await probe(demo, "demo-srv-03")).ok
    with pytest.raises(KeyError):
        demo.set_down("no-such-server")


async def test_tcp_server_down_and_up(fleet: tuple[DemoFleet, ManualClock]) -> None:
    demo, _ = fleet
    assert (await probe(demo, "demo-tcp-01")).ok
    demo.set_down("demo-tcp-01")
    refused = await probe(demo, "demo-tcp-01")
    assert refused.error_class == "refused"
    demo.set_up("demo-tcp-01")
    assert (await probe(demo, "demo-tcp-01")).ok  # listening again at once, same port


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
async def test_tcp_server_closed_right_after_start_leaves_nothing_behind(turns: int) -> None:
    """A tcp server set down a few loop turns after start (as a test does right after its fleet fixture):
    the next socket of the process, which gets the closed port's fd number, works normally."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        async with DemoFleet(script=[], timeout_s=0.5) as demo:
            for _ in range(turns):
                await asyncio.sleep(0)
            demo.set_down("demo-tcp-02")
            results = [await probe(demo, "demo-srv-01") for _ in range(3)]
            assert (await probe(demo, "demo-tcp-02")).error_class == "refused"
            assert (await probe(demo, "demo-tcp-01")).ok
    finally:
        loop.set_exception_handler(None)
    assert [r.error_message for r in results if not r.ok] == []
    assert [str(e.get("exception") or e["message"]) for e in errors] == []


async def test_scripted_tcp_outage_follows_the_clock(fleet: tuple[DemoFleet, ManualClock]) -> None:
    demo, clock = fleet
    assert (await probe(demo, "demo-tcp-02")).ok
    clock.advance(45)  # DEFAULT_SCRIPT: demo-tcp-02 down from 40 to 100 s

    async def refused() -> bool:
        return (await probe(demo, "demo-tcp-02")).error_class == "refused"

    await eventually(refused, 5.0, "demo-tcp-02 to refuse connections")
    clock.advance(60)

    async def back() -> bool:
        return (await probe(demo, "demo-tcp-02")).ok

    await eventually(back, 5.0, "demo-tcp-02 to accept again")


async def test_unknown_server_is_404_and_index_lists_modes(fleet: tuple[DemoFleet, ManualClock]) -> None:
    demo, _ = fleet
    demo.set_down("demo-srv-09")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{demo.base_url}/srv/nope/status") as resp:
            assert resp.status == 404
        async with session.get(f"{demo.base_url}/") as resp:
            index = await resp.json()
    modes = {s["server_id"]: s["mode"] for s in index["servers"]}
    assert modes["demo-srv-09"] == "down"
    assert modes["demo-srv-01"] == "up"


async def test_custom_fleet_and_script() -> None:
    specs = generated_servers(20)
    clock = ManualClock()
    script = [Outage("fleet-srv-00003", 0, 10, Mode.DOWN)]
    async with DemoFleet(specs=specs, script=script, clock=clock, timeout_s=0.5) as demo:
        servers = demo.servers()
        assert len(servers) == 20
        assert not (await probe(demo, "fleet-srv-00003")).ok
        assert (await probe(demo, "fleet-srv-00004")).ok


def test_demo_inventory_without_a_running_fleet() -> None:
    servers = demo_inventory(
        "http://127.0.0.1:8000", {"demo-tcp-01": "127.0.0.1:9001", "demo-tcp-02": "127.0.0.1:9002"}
    )
    assert all(isinstance(s, Server) for s in servers)
    assert servers[0].target == "http://127.0.0.1:8000/srv/demo-srv-01/status"


def test_servers_need_a_started_fleet() -> None:
    with pytest.raises(RuntimeError, match="start"):
        DemoFleet().servers()
