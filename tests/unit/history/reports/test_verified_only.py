"""Reports count only events the sink verified (and rows stored before it verified): a forged copy of a
case event, or a forged case, changes no number."""

from __future__ import annotations

from datetime import timedelta

from clickhouse_connect.driver.client import Client

from casefile.audit import EventStatus, EventVerdict
from history.ddl import CASE_COLUMNS
from history.reports import build, report_query
from schemas.cases import CaseEventType, CaseState, chained
from sinks.rows import case_row, columns
from tests.unit.history.reports.golden import CASES, MONTH, case_events


def _store_forged(client: Client) -> None:
    d = case_events(CASES[3])  # case-d: working at the month's end
    closed = d[-1].model_copy(
        update={"type": CaseEventType.CLOSED, "state": CaseState.CLOSED, "event_id": "evt-forged-close"}
    )
    appended = chained(closed, d[-1].seq + 1, d[-1].hash)  # re-hashed, unsigned, in the home partition
    rewritten = d[-1].model_copy(update={"state": CaseState.RESOLVED})  # a copy of the last event, changed
    fake = chained(
        case_events(CASES[0])[0].model_copy(
            update={"case_id": "case-fake", "event_id": "evt-fake", "at": d[0].at + timedelta(hours=1)}
        ),
        0,
        "",
    )
    rows = [
        case_row(appended, "t.cases", 0, 900, EventVerdict(EventStatus.UNSIGNED, "unsigned")),
        case_row(rewritten, "t.cases", 3, 901, EventVerdict(EventStatus.FORGED, "hash mismatch")),
        case_row(fake, "t.cases", 1, 902, EventVerdict(EventStatus.MISPLACED, "in partition 1")),
    ]
    client.insert(
        "case_events", columns(rows, len(CASE_COLUMNS)), column_names=list(CASE_COLUMNS), column_oriented=True
    )
    client.command("OPTIMIZE TABLE case_events FINAL")


def test_forged_rows_change_no_report(golden: Client) -> None:
    before = {name: build(golden, name, report_query(MONTH)) for name in ("cases", "sla")}
    _store_forged(golden)
    after = {name: build(golden, name, report_query(MONTH)) for name in ("cases", "sla")}
    assert after == before
    faults = golden.query("SELECT count() FROM case_chain_faults").result_rows[0][0]
    assert faults == 3
    state = golden.query("SELECT state FROM case_state FINAL WHERE case_id = 'case-d'").result_rows
    assert state == [(case_events(CASES[3])[-1].state.value,)]
