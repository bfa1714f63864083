"""Golden case counts by severity, source and partner (state at the month's end)."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from history.reports import build, report_query
from tests.unit.history.reports.golden import MONTH


def test_counts(golden: Client) -> None:
    rows = {(r["dimension"], r["value"]): r for r in build(golden, "cases", report_query(MONTH))["rows"]}
    # a resolved, b closed, c triaged, d working, e working at November's end (closed in December); f October.
    assert rows[("total", "all")] == {
        "dimension": "total",
        "value": "all",
        "opened": 5,
        "open": 3,
        "resolved": 1,
        "closed": 1,
    }
    counts = {key: (r["opened"], r["open"], r["resolved"], r["closed"]) for key, r in rows.items()}
    assert counts[("severity", "sev1")] == (3, 1, 1, 1)
    assert counts[("severity", "sev2")] == (1, 1, 0, 0)
    assert counts[("severity", "sev3")] == (1, 1, 0, 0)
    assert counts[("source", "monitor")] == (2, 0, 1, 1)
    assert counts[("source", "email")] == (1, 1, 0, 0)
    assert counts[("source", "portal")] == (1, 1, 0, 0)
    assert counts[("source", "staff")] == (1, 1, 0, 0)
    assert counts[("partner", "isp-1")] == (1, 1, 0, 0)
    assert counts[("partner", "sp-2")] == (1, 1, 0, 0)
    assert counts[("partner", "none")] == (3, 1, 1, 1)
    december = build(golden, "cases", report_query("2026-12"))["rows"]
    assert december == []
