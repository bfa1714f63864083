"""The simulated fleet's layout: ids, customers, sites, partners, roles and tcp servers from the index."""

from __future__ import annotations

import argparse

import pytest

from fleetwatch.simfleet.layout import MAX_TCP, FleetLayout, SimFleetError, parse_fleet


def test_customers_sites_and_roles_follow_the_index() -> None:
    layout = FleetLayout(100, per_customer=8, sites=4)
    assert layout.customers == 13
    assert layout.server_id(42) == "sim-0000042"
    assert layout.customer_of(42) == 5
    assert layout.customer_id(5) == "cust-0005"
    assert layout.site_of(42) == 1
    assert layout.site_id(1) == "site-1"
    assert list(layout.customer_range(12)) == [96, 97, 98, 99]  # the last customer is short
    assert layout.backup_of(41) == 40
    assert layout.backup_of(40) is None
    assert layout.backup_of(42) is None
    assert layout.partner_id(4) is None
    assert layout.partner_id(5) == "partner-1"


def test_ids_parse_back_and_unknown_ids_are_refused() -> None:
    layout = FleetLayout(1000)
    for i in (0, 7, 999):
        assert layout.index_of(layout.server_id(i)) == i
    assert layout.customer_index("cust-7") == layout.customer_index("cust-0007") == 7
    assert layout.site_index("site-3") == 3
    for bad in ("sim-1000", "cust-x", "nope"):
        with pytest.raises(SimFleetError):
            layout.index_of(bad)


def test_tcp_servers_are_a_spaced_fraction_on_their_own_loopback_addresses() -> None:
    layout = FleetLayout(1000, tcp_fraction=0.01)
    tcp = list(layout.tcp_servers())
    assert len(tcp) == layout.tcp_count == 10
    assert all(layout.is_tcp(i) for i in tcp)
    assert sum(layout.is_tcp(i) for i in range(1000)) == 10
    hosts = {layout.tcp_host(i) for i in tcp}
    assert len(hosts) == 10
    assert all(h.startswith("127.1.") for h in hosts)
    assert FleetLayout(1000, tcp_fraction=0).tcp_count == 0
    assert FleetLayout(1_000_000).tcp_count <= MAX_TCP  # a socket each: capped


def test_fleet_sizes_are_bounded() -> None:
    with pytest.raises(SimFleetError):
        FleetLayout(0)
    with pytest.raises(SimFleetError):
        FleetLayout(1_000_001)
    assert FleetLayout(1_000_000).server_id(999_999) == "sim-0999999"


def test_fleet_argument() -> None:
    assert parse_fleet("demo") is None
    assert parse_fleet("sim:1000") == 1000
    assert parse_fleet("sim:100k") == 100_000
    assert parse_fleet("sim:1m") == 1_000_000
    for bad in ("sim:", "sim:0", "sim:x", "other:5", "sim:-3"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_fleet(bad)
