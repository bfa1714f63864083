"""The simulated fleet's inventory: deterministic, one valid Server per index, at the fleet's targets."""

from __future__ import annotations

import orjson
import pytest

from fleetwatch.simfleet.inventory import Endpoints, record, records
from fleetwatch.simfleet.layout import FleetLayout, SimFleetError
from schemas.inventory import ProbeKind, Server, ServerRole

ENDPOINTS = Endpoints("127.0.0.1", (4001, 4002), 4100, 5.0)


def test_every_record_is_a_valid_server_and_the_same_each_time() -> None:
    layout = FleetLayout(2000, tcp_fraction=0.01)
    first = list(records(layout, ENDPOINTS))
    assert first == list(records(layout, ENDPOINTS))
    assert len(first) == 2000
    servers = [Server.model_validate_json(value) for _, value in first]
    assert [key.decode() for key, _ in first] == [s.server_id for s in servers]
    assert len({s.server_id for s in servers}) == 2000
    by_id = {s.server_id: s for s in servers}
    secondaries = [s for s in servers if s.role is ServerRole.SECONDARY]
    assert len(secondaries) == 250
    for s in secondaries:
        primary = by_id[s.backup_of or ""]
        assert primary.role is ServerRole.PRIMARY
        assert primary.customer_id == s.customer_id
    tcp = [s for s in servers if s.probe is ProbeKind.TCP]
    assert len(tcp) == 20
    assert all(s.target.endswith(":4100") for s in tcp)
    assert servers[5].target == "http://127.0.0.1:4002/s/5"
    assert servers[6].target == "http://127.0.0.1:4001/s/6"
    assert {s.partner_id for s in servers} == {None, "partner-1", "partner-2", "partner-3"}
    assert len({s.customer_id for s in servers}) == 250


def test_a_record_round_trips_through_the_contract() -> None:
    layout = FleetLayout(10)
    rec = record(layout, ENDPOINTS, 1)
    assert orjson.loads(Server.model_validate(rec).model_dump_json()) == rec


def test_endpoints_from_the_fleets_info_line() -> None:
    info = {"http": ["http://127.0.0.1:4001", "http://127.0.0.1:4002"], "tcp_port": 4100, "timeout_s": 5}
    assert Endpoints.from_info(info) == ENDPOINTS
    with pytest.raises(SimFleetError):
        Endpoints.from_info({"http": []})


def test_records_go_to_the_partition_any_other_publisher_of_the_inventory_uses() -> None:
    """The batch sender partitions by key itself; it must agree with kafka-python's producer (what
    `fleetwatch inventory load` uses), or a server's record would not replace its earlier one."""
    from aiokafka.partitioner import DefaultPartitioner
    from kafka.partitioner import murmur2

    partitions = list(range(12))
    for key, _ in records(FleetLayout(500), ENDPOINTS):
        expected = (murmur2(key) & 0x7FFFFFFF) % len(partitions)
        assert DefaultPartitioner()(key, partitions, partitions) == expected
