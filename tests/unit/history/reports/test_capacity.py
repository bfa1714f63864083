"""Golden capacity: nearest-rank percentiles computed here from the constructed latencies."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from history.queries import InvalidQuery
from history.reports import build, report_query
from history.reports.capacity import days_until, linear_fit
from tests.unit.history.reports.golden import MONTH, probes


def _rank(values: list[int], pct: int) -> int:
    ordered = sorted(values)
    return ordered[max(1, -(-pct * len(ordered) // 100)) - 1]  # nearest rank: the ceil(p n)-th smallest


def _report(client: Client, threshold: float | None = None) -> dict[str, Any]:
    return build(client, "capacity", report_query(MONTH), threshold_ms=threshold)


def test_daily_percentiles_per_server_and_customer(golden: Client) -> None:
    by_server: dict[tuple[str, str], list[int]] = defaultdict(list)
    by_customer: dict[tuple[str, str], list[int]] = defaultdict(list)
    for p in probes():
        if p.at.month == 11 and p.ok and p.maintenance is None:
            by_server[(p.server, p.at.date().isoformat())].append(p.latency)
            by_customer[(p.customer, p.at.date().isoformat())].append(p.latency)
    rows = _report(golden)["rows"]
    servers = {(r["server_id"], r["day"]): r for r in rows if r["level"] == "server"}
    customers = {(r["customer_id"], r["day"]): r for r in rows if r["level"] == "customer"}
    assert set(servers) == set(by_server)
    assert set(customers) == set(by_customer)
    for expected, got in ((by_server, servers), (by_customer, customers)):
        for key, values in expected.items():
            row = got[key]
            assert row["latency_samples"] == len(values)
            assert (row["p50_ms"], row["p95_ms"], row["p99_ms"]) == tuple(
                _rank(values, q) for q in (50, 95, 99)
            )
    assert servers[("web-1", "2026-11-02")]["p95_ms"] != servers[("db-1", "2026-11-02")]["p95_ms"]


def test_health_and_fleet(golden: Client) -> None:
    report = _report(golden)
    api = {r["day"]: r for r in report["rows"] if r["server_id"] == "api-1"}
    for d in range(5):
        row = api[f"2026-11-{5 + d:02d}"]
        assert (row["load1_avg"], row["load1_max"]) == (d, d)
        assert row["connections_avg"] == pytest.approx(10 * d + 11.5)  # mean of 10d + 0..23
        assert row["connections_max"] == 10 * d + 23
    web = next(r for r in report["rows"] if r["server_id"] == "web-1")
    assert web["load1_avg"] is None
    assert web["connections_max"] is None
    servers_per_day: dict[str, set[str]] = defaultdict(set)
    for p in probes():
        if p.at.month == 11:
            servers_per_day[p.at.date().isoformat()].add(p.server)
    assert report["fleet"] == [{"day": d, "servers": len(s)} for d, s in sorted(servers_per_day.items())]


def test_forecast_days_until_threshold(golden: Client) -> None:
    report = _report(golden, threshold=200)
    api = next(f for f in report["forecast"] if f["server_id"] == "api-1")
    # p95 of day d is the 23rd of 24 values 100 + 10 d + h: 122 + 10 d; crosses 200 at d = 7.8, last d = 4.
    assert api["slope_ms_per_day"] == pytest.approx(10.0)
    assert api["days_until_threshold"] == pytest.approx(3.8)
    already = _report(golden, threshold=100)["forecast"]
    assert next(f for f in already if f["server_id"] == "api-1")["days_until_threshold"] == 0
    assert "forecast" not in _report(golden)
    with pytest.raises(InvalidQuery):
        _report(golden, threshold=-1)


def test_linear_fit_and_days_until() -> None:
    assert linear_fit([(0, 1)]) is None
    assert linear_fit([(1, 1), (1, 2)]) is None
    assert linear_fit([(0, 1), (1, 3), (2, 5)]) == pytest.approx((2.0, 1.0))
    assert days_until([(0, 10), (1, 9)], 20) is None  # falling
    assert days_until([(0, 10), (1, 20)], 40) == pytest.approx(2.0)
