"""Golden uptime: every figure derived by hand from the construction in golden.py, not by the report code."""

from __future__ import annotations

from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from history.queries import InvalidQuery
from history.reports import build, report_query
from history.reports.uptime import figures
from tests.unit.history.reports.golden import MINUTE_MS, MONTH, POLICIES


def _rows(client: Client, **filters: str) -> dict[tuple[str, str | None], dict[str, Any]]:
    data = build(client, "uptime", report_query(MONTH, **filters), POLICIES)
    return {(r["customer_id"], r["server_id"]): r for r in data["rows"]}


def test_minute_cadence_with_maintenance_window(golden: Client) -> None:
    web = _rows(golden)[("acme", "web-1")]
    # 600 probes (the October probe and the stored-twice row do not count), 599 intervals of a minute:
    # 31 touch the window (299->300 .. 329->330), 2 are mixed (99->100, 109->110), 9 are fail->fail.
    up, down, unknown, planned = 599 - 31 - 2 - 9, 9, 2, 31
    assert (web["probes"], web["failures"], web["planned_probes"]) == (600, 30, 30)
    assert (web["unplanned_failures"], web["planned_failures"]) == (10, 20)  # 100..109; 300..319 in mw-1
    assert web["up_ms"] == up * MINUTE_MS
    assert web["down_ms"] == down * MINUTE_MS
    assert web["unknown_ms"] == unknown * MINUTE_MS
    assert web["planned_ms"] == planned * MINUTE_MS
    measured = up + down + unknown
    assert web["uptime_lower_percent"] == pytest.approx(100 * 557 / 568, abs=1e-4)
    assert web["uptime_percent"] == pytest.approx(100 * 558 / 568, abs=1e-4)
    assert web["uptime_upper_percent"] == pytest.approx(100 * 559 / measured, abs=1e-4)
    assert (web["target_percent"], web["status"], web["breach"]) == (97.0, "met", False)


def test_coarse_cadence_gives_bounds(golden: Client) -> None:
    db = _rows(golden)[("acme", "db-1")]
    # 145 probes ten minutes apart: 144 intervals; 49->50, 52->53, 99->100, 100->101 mixed;
    # 50->51, 51->52 down.
    ten = 10 * MINUTE_MS
    assert (db["up_ms"], db["down_ms"], db["unknown_ms"]) == (138 * ten, 2 * ten, 4 * ten)
    assert db["uptime_lower_percent"] == pytest.approx(100 * 138 / 144, abs=1e-4)  # 95.83: below 97
    assert db["uptime_percent"] == pytest.approx(100 * 140 / 144, abs=1e-4)
    assert db["uptime_upper_percent"] == pytest.approx(100 * 142 / 144, abs=1e-4)  # 98.61: above 97
    assert db["status"] == "uncertain"
    assert db["breach"] is False


def test_customer_totals_and_breach(golden: Client) -> None:
    rows = _rows(golden)
    acme = rows[("acme", None)]
    up = 557 * MINUTE_MS + 138 * 10 * MINUTE_MS
    unknown = 2 * MINUTE_MS + 4 * 10 * MINUTE_MS
    down = 9 * MINUTE_MS + 2 * 10 * MINUTE_MS
    assert (acme["servers"], acme["up_ms"], acme["down_ms"], acme["unknown_ms"]) == (2, up, down, unknown)
    # web-1: 10 unplanned + 20 planned; db-1: probes 50, 51, 52, 100, no window
    assert (acme["failures"], acme["unplanned_failures"], acme["planned_failures"]) == (34, 14, 20)
    assert acme["uptime_lower_percent"] == pytest.approx(100 * up / (up + down + unknown), abs=1e-4)
    assert acme["status"] == "uncertain"
    beta = rows[("beta", None)]
    # 100 one-minute probes, 40..59 fail: 99 intervals, 19 down, 2 mixed, 78 up; target 99.9.
    assert beta["uptime_upper_percent"] == pytest.approx(100 * 80 / 99, abs=1e-4)
    assert (beta["status"], beta["breach"]) == ("breached", True)
    assert rows[("gamma", None)]["status"] == "no target"
    assert rows[("gamma", "edge-1")]["uptime_percent"] == 100.0


def test_filters(golden: Client) -> None:
    assert set(_rows(golden, customer="beta")) == {("beta", None), ("beta", "app-1")}
    assert set(_rows(golden, server="db-1")) == {("acme", None), ("acme", "db-1")}
    assert _rows(golden, customer="nobody") == {}
    assert build(golden, "uptime", report_query("2026-10"), POLICIES)["rows"][1]["probes"] == 1


def test_figures_without_measurement() -> None:
    assert figures(0, 0, 0, 99.0)["status"] == "no data"
    assert figures(0, 0, 0, None)["uptime_percent"] is None


@pytest.mark.parametrize(
    ("month", "customer", "server"),
    [("2026-13", None, None), ("26-11", None, None), ("2026-11", "a b", None), ("2026-11", None, "x';--")],
)
def test_bad_arguments_are_invalid(month: str, customer: str | None, server: str | None) -> None:
    with pytest.raises(InvalidQuery):
        report_query(month, customer, server)
