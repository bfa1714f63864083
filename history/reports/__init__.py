"""Reports over the history store: uptime, support SLA compliance, capacity and cases (issue 5).

`build(client, name, query, policies, threshold_ms)` runs one report and returns a JSON-ready dict whose
`rows` are flat (CSV-able: `common.to_csv`); `request.parse` validates HTTP parameters and CLI flags. The
sink's HTTP API and `fleetwatch report` (direct ClickHouse path) both call it, so they return the same shape;
`history.charts` draws them as SVG.
"""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client

from history.queries import InvalidQuery
from history.reports.capacity import capacity_report
from history.reports.cases import cases_report
from history.reports.common import ReportQuery, report_query, to_csv
from history.reports.request import NAMES as REPORTS
from history.reports.request import ReportRequest, load_policies, parse
from history.reports.sla import sla_report
from history.reports.uptime import uptime_report
from policy.sla import PolicyBook

__all__ = [
    "REPORTS",
    "ReportQuery",
    "ReportRequest",
    "build",
    "load_policies",
    "parse",
    "report_query",
    "run_request",
    "to_csv",
]


def build(
    client: Client,
    name: str,
    query: ReportQuery,
    policies: PolicyBook | None = None,
    threshold_ms: float | None = None,
) -> dict[str, Any]:
    """Run report `name` for `query`; InvalidQuery for an unknown report, StoreError if the store fails."""
    book = policies or PolicyBook()
    if name == "uptime":
        return uptime_report(client, query, book)
    if name == "sla":
        return sla_report(client, query, book)
    if name == "capacity":
        return capacity_report(client, query, threshold_ms)
    if name == "cases":
        return cases_report(client, query)
    raise InvalidQuery(f"unknown report {name!r}: one of {', '.join(REPORTS)}")


def run_request(client: Client, request: ReportRequest, policies: PolicyBook | None = None) -> dict[str, Any]:
    """Run a parsed request (the shared step of the HTTP API and the CLI's direct path)."""
    return build(client, request.name, request.query, policies, request.threshold_ms)
