"""The sink with a real broker and embedded store: failures inside maintenance windows are stored as
planned (windows read at start and followed live), and chained case events of every kind keep their
new columns."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from fleetcore.compacted import publish
from fleetcore.settings import Settings
from history.client import render_history
from history.queries import case_events, server_history
from history.store import connect
from schemas.cases import CaseEvent, CaseEventType, CaseSource, CaseState, Severity, Visibility, chained
from schemas.maintenance import MaintenanceWindow
from schemas.topics import Topics
from sinks.service import SinkService
from tests.helpers import T0, result, send_results, wait_for
from tests.integration.sinks.conftest import produce_raw

pytestmark = pytest.mark.integration

MIN = timedelta(minutes=1)


def window(window_id: str, start: int, end: int, **extra: Any) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate(
        {
            "window_id": window_id,
            "customer_id": "acme",
            "starts_at": T0 + start * MIN,
            "ends_at": T0 + end * MIN,
            "created_by": "ops",
            "created_at": T0 - 60 * MIN,
            **extra,
        }
    )


def put(bootstrap: str, topics: Topics, w: MaintenanceWindow) -> None:
    publish(bootstrap, topics.maintenance, w.window_id, w.model_dump_json().encode())


def marks(settings: Settings) -> dict[str, str | None]:
    """probe_id -> maintenance_id of every stored probe."""
    client = connect(settings.store_dsn(), settings.clickhouse_database)
    try:
        rows = client.query("SELECT probe_id, maintenance_id FROM probe_results").result_rows
    finally:
        client.close()
    return {str(p): m for p, m in rows}


def test_failures_inside_windows_are_marked_planned(
    kafka_bootstrap: str, topics: Topics, sink_settings: Settings
) -> None:
    put(kafka_bootstrap, topics, window("mw-srv", 10, 20, server_id="srv-m"))
    put(kafka_bootstrap, topics, window("mw-all", 30, 40, cancelled_at=T0 + 35 * MIN, cancelled_by="bob"))
    put(kafka_bootstrap, topics, window("mw-gone", 0, 60, server_id="srv-m"))
    publish(kafka_bootstrap, topics.maintenance, "mw-gone", None)  # deleted before the sink starts
    first = [
        result("srv-m", 5, False),  # before its window
        result("srv-m", 10, False),  # at the start: inside
        result("srv-m", 15, True),  # a pass inside a window: marked, but not a planned failure
        result("srv-m", 19, False),
        result("srv-m", 20, False),  # at the end: outside
        result("srv-x", 32, False),  # customer-wide window
        result("srv-x", 36, False),  # after the cancel
        result("srv-y", 12, False, customer_id="globex"),  # another customer's server
    ]
    send_results(kafka_bootstrap, topics.probe_results, first)
    service = SinkService(sink_settings, grace_ms=200, http=False)
    thread = threading.Thread(target=service.run, name="sink-under-test")
    thread.start()
    try:
        assert service.ready.wait(60)
        wait_for(lambda: len(marks(sink_settings)) == len(first), 60, "the first results stored")
        feed = service.maintenance
        assert feed is not None
        # a window published while the sink runs is followed live
        put(kafka_bootstrap, topics, window("mw-late", 50, 55, server_id="srv-y", customer_id="globex"))
        wait_for(lambda: "mw-late" in feed.book, 30, "the live window")
        later = [
            result("srv-y", 50, False, customer_id="globex"),
            result("srv-y", 56, False, customer_id="globex"),
        ]
        send_results(kafka_bootstrap, topics.probe_results, later)
        wait_for(lambda: len(marks(sink_settings)) == len(first) + len(later), 60, "the later results stored")
    finally:
        service.stop_event.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    expected = [None, "mw-srv", "mw-srv", "mw-srv", None, "mw-all", None, None, "mw-late", None]
    stored = marks(sink_settings)
    assert [stored[r.probe_id] for r in first + later] == expected

    client = connect(sink_settings.store_dsn(), sink_settings.clickhouse_database)
    try:
        data = server_history(client, "srv-m")
    finally:
        client.close()
    assert [(p["ok"], p["planned"]) for p in data["probes"]] == [
        (False, False), (False, True), (True, False), (False, True), (False, False),
    ]  # fmt: skip
    text = render_history(data)
    assert "5 probes (newest first), 4 failed (2 planned)" in text
    assert sum(" planned " in line and "mw-srv" in line for line in text.splitlines()) == 2


def chain_of_every_type() -> list[CaseEvent]:
    """One case whose chain holds every event type, starting without severity (awaiting triage)."""
    events: list[CaseEvent] = []
    prev = ""
    for seq, event_type in enumerate(CaseEventType):
        triaged = seq > 0
        event = CaseEvent(
            event_id=f"evt-{seq}",
            case_id="case-email-1",
            type=event_type,
            severity=Severity.SEV2 if triaged else None,
            source=CaseSource.EMAIL,
            server_id="srv-c",
            customer_id="acme",
            at=T0 + seq * MIN,
            actor="bob" if triaged else "mail-intake",
            state=CaseState.WORKING if triaged else CaseState.NEW,
            ticket="FW-00042" if triaged else None,
            owner="bob" if triaged else None,
            partner_id="isp-7",
            reason=f"step {seq}",
            command_id=f"cmd-{seq}",
            visibility=Visibility.INTERNAL if event_type.value.startswith("sla.") else Visibility.CUSTOMER,
        )
        placed = chained(event, seq, prev)
        prev = placed.hash
        events.append(placed)
    return events


def test_chained_case_events_of_every_type_are_stored_with_their_new_columns(
    kafka_bootstrap: str, topics: Topics, sink_settings: Settings
) -> None:
    events = chain_of_every_type()
    messages: list[tuple[int, bytes | None, bytes | None]] = [
        (1, e.case_id.encode(), e.model_dump_json().encode())
        for e in [*events, events[3]]  # one replayed
    ]
    produce_raw(kafka_bootstrap, topics.cases, messages)
    stats = SinkService(
        sink_settings,
        until=lambda s: s.rows.get("case_events", 0) >= len(events) + 1,
        http=False,
        grace_ms=200,
    ).run()
    assert stats.dead_letters == 0
    client = connect(sink_settings.store_dsn(), sink_settings.clickhouse_database)
    try:
        stored = case_events(client, "case-email-1")
    finally:
        client.close()
    assert [e["type"] for e in stored] == [t.value for t in CaseEventType]
    assert [e["seq"] for e in stored] == list(range(len(events)))
    for got, sent in zip(stored, events, strict=True):
        assert got["severity"] == (None if sent.severity is None else int(sent.severity))
        assert (got["state"], got["ticket"], got["owner"]) == (sent.state.value, sent.ticket, sent.owner)
        assert (got["partner_id"], got["reason"], got["command_id"]) == (
            sent.partner_id,
            sent.reason,
            sent.command_id,
        )
        assert got["visibility"] == sent.visibility.value
        assert (got["prev_hash"], got["hash"]) == (sent.prev_hash, sent.hash)
        assert got["actor"] == sent.actor
    # the stored columns are enough to re-check the chain
    assert all(stored[i]["prev_hash"] == stored[i - 1]["hash"] for i in range(1, len(stored)))
