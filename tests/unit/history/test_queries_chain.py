"""/api/history's case events carry the sink's verdict (chain_status, chain_fault): a forged copy of an event
is listed beside the genuine one, never instead of it, and a reader can tell them apart."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from casefile.audit import EventStatus, EventVerdict
from history.ddl import CASE_COLUMNS, migrate
from history.queries import case_events, server_history
from schemas.cases import CaseEventType, chained
from sinks.rows import case_row, columns
from tests.helpers import case_event

FORGED_REASON = "all fine, nothing to see"


def test_rows_of_every_status_say_which_they_are(store: Client) -> None:
    migrate(store)
    genuine = chained(case_event("srv-a", CaseEventType.CASE_OPENED, 10, last_error="HTTP 503"), 0, "")
    forged = genuine.model_copy(update={"reason": FORGED_REASON})  # hash no longer holds
    rows = [
        case_row(genuine, "t.cases", 0, 1, EventVerdict(EventStatus.VERIFIED)),
        case_row(forged, "t.cases", 2, 7, EventVerdict(EventStatus.FORGED, "hash mismatch")),
    ]
    store.insert(
        "case_events", columns(rows, len(CASE_COLUMNS)), column_names=list(CASE_COLUMNS), column_oriented=True
    )
    for listed in (server_history(store, "srv-a")["cases"], case_events(store, genuine.case_id)):
        assert [(c["event_id"], c["chain_status"]) for c in listed] == [
            (genuine.event_id, "verified"),
            (genuine.event_id, "forged"),
        ]
        assert (listed[0]["reason"], listed[0]["chain_fault"]) == (genuine.reason, "")
        assert (listed[1]["reason"], listed[1]["chain_fault"]) == (FORGED_REASON, "hash mismatch")
