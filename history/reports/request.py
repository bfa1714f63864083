"""One report request from HTTP query parameters or CLI flags, validated before any SQL runs; the plan book.

`parse(name, params)` accepts `month` (YYYY-MM, required), `customer`, `server`, `format` (json or csv),
`threshold_ms` (capacity forecast) and `case` (sla: one case, by its id or ticket number); a `.svg` suffix on
the name asks for the chart. Bad input is InvalidQuery.
`load_policies(path)` is the case engine's policy-book loader (`policy.sla.load_policy_book`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from history.queries import InvalidQuery
from history.reports.common import ReportQuery, report_query
from policy.sla import load_policy_book

NAMES = ("uptime", "sla", "capacity", "cases")
FORMATS = ("json", "csv")


@dataclass(frozen=True)
class ReportRequest:
    """A validated request: which report, for what, in which form."""

    name: str
    query: ReportQuery
    format: str = "json"
    svg: bool = False
    threshold_ms: float | None = None


def parse(name: str, params: Mapping[str, str]) -> ReportRequest:
    """The request for report `name` (optionally `name.svg`) with `params`; InvalidQuery if malformed."""
    svg = name.endswith(".svg")
    name = name.removesuffix(".svg")
    if name not in NAMES:
        raise InvalidQuery(f"unknown report {name!r}: one of {', '.join(NAMES)}")
    fmt = params.get("format", "json")
    if fmt not in FORMATS:
        raise InvalidQuery(f"format must be json or csv (got {fmt!r})")
    if "month" not in params:
        raise InvalidQuery("month=YYYY-MM is required")
    raw = params.get("threshold_ms")
    threshold: float | None = None
    if raw:
        try:
            threshold = float(raw)
        except ValueError:
            raise InvalidQuery(f"threshold_ms must be a number (got {raw!r})") from None
    case = params.get("case")
    if case and name != "sla":
        raise InvalidQuery("case (a case id or ticket) narrows the sla report only")
    query = report_query(params["month"], params.get("customer"), params.get("server"), case)
    return ReportRequest(name, query, fmt, svg, threshold)


load_policies = load_policy_book
"""The SLA policy book the reports judge against (the case engine's loader)."""
