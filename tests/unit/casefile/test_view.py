"""Folding case events into case views: state, header fields, SLA facts, duplicates, old events, lookup."""

from __future__ import annotations

from datetime import timedelta

import pytest

from casefile.view import CaseView, find, fold
from schemas.cases import (
    CaseEvent,
    CaseEventType,
    CaseSource,
    CaseState,
    Severity,
    chained,
    event_id_for,
    monitor_case_id,
)
from tests.helpers import T0, case_event
from tests.unit.casefile.builders import E, S, chain, event, history


def view_of(events: list[CaseEvent]) -> CaseView:
    views = fold(events)
    assert len(views) == 1
    return next(iter(views.values()))


@pytest.mark.parametrize(
    ("upto", "state"),
    [
        (1, CaseState.TRIAGED),
        (2, CaseState.WORKING),
        (3, CaseState.WORKING),
        (4, CaseState.WORKING),
        (5, CaseState.WAITING),
        (6, CaseState.WORKING),
        (7, CaseState.WORKING),
        (8, CaseState.RESOLVED),
        (9, CaseState.CLOSED),
    ],
)
def test_state_after_each_event(upto: int, state: CaseState) -> None:
    view = view_of(history()[:upto])
    assert view.state is state
    assert view.last_event == history()[upto - 1]
    assert view.is_open is (state not in (CaseState.RESOLVED, CaseState.CLOSED))


def test_header_and_sla_facts() -> None:
    view = view_of(history())
    assert view.case_id == "stf-case1"
    assert view.ticket == "FW-100003"
    assert view.severity is Severity.SEV2
    assert view.source is CaseSource.STAFF
    assert (view.customer, view.server, view.owner) == ("acme", "web-1", "bob")
    assert view.title == "web-1 answers 500"
    assert view.opened_at == T0
    assert view.updated_at == T0 + timedelta(minutes=120)
    assert view.work_started_at == T0 + timedelta(minutes=5)
    assert view.last_customer_update_at == T0 + timedelta(minutes=30)
    assert [e.details["clock"] for e in view.breaches] == ["resolution"]
    assert view.resolved_at == T0 + timedelta(minutes=90)
    assert view.waiting_since is None
    assert len(view.timeline) == 9
    assert len(view.customer_timeline()) == 8  # the internal note is hidden from customers


def test_waiting_since_is_set_while_waiting_and_cleared_after() -> None:
    events = history()
    assert view_of(events[:5]).waiting_since == T0 + timedelta(minutes=50)
    assert view_of(events[:6]).waiting_since is None


def test_severity_change_and_reopen() -> None:
    events = chain(
        [
            *[e.model_copy(update={"hash": "", "seq": 0, "prev_hash": ""}) for e in history()[:8]],
            event(E.REOPENED, 100, S.WORKING, reason="broke again"),
            event(E.SEVERITY_CHANGED, 101, S.WORKING, severity=Severity.SEV1),
        ]
    )
    view = view_of(events)
    assert view.state is CaseState.WORKING
    assert view.severity is Severity.SEV1
    assert view.resolved_at is None


def test_identical_duplicates_are_kept_once() -> None:
    events = history()
    view = view_of([*events[:4], events[2], events[3], *events[4:], events[-1]])
    assert len(view.timeline) == 9
    assert view.timeline == events
    assert view.state is CaseState.CLOSED


def test_rejected_command_changes_nothing() -> None:
    events = history()[:2]
    rejected = chain(
        [
            *[e.model_copy(update={"hash": ""}) for e in events],
            # the engine stamps its rejection with whatever it has; the view must not take it over
            event(E.COMMAND_REJECTED, 10, S.CLOSED, reason="cannot close a case being worked", owner="x"),
        ]
    )
    view = view_of(rejected)
    assert view.state is CaseState.WORKING
    assert view.owner == "bob"
    assert view.rejected == 1
    assert view.updated_at == T0 + timedelta(minutes=5)
    assert view.last_event is not None
    assert view.last_event.type is CaseEventType.COMMAND_REJECTED


def test_rejection_for_an_unknown_case_makes_no_case() -> None:
    ghost = event(E.COMMAND_REJECTED, 1, S.NEW, case_id="stf-nope", reason="no such case")
    views = fold([*history(), ghost])
    assert not views["stf-nope"].is_case
    assert find(views, "stf-nope") is None
    assert views["stf-case1"].is_case


def test_events_from_before_the_lifecycle_fields() -> None:
    """The first detector wrote monitor events without state, ticket, seq or hash."""
    opened = case_event("web-9", CaseEventType.CASE_OPENED, 10)
    recovered = case_event("web-9", CaseEventType.SERVER_RECOVERED, 40)
    assert opened.hash == ""
    assert opened.state is CaseState.NEW
    view = view_of([opened, recovered, opened])
    assert view.case_id == monitor_case_id("web-9", T0)
    assert view.severity is Severity.SEV1
    assert view.recovered_at == T0 + timedelta(minutes=40)
    assert view.state is CaseState.NEW
    assert view.is_open
    assert view.ticket is None
    assert len(view.timeline) == 2
    resolved = opened.model_copy(
        update={
            "type": CaseEventType.RESOLVED,
            "event_id": event_id_for(opened.case_id, CaseEventType.RESOLVED),
            "severity": None,
        }
    )
    view = view_of([opened, recovered, resolved])
    assert view.state is CaseState.RESOLVED
    assert view.severity is Severity.SEV1  # an old event without severity keeps the known one


def test_title_falls_back_to_the_opening_reason() -> None:
    opened = chain([event(E.CASE_OPENED, 0, S.NEW, reason="printer on fire", severity=None, ticket=None)])
    view = view_of(opened)
    assert view.title == "printer on fire"
    assert view.severity is None
    assert view.state is CaseState.NEW


def test_find_by_case_id_or_ticket() -> None:
    views = fold([*history(), *history(case_id="stf-case2", ticket="FW-100004")])
    assert len(views) == 2
    one = find(views, "stf-case1")
    assert one is not None
    assert one.ticket == "FW-100003"
    by_ticket = find(views, "FW-100004")
    assert by_ticket is not None
    assert by_ticket.case_id == "stf-case2"
    lower = find(views, "fw-100004")
    assert lower is by_ticket
    assert find(views, "FW-999999") is None


def test_summary_and_dict_are_json_ready() -> None:
    view = view_of(history())
    summary = view.summary()
    assert summary["ticket"] == "FW-100003"
    assert summary["state"] == "closed"
    assert summary["severity"] == 2
    assert summary["breaches"] == ["resolution"]
    full = view.to_dict()
    assert len(full["timeline"]) == 9
    assert full["timeline"][0]["hash"] == history()[0].hash


def test_deadlines_follow_the_engines_latest_decision() -> None:
    from datetime import UTC, datetime

    from casefile.view import fold, parse_deadlines
    from schemas.cases import CaseSource, Severity
    from schemas.commands import CaseCommand, CommandType
    from streams.cases import EngineConfig, apply

    t0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
    opened = apply(
        None,
        CaseCommand(
            command_id="o",
            case_id="c-1",
            type=CommandType.OPEN,
            at=t0,
            actor="staff:a",
            source=CaseSource.STAFF,
            customer_id="acme",
            severity=Severity.SEV1,
            title="down",
        ),
        EngineConfig(),
        "FW-100000",
    )
    view = fold(opened.events)["c-1"]
    assert set(view.deadlines) == {"sev1.work", "status.update"}
    assert view.deadlines["sev1.work"] == datetime(2026, 11, 2, 11, tzinfo=UTC)
    worked = apply(
        opened.case,
        CaseCommand(command_id="w", case_id="c-1", type=CommandType.START_WORK, at=t0, actor="staff:a"),
        EngineConfig(),
        "FW-100004",
    )
    assert set(fold(opened.events + worked.events)["c-1"].deadlines) == {"status.update"}
    assert parse_deadlines("x=not-a-time,first.response=2026-11-03T09:00:00+00:00") == {
        "first.response": datetime(2026, 11, 3, 9, tzinfo=UTC)
    }
    assert parse_deadlines("") == {}


def test_replayed_old_event_never_changes_the_state() -> None:
    """An old event written again after the case moved on (a forged or replayed copy at an old seq) is kept
    aside in `conflicts`; the state stays what the newest event says."""
    events = history()[:8]  # resolved at seq 7
    later = events[4].model_copy(update={"at": events[4].at + timedelta(seconds=1)})
    replayed = chained(later, 4, events[3].hash)  # "waiting", at seq 4 again
    view = view_of([*events, replayed])
    assert view.state is CaseState.RESOLVED
    assert view.waiting_since is None
    assert view.conflicts == [replayed]
    assert replayed not in view.timeline
    assert view.head_seq == 7
    assert view.summary()["conflicts"] == 1
    # the same event exactly (a replay after a crash) is a plain duplicate
    assert view_of([*events, events[4]]).conflicts == []
