"""The staff console's pure parts: queue order and filters, the actions per state, the commands forms ask
for, the answer message, and the templates rendered with a real jinja2 environment."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from casefile.view import CaseView
from portal.directory import User, UserRole
from portal.web.app import templates_env
from portal.web.staff import (
    ACTIONS,
    ActionError,
    actions_for,
    age,
    build_command,
    outcome,
    parse_filter,
    queue_row,
    reply_label,
    timeline_rows,
    triage_queue,
)
from schemas.cases import (
    CaseEvent,
    CaseEventType,
    CaseSource,
    CaseState,
    Severity,
    Visibility,
    event_id_for,
)
from schemas.commands import CommandType
from tests.helpers import T0

SAM = User(username="sam", name="Sam Staff", role=UserRole.STAFF, password_hash="x")


def view(
    case_id: str,
    minute: int,
    state: CaseState = CaseState.NEW,
    severity: Severity | None = None,
    partner: str | None = "northwind-partners",
    source: CaseSource = CaseSource.PORTAL,
) -> CaseView:
    """A case opened `minute` minutes after T0, now in `state`."""
    folded = CaseView(case_id=case_id)
    folded.apply(
        CaseEvent(
            event_id=event_id_for(case_id, CaseEventType.CASE_OPENED),
            case_id=case_id,
            type=CaseEventType.CASE_OPENED,
            severity=severity,
            source=source,
            customer_id="acme",
            partner_id=partner,
            at=T0 + timedelta(minutes=minute),
            actor="partner:nadia",
            state=state,
            ticket=None if state is CaseState.NEW else f"FW-1{minute:05d}",
            details={"title": f"case {case_id}"},
            hash="h",
        )
    )
    return folded


def test_queue_puts_untriaged_first_then_oldest() -> None:
    views = [
        view("triaged-old", 1, CaseState.TRIAGED, Severity.SEV2),
        view("new-late", 30),
        view("sev1-mid", 10, CaseState.WORKING, Severity.SEV1),
        view("new-early", 20),
        view("waiting", 5, CaseState.WAITING, Severity.SEV3),
    ]
    order = [v.case_id for v in triage_queue(views, parse_filter({}))]
    assert order == ["new-early", "new-late", "triaged-old", "waiting", "sev1-mid"]


def test_queue_hides_resolved_and_closed_unless_asked() -> None:
    views = [
        view("open", 1, CaseState.TRIAGED, Severity.SEV2),
        view("resolved", 2, CaseState.RESOLVED, Severity.SEV2),
        view("closed", 3, CaseState.CLOSED, Severity.SEV2),
    ]
    assert [v.case_id for v in triage_queue(views, parse_filter({}))] == ["open"]
    assert len(triage_queue(views, parse_filter({"state": "all"}))) == 3
    assert [v.case_id for v in triage_queue(views, parse_filter({"state": "closed"}))] == ["closed"]


def test_queue_filters_by_severity_and_partner() -> None:
    views = [
        view("n1", 1),
        view("s1", 2, CaseState.TRIAGED, Severity.SEV1, partner="telco-isp"),
        view("s2", 3, CaseState.TRIAGED, Severity.SEV2),
    ]
    assert [v.case_id for v in triage_queue(views, parse_filter({"severity": "1"}))] == ["s1"]
    assert [v.case_id for v in triage_queue(views, parse_filter({"severity": "none"}))] == ["n1"]
    assert [v.case_id for v in triage_queue(views, parse_filter({"partner": "telco-isp"}))] == ["s1"]


@pytest.mark.parametrize("query", [{"state": "bogus"}, {"severity": "9"}, {"severity": "<script>"}])
def test_unknown_filter_values_fall_back_to_defaults(query: dict[str, str]) -> None:
    wanted = parse_filter(query)
    assert wanted.state_choice == "open"
    assert wanted.severity is None


def test_sev1_rows_stand_out() -> None:
    now = T0 + timedelta(hours=3, minutes=5)
    row = queue_row(view("s1", 0, CaseState.WORKING, Severity.SEV1), now)
    assert row["sev1"] is True
    assert row["age"] == "3h 5m"
    assert queue_row(view("s2", 0, CaseState.WORKING, Severity.SEV2), now)["sev1"] is False


def test_age() -> None:
    assert age(None, T0) == "-"
    assert age(T0, T0 + timedelta(minutes=45)) == "45m"
    assert age(T0, T0 + timedelta(days=2, hours=4, minutes=9)) == "2d 4h"
    assert age(T0 + timedelta(minutes=5), T0) == "0m"


def test_actions_follow_the_state() -> None:
    assert set(actions_for(view("n", 0))) >= {"refer", "triage", "reply", "phone", "note", "close"}
    assert "start_work" not in actions_for(view("n", 0))
    triaged = actions_for(view("t", 0, CaseState.TRIAGED, Severity.SEV2))
    assert "refer" not in triaged
    assert "triage" not in triaged
    assert {"start_work", "assign", "wait", "resolve", "severity"} <= set(triaged)
    closed = actions_for(view("c", 0, CaseState.CLOSED, Severity.SEV2))
    assert "reopen" in closed
    assert "resolve" not in closed


def _command(action: str, form: dict[str, Any], case: CaseView | None = None) -> Any:
    return build_command(action, form, case or view("case-1", 0), SAM, T0, "cmd-1")


def test_triage_command() -> None:
    command = _command("triage", {"severity": "1", "owner": "sam", "message": "looks bad"})
    assert command.type is CommandType.TRIAGE
    assert command.severity is Severity.SEV1
    assert command.owner == "sam"
    assert command.actor == "staff:sam"
    assert command.case_id == "case-1"
    assert command.at == T0
    assert command.message == "looks bad"


def test_referral_is_a_close_with_a_reason() -> None:
    command = _command("refer", {"reason": "end user", "message": ""})
    assert command.type is CommandType.CLOSE
    assert command.details == {"referral": True}
    assert command.reason == "end user"
    with pytest.raises(ActionError, match="reason"):
        _command("refer", {"reason": "  "})


def test_phone_follow_up_is_a_note_of_kind_phone() -> None:
    command = _command("phone", {"message": "called Nadia", "contact": "Nadia", "visible": "on"})
    assert command.type is CommandType.NOTE
    assert command.details == {"kind": "phone", "visible": True, "contact": "Nadia"}
    note = _command("note", {"message": "check the logs"})
    assert note.details == {"kind": "note"}


@pytest.mark.parametrize(
    ("action", "type_", "form"),
    [
        ("assign", CommandType.ASSIGN, {"owner": "alex"}),
        ("start_work", CommandType.START_WORK, {}),
        ("reply", CommandType.POST_UPDATE, {"message": "We restarted the server."}),
        ("severity", CommandType.CHANGE_SEVERITY, {"severity": "sev3"}),
        ("wait", CommandType.WAIT_ON_CUSTOMER, {"message": "need logs"}),
        ("resolve", CommandType.RESOLVE, {"reason": "fixed"}),
        ("close", CommandType.CLOSE, {}),
        ("reopen", CommandType.REOPEN, {"reason": "came back"}),
    ],
)
def test_each_action_sends_its_command(action: str, type_: CommandType, form: dict[str, str]) -> None:
    command = _command(action, form)
    assert command.type is type_
    assert command.details.get("referral") is None


@pytest.mark.parametrize(
    ("action", "form", "fragment"),
    [
        ("triage", {}, "severity"),
        ("triage", {"severity": "4"}, "severity"),
        ("assign", {"owner": ""}, "owner"),
        ("reply", {"message": " \n "}, "message"),
        ("phone", {"message": ""}, "what was said"),
        ("reply", {"message": "x" * 20001}, "too long"),
        ("nonsense", {}, "no such action"),
    ],
)
def test_incomplete_forms_send_nothing(action: str, form: dict[str, str], fragment: str) -> None:
    with pytest.raises(ActionError, match=fragment):
        _command(action, form)


def _answer(type_: CaseEventType, reason: str, ticket: str | None = None) -> CaseEvent:
    return CaseEvent(
        event_id="e1",
        case_id="case-1",
        type=type_,
        severity=Severity.SEV2,
        source=CaseSource.PORTAL,
        customer_id="acme",
        at=T0,
        state=CaseState.TRIAGED,
        ticket=ticket,
        reason=reason,
        command_id="cmd-1",
        visibility=Visibility.INTERNAL,
    )


def test_outcome_messages() -> None:
    triage = ACTIONS["triage"]
    assert "not arrived yet" in outcome(triage, [])
    rejected = outcome(triage, [_answer(CaseEventType.COMMAND_REJECTED, "already triaged as Sev2")])
    assert "rejected" in rejected
    assert "already triaged as Sev2" in rejected
    assert "FW-100007" in outcome(triage, [_answer(CaseEventType.TRIAGED, "triaged", "FW-100007")])


def test_reply_label_names_who_gets_it() -> None:
    assert "partner" in reply_label(view("e", 0, source=CaseSource.EMAIL))
    assert "customer" in reply_label(view("m", 0, CaseState.TRIAGED, Severity.SEV1, None, CaseSource.MONITOR))


def test_pages_render_with_the_real_templates() -> None:
    env = templates_env()
    case = view("case-1", 0, CaseState.TRIAGED, Severity.SEV1)
    note = _answer(CaseEventType.NOTE, "phone follow-up")
    case.apply(note.model_copy(update={"event_id": "e2", "hash": "h2", "severity": Severity.SEV1}))
    now = T0 + timedelta(hours=1)
    common: dict[str, Any] = {"user": SAM, "csrf_token": "tok<en>", "flashes": ["Triaged."], "request": None}
    queue = env.get_template("staff_queue.html").render(
        rows=[queue_row(case, now)],
        filter=parse_filter({}),
        states=[s.value for s in CaseState],
        partners=[],
        **common,
    )
    assert 'class="case sev1"' in queue
    assert "SEV1" in queue
    page = env.get_template("staff_case.html").render(
        case=queue_row(case, now),
        view=case,
        timeline=timeline_rows(case),
        actions=actions_for(case),
        labels={n: a.label for n, a in ACTIONS.items()},
        reply_label=reply_label(case),
        staff_names=["sam"],
        me="sam",
        waiting_since=None,
        **common,
    )
    assert 'value="tok&lt;en&gt;"' in page  # autoescaped, in every form
    assert page.count('name="csrf_token"') == len(actions_for(case)) + 1  # + sign-out
    assert "/staff/cases/case-1/start_work" in page
    assert "internal" in page
