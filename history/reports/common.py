"""What every report shares: the month and filter arguments, bound-parameter SQL helpers, CSV output.

Reports read the raw tables (probe_results, case_events) so they answer for any history, rolled up or not.
Every value from outside (month, customer, server, threshold) is validated here and bound as a parameter.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from fleetcore.clock import from_epoch_ms, to_epoch_ms
from fleetcore.errors import StoreError
from history.ddl import COUNTED_EVENTS
from history.queries import InvalidQuery
from schemas.inventory import ID_PATTERN

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_ID = re.compile(ID_PATTERN)
MAX_CASE_REF = 100
"""The longest case id (schemas.cases.CaseEvent.case_id); tickets are shorter."""


@dataclass(frozen=True)
class ReportQuery:
    """One report's arguments: a calendar month (UTC), optional customer and server filters, and (SLA
    drill-down) one case by its id or ticket number."""

    month: str
    customer: str = ""
    server: str = ""
    case: str = ""

    @property
    def start(self) -> datetime:
        year, month = (int(x) for x in self.month.split("-"))
        return datetime(year, month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        start = self.start
        if start.month == 12:
            return start.replace(year=start.year + 1, month=1)
        return start.replace(month=start.month + 1)

    def params(self) -> dict[str, Any]:
        """Bound parameters of the month and filters (times as epoch ms)."""
        return {
            "start_ms": to_epoch_ms(self.start),
            "end_ms": to_epoch_ms(self.end),
            "customer": self.customer,
            "server": self.server,
            "case": self.case,
        }

    def header(self, name: str) -> dict[str, Any]:
        return {
            "report": name,
            "month": self.month,
            "customer": self.customer or None,
            "server": self.server or None,
            **({"case": self.case} if self.case else {}),
            "from": iso(to_epoch_ms(self.start)),
            "to": iso(to_epoch_ms(self.end)),
        }


def report_query(
    month: str, customer: str | None = None, server: str | None = None, case: str | None = None
) -> ReportQuery:
    """A validated ReportQuery; InvalidQuery (a 400) for a bad month or id. `case`: a case id or a ticket
    number (any letter case, "fw-100003")."""
    match = _MONTH.match(month or "")
    if not match or not 1 <= int(match.group(2)) <= 12 or not 1970 <= int(match.group(1)) <= 9999:
        raise InvalidQuery(f"month must be YYYY-MM (got {month!r})")
    for label, value in (("customer", customer), ("server", server)):
        if value and not _ID.match(value):
            raise InvalidQuery(f"invalid {label} id {value!r}")
    ref = (case or "").strip()
    if case and (not ref or len(ref) > MAX_CASE_REF or not ref.isprintable()):
        raise InvalidQuery(f"invalid case id or ticket {case!r}")
    return ReportQuery(month, customer or "", server or "", ref)


PERIOD = """{column} >= fromUnixTimestamp64Milli({{start_ms:Int64}}, 'UTC')
    AND {column} < fromUnixTimestamp64Milli({{end_ms:Int64}}, 'UTC')"""
FILTERS = """({customer:String} = '' OR customer_id = {customer:String})
    AND ({server:String} = '' OR server_id = {server:String})"""
CASE_FILTER = f"""({{case:String}} = '' OR case_id IN (
    SELECT case_id FROM case_events
    WHERE {COUNTED_EVENTS}
        AND (case_id = {{case:String}} OR upperUTF8(ifNull(ticket, '')) = upperUTF8({{case:String}}))
))"""  # noqa: S608 (constant fragments; values are bound)
"""One case by id or ticket (a case gets its ticket after opening: any of its events may carry it), found
from counted rows only (`history.ddl.COUNTED_EVENTS`): a forged copy carrying a ticket selects nothing."""


def run(client: Client, sql: str, params: dict[str, Any], what: str) -> list[tuple[Any, ...]]:
    """Rows of a parameterised query; StoreError naming the report if the store fails."""
    try:
        return [tuple(row) for row in client.query(sql, parameters=params).result_rows]
    except Exception as exc:
        raise StoreError(f"{what} report query failed: {exc}") from exc


def iso(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC with a Z."""
    return from_epoch_ms(int(ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def percent(part: float, whole: float) -> float | None:
    """part/whole as a percentage rounded to 4 places; None when nothing was measured."""
    return None if whole <= 0 else round(100.0 * part / whole, 4)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV with a header (columns in first-seen order; lists and dicts left out)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k, v in row.items() if k not in columns and not isinstance(v, list | dict))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return out.getvalue()
