"""The simulated fleet with real parts: the probe check classifies its scripted failures, and its inventory
goes to a real Kafka inventory topic (stale servers pruned)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from fleetwatch.simfleet.inventory import Endpoints, publish_sim_inventory, record
from fleetwatch.simfleet.layout import FleetLayout
from fleetwatch.simfleet.scenario import Scenario
from fleetwatch.simfleet.server import SimFleet
from probes import checks
from probes.classify import classify
from probes.inventory import publish_inventory, read_inventory_ids
from schemas.inventory import Server
from schemas.probes import ProbeResult
from schemas.topics import Topics
from tests.helpers import ManualClock, eventually

SCRIPT = """
- {at: 60s, what: down, servers: [1]}
- {at: 60s, what: "503", servers: [2]}
- {at: 60s, what: hang, servers: [3]}
- {at: 60s, what: slow, servers: [4], delay: 200ms}
- {at: 60s, what: site-down, site: site-2}
"""
LAYOUT = FleetLayout(200, per_customer=4, sites=8, tcp_fraction=0.05)  # tcp: 19, 39, ...; site-2: 8-11, 40-43


@pytest.fixture
async def sim() -> AsyncIterator[tuple[SimFleet, ManualClock]]:
    clock = ManualClock()
    fleet = SimFleet(
        Scenario.from_yaml(SCRIPT, LAYOUT), clock=clock, timeout_s=0.5, tcp_check_interval_s=0.02
    )
    async with fleet:
        yield fleet, clock


async def probe(fleet: SimFleet, i: int) -> ProbeResult:
    server = Server.model_validate(record(LAYOUT, fleet.endpoints(), i))
    async with checks.new_session(4) as session:
        raw = await checks.check(session, server, ManualClock())
    return classify(server, raw.started_at, raw.latency_ms, raw.status_code, raw.body, raw.error, "t")


async def test_the_probe_check_classifies_each_scripted_behaviour(sim: tuple[SimFleet, ManualClock]) -> None:
    fleet, clock = sim
    assert LAYOUT.is_tcp(39)
    assert (LAYOUT.site_of(39), LAYOUT.site_of(10)) == (1, 2)
    before = {i: await probe(fleet, i) for i in (0, 1, 2, 3, 4, 10, 39)}
    assert all(r.ok for r in before.values())
    assert before[0].health is not None
    assert before[0].health.users is not None  # the health body is read as metrics
    clock.t += timedelta(seconds=60)
    assert (await probe(fleet, 1)).error_class == "reset"
    unavailable = await probe(fleet, 2)
    assert (unavailable.error_class, unavailable.status_code) == ("unexpected_status", 503)
    hang = await probe(fleet, 3)
    assert hang.error_class == "timeout"
    assert hang.latency_ms >= 500
    slow = await probe(fleet, 4)
    assert slow.ok
    assert slow.latency_ms >= 200
    assert (await probe(fleet, 10)).error_class == "reset"  # its site is down
    assert (await probe(fleet, 0)).ok
    assert (await probe(fleet, 39)).ok  # a tcp server at an up site
    site_tcp = next(i for i in LAYOUT.tcp_servers() if LAYOUT.site_of(i) == 2)

    async def refused() -> bool:
        return (await probe(fleet, site_tcp)).error_class == "refused"

    await eventually(refused, 5, "the down site's tcp server refusing")


def test_the_inventory_is_published_and_stale_servers_pruned(kafka_bootstrap: str, topics: Topics) -> None:
    stale = Server(server_id="old-srv", customer_id="acme", target="http://127.0.0.1:1/")
    publish_inventory(kafka_bootstrap, topics, [stale], prune=False)
    layout = FleetLayout(3000)
    endpoints = Endpoints("127.0.0.1", (4001, 4002), 4100, 5.0)
    sent, seconds = publish_sim_inventory(kafka_bootstrap, topics, layout, endpoints)
    assert sent == 3000
    assert seconds > 0
    assert read_inventory_ids(kafka_bootstrap, topics.inventory) == {layout.server_id(i) for i in range(3000)}
