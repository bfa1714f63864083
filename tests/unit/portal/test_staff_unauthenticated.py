"""The staff console marks a case kept from unauthenticated email: reason, claimed From, envelope sender."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from casefile.view import CaseView
from portal.directory import UNAUTHENTICATED_CUSTOMER, User, UserRole
from portal.web.app import templates_env
from portal.web.staff import (
    ACTIONS,
    actions_for,
    parse_filter,
    queue_row,
    reply_label,
    timeline_rows,
    unauthenticated_mail,
)
from schemas.cases import CaseSource, CaseState
from schemas.commands import CaseCommand, CommandType
from streams.cases import EngineConfig, apply

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SAM = User(username="sam", name="Sam", role=UserRole.STAFF, password_hash="x")
REASON = "envelope sender domain telco-isp.example is not aligned with From domain northwind.example"


def kept_view() -> CaseView:
    command = CaseCommand(
        command_id="email-open-unauthenticated:1",
        case_id="eml-0123456789abcdef0123",
        type=CommandType.OPEN,
        at=T0,
        actor="unauthenticated-email:helpdesk@northwind.example",
        source=CaseSource.EMAIL,
        customer_id=UNAUTHENTICATED_CUSTOMER,
        title="please close my case",
        message="close it",
        details={
            "unauthenticated": REASON,
            "claimed_from": "helpdesk@northwind.example",
            "claimed_partner": "northwind-partners",
            "envelope_from": "support@telco-isp.example",
        },
    )
    view = CaseView(case_id=command.case_id)
    for event in apply(None, command, EngineConfig(), "FW-100000").events:
        view.apply(event)
    return view


def plain_view() -> CaseView:
    command = CaseCommand(
        command_id="email-open:1",
        case_id="eml-aaaaaaaaaaaaaaaaaaaa",
        type=CommandType.OPEN,
        at=T0,
        actor="email:helpdesk@northwind.example",
        source=CaseSource.EMAIL,
        customer_id="acme",
        partner_id="northwind-partners",
        details={"from": "helpdesk@northwind.example"},
    )
    view = CaseView(case_id=command.case_id)
    for event in apply(None, command, EngineConfig(), "FW-100000").events:
        view.apply(event)
    return view


def test_unauthenticated_mail_facts() -> None:
    assert unauthenticated_mail(kept_view()) == {
        "reason": REASON,
        "claimed_from": "helpdesk@northwind.example",
        "claimed_partner": "northwind-partners",
        "envelope_from": "support@telco-isp.example",
    }
    assert unauthenticated_mail(plain_view()) is None


def test_queue_and_case_page_show_it() -> None:
    env = templates_env()
    kept, plain = kept_view(), plain_view()
    assert kept.state is CaseState.NEW
    now = T0 + timedelta(minutes=5)
    common: dict[str, Any] = {"user": SAM, "csrf_token": "t", "flashes": [], "request": None}
    queue = env.get_template("staff_queue.html").render(
        rows=[queue_row(kept, now), queue_row(plain, now)],
        filter=parse_filter({}),
        states=[s.value for s in CaseState],
        partners=[],
        **common,
    )
    assert queue.count('class="badge unauthenticated"') == 1
    assert f'title="{REASON}">unauthenticated</span> please close my case' in queue
    for view, shown in ((kept, True), (plain, False)):
        page = env.get_template("staff_case.html").render(
            case=queue_row(view, now),
            view=view,
            timeline=timeline_rows(view),
            actions=actions_for(view),
            labels={n: a.label for n, a in ACTIONS.items()},
            reply_label=reply_label(view),
            staff_names=["sam"],
            me="sam",
            waiting_since=None,
            **common,
        )
        assert ('id="unauthenticated"' in page) is shown
        assert (REASON in page) is shown
        assert ("<code>support@telco-isp.example</code>" in page) is shown
