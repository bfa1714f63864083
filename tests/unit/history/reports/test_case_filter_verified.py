"""A report asked for one case (by ticket or id) picks the case from counted rows only: a forged copy of
another case's event that carries this ticket does not drag that case in."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from casefile.audit import EventStatus, EventVerdict
from history.ddl import CASE_COLUMNS
from history.reports import build, report_query
from sinks.rows import case_row, columns
from tests.unit.history.reports.golden import CASES, MONTH, case_events

FOREIGN_TICKET = "FW-100008"
"""case-c's ticket."""


def _store_forged_ticket(client: Client, status: EventStatus) -> None:
    opened = case_events(CASES[0])[0]  # case-a's case.opened, as stored and counted
    copy = opened.model_copy(update={"ticket": FOREIGN_TICKET})  # hash no longer holds: forged
    rows = [case_row(copy, "t.cases", 2, 910, EventVerdict(status, "hash mismatch"))]
    client.insert(
        "case_events", columns(rows, len(CASE_COLUMNS)), column_names=list(CASE_COLUMNS), column_oriented=True
    )
    client.command("OPTIMIZE TABLE case_events FINAL")


def test_a_forged_copy_carrying_a_ticket_does_not_select_its_case(golden: Client) -> None:
    query = report_query(MONTH, case=FOREIGN_TICKET)
    before = build(golden, "sla", query)
    assert [c["case_id"] for c in before["cases"]] == ["case-c"]
    _store_forged_ticket(golden, EventStatus.FORGED)
    _store_forged_ticket(golden, EventStatus.MISPLACED)
    after = build(golden, "sla", query)
    assert after == before
    by_id = build(golden, "sla", report_query(MONTH, case="case-a"))
    assert by_id != after, "case-a itself is still found by its id"
