"""The case engine and partner correspondence (issue 4): threading, staff answers, referrals, phone notes."""

from __future__ import annotations

from typing import Any

import pytest

from policy.sla import ClockKind
from schemas.cases import CaseEventType, CaseSource, CaseState, Severity, Visibility
from schemas.commands import CommandType
from schemas.notifications import Notification, Role
from streams.cases import requester, thread_message_id
from streams.notices import REFERRAL_TEXT
from tests.unit.streams.test_cases import Sim, hours, roles, staff_case

ET = CaseEventType
C = CommandType
MID = "<CAF+x=1.abc@mail.northwind.example>"
FROM = "Nadia Desk <nadia@northwind.example>"


def partner_email_case(partner: str | None = "northwind-partners", **details: Any) -> Sim:
    """An email case as the intake opens it: the partner's Message-ID and sender in the details."""
    sim = Sim()
    sim.send(
        C.OPEN,
        0,
        actor="email:nadia@northwind.example",
        source=CaseSource.EMAIL,
        customer_id="acme",
        partner_id=partner,
        title="Invoices do not export",
        message="Since this morning no invoice exports.",
        details={"message_id": MID, "from": FROM, **details},
    )
    return sim


def threaded(n: Notification) -> tuple[str | None, str | None]:
    return n.thread_message_id, n.reply_to_address


# --- threading -----------------------------------------------------------------------------------------


def test_open_keeps_the_partners_message_id_and_sender_on_the_case() -> None:
    sim = partner_email_case()
    assert sim.c.thread_message_id == MID
    assert sim.c.requester == "nadia@northwind.example"
    opened = sim.of(ET.CASE_OPENED)[0]
    assert opened.details["message_id"] == MID
    assert sim.c.state is CaseState.NEW


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        (MID, MID),
        ("  CAF+x=1.abc@mail.example  ", "<CAF+x=1.abc@mail.example>"),
        ("<a@[192.0.2.1]>", "<a@[192.0.2.1]>"),
        ("<a@x>\r\nBcc: victim@example.com", None),
        ("<a b@x>", None),
        ('<"quoted"@x>', None),
        ("<a@x>, <b@y>", None),
        ("<no-domain>", None),
        ("<" + "a" * 600 + "@x>", None),
        (42, None),
        (None, None),
    ],
)
def test_only_a_header_safe_message_id_is_kept(raw: Any, kept: str | None) -> None:
    assert thread_message_id({"message_id": raw}) == kept


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        (FROM, "nadia@northwind.example"),
        ("nadia@northwind.example", "nadia@northwind.example"),
        ("nadia@northwind.example\r\nBcc: x@y.z", None),
        ("not an address", None),
        ("a@b", None),
        (7, None),
    ],
)
def test_only_a_bare_header_safe_sender_is_kept(raw: Any, kept: str | None) -> None:
    assert requester({"from": raw}) == kept


def test_a_bad_message_id_never_refuses_the_case() -> None:
    sim = partner_email_case(message_id="<evil@x>\nBcc: a@b.c", **{"from": "garbage"})
    assert sim.c.state is CaseState.NEW
    assert (sim.c.thread_message_id, sim.c.requester) == (None, None)


def test_ticket_email_to_the_partner_is_threaded_and_nothing_else_is() -> None:
    sim = partner_email_case()
    sim.send(C.TRIAGE, 30, severity=Severity.SEV1, owner="staff:sam")
    helpdesk = sim.sent(Role.PARTNER_HELPDESK)
    assert len(helpdesk) == 1
    assert "[FW-100000]" in helpdesk[0].subject
    assert threaded(helpdesk[0]) == (MID, "nadia@northwind.example")
    internal = [n for n in sim.notifications if n.role is not Role.PARTNER_HELPDESK]
    assert roles(internal) == [("page", "operations_manager"), ("email", "support_team")]
    assert all(threaded(n) == (None, None) for n in internal)


def test_a_sender_address_alone_makes_the_partner_reachable() -> None:
    sim = partner_email_case(partner=None)
    sim.send(C.TRIAGE, 5, severity=Severity.SEV3)
    (ticket,) = sim.notifications
    assert ticket.role is Role.PARTNER_HELPDESK
    assert ticket.partner_id is None
    assert ticket.reply_to_address == "nadia@northwind.example"


def test_portal_case_ticket_email_is_not_threaded() -> None:
    sim = Sim()
    sim.send(C.OPEN, 0, source=CaseSource.PORTAL, customer_id="acme", partner_id="northwind-partners")
    sim.send(C.TRIAGE, 5, severity=Severity.SEV3)
    (ticket,) = sim.notifications
    assert ticket.role is Role.PARTNER_HELPDESK
    assert threaded(ticket) == (None, None)


# --- staff answers (post_update) -------------------------------------------------------------------------


def test_staff_answer_on_an_email_case_goes_to_the_partner_only_threaded() -> None:
    sim = partner_email_case()
    sim.send(C.TRIAGE, 5, severity=Severity.SEV2)
    decision = sim.send(C.POST_UPDATE, 20, message="Please send us the export log.")
    assert roles(decision.notifications) == [("email", "partner_helpdesk")]
    (answer,) = decision.notifications
    assert answer.body == "Please send us the export log."
    assert threaded(answer) == (MID, "nadia@northwind.example")
    assert "[FW-100000]" in answer.subject
    update = next(e for e in decision.events if e.type is ET.CUSTOMER_UPDATE)
    assert update.visibility is Visibility.CUSTOMER


def test_staff_may_answer_before_triage() -> None:
    sim = partner_email_case()
    decision = sim.send(C.POST_UPDATE, 3, message="Which customer is affected?")
    assert roles(decision.notifications) == [("email", "partner_helpdesk")]
    assert decision.notifications[0].ticket is None
    assert sim.c.state is CaseState.NEW


def test_staff_case_with_a_partner_tells_both_customer_and_partner() -> None:
    sim = Sim()
    sim.send(
        C.OPEN,
        0,
        source=CaseSource.STAFF,
        customer_id="acme",
        partner_id="northwind-partners",
        severity=Severity.SEV2,
        title="Backup job failing",
    )
    decision = sim.send(C.POST_UPDATE, 10, message="We are looking into it.")
    assert roles(decision.notifications) == [("email", "customer_technical"), ("email", "partner_helpdesk")]
    assert all(threaded(n) == (None, None) for n in decision.notifications)


def test_email_case_without_a_reachable_partner_still_tells_the_customer() -> None:
    sim = Sim()
    sim.send(C.OPEN, 0, source=CaseSource.EMAIL, customer_id="acme", title="Help")
    decision = sim.send(C.POST_UPDATE, 10, message="Looking.")
    assert roles(decision.notifications) == [("email", "customer_technical")]


def test_monitor_style_updates_stay_with_the_customer() -> None:
    sim = staff_case(Severity.SEV2)
    decision = sim.send(C.POST_UPDATE, 10, message="Looking.")
    assert roles(decision.notifications) == [("email", "customer_technical")]


def test_automatic_status_notices_of_an_email_sev1_go_to_the_partner_threaded() -> None:
    sim = partner_email_case()
    sim.send(C.TRIAGE, 5, severity=Severity.SEV1)
    sim.send(C.START_WORK, 10)
    sim.run_until(hours(1))
    (notice,) = [n for n in sim.notifications if n.purpose.startswith("status.notice")]
    assert notice.role is Role.PARTNER_HELPDESK
    assert threaded(notice) == (MID, "nadia@northwind.example")


# --- referral ---------------------------------------------------------------------------------------------


def test_referral_closes_without_ticket_and_tells_the_partner_threaded() -> None:
    sim = partner_email_case()
    decision = sim.send(C.CLOSE, 15, details={"referral": True})
    assert sim.c.state is CaseState.CLOSED
    assert sim.c.ticket is None
    assert not decision.ticket_used
    closed, requested = decision.events
    assert closed.type is ET.CLOSED
    assert closed.details["referral"] is True
    assert closed.details["message"] == REFERRAL_TEXT
    assert "referral" in closed.reason
    assert "the partner was told" in closed.reason
    assert closed.visibility is Visibility.CUSTOMER
    assert requested.type is ET.NOTIFICATION_REQUESTED
    (mail,) = decision.notifications
    assert (mail.role, mail.purpose) == (Role.PARTNER_HELPDESK, f"referral:{closed.seq}")
    assert mail.body == REFERRAL_TEXT
    assert mail.subject == "[FW case case-1] Re: Invoices do not export"
    assert threaded(mail) == (MID, "nadia@northwind.example")
    assert requested.details["key"] == mail.key


def test_referral_uses_the_staff_text_when_given() -> None:
    sim = partner_email_case()
    decision = sim.send(C.CLOSE, 15, message="Please ask your ISP.", details={"referral": True})
    assert decision.notifications[0].body == "Please ask your ISP."
    assert decision.events[0].details["message"] == "Please ask your ISP."


def test_referral_of_a_triaged_case_is_rejected() -> None:
    sim = partner_email_case()
    sim.send(C.TRIAGE, 5, severity=Severity.SEV3)
    before = sim.c
    decision = sim.send(C.CLOSE, 15, details={"referral": True})
    (rejected,) = decision.events
    assert rejected.type is ET.COMMAND_REJECTED
    assert "untriaged" in rejected.reason
    assert decision.notifications == []
    assert sim.c.state is before.state is CaseState.TRIAGED


def test_referral_must_be_a_boolean() -> None:
    sim = partner_email_case()
    decision = sim.send(C.CLOSE, 15, details={"referral": "yes"})
    assert [e.type for e in decision.events] == [ET.COMMAND_REJECTED]
    assert sim.c.state is CaseState.NEW


def test_referral_without_anyone_to_tell_still_closes_and_says_so() -> None:
    sim = Sim()
    sim.send(C.OPEN, 0, source=CaseSource.EMAIL, customer_id="acme")
    decision = sim.send(C.CLOSE, 15, details={"referral": True})
    assert sim.c.state is CaseState.CLOSED
    assert decision.notifications == []
    assert "nobody to tell" in decision.events[0].reason


def test_a_plain_close_of_a_new_case_tells_nobody() -> None:
    sim = partner_email_case()
    decision = sim.send(C.CLOSE, 15, details={"referral": False})
    assert [e.type for e in decision.events] == [ET.CLOSED]
    assert decision.notifications == []


def test_a_replayed_referral_sends_nothing_twice() -> None:
    sim = partner_email_case()
    command = sim.command(C.CLOSE, 15, details={"referral": True})
    first = sim.apply(command)
    again = sim.apply(command)
    assert len(first.notifications) == 1
    assert (again.events, again.notifications) == ([], [])


# --- notes and phone follow-ups ------------------------------------------------------------------------


def test_phone_follow_up_is_internal_by_default() -> None:
    sim = partner_email_case()
    decision = sim.send(C.NOTE, 5, message="Called Nadia, she will send logs.", details={"kind": "phone"})
    (note,) = decision.events
    assert note.type is ET.NOTE
    assert note.details["kind"] == "phone"
    assert note.reason == "phone follow-up"
    assert note.visibility is Visibility.INTERNAL
    assert decision.notifications == []


def test_visible_phone_follow_up_is_shown_and_counts_as_first_response() -> None:
    sim = partner_email_case()
    sim.send(C.TRIAGE, 5, severity=Severity.SEV2)
    decision = sim.send(
        C.NOTE, 60, message="Called the help desk.", details={"kind": "phone", "visible": True}
    )
    assert decision.events[0].visibility is Visibility.CUSTOMER
    assert decision.notifications == []
    assert sim.c.responded
    sim.run_until(hours(48))
    assert sim.of(ET.SLA_BREACHED) == []


def test_an_internal_note_is_no_response() -> None:
    sim = partner_email_case()
    sim.send(C.TRIAGE, 5, severity=Severity.SEV2)
    sim.send(C.NOTE, 60, message="Tried to call, no answer.", details={"kind": "phone"})
    sim.run_until(hours(24))
    assert [e.details["clock"] for e in sim.of(ET.SLA_BREACHED)] == [ClockKind.FIRST_RESPONSE.value]


def test_visible_note_on_a_closed_case_changes_no_clock() -> None:
    sim = partner_email_case()
    sim.send(C.CLOSE, 5)
    decision = sim.send(C.NOTE, 10, message="Partner called back.", details={"visible": True})
    assert decision.events[0].visibility is Visibility.CUSTOMER
    assert not sim.c.responded


@pytest.mark.parametrize("details", [{"kind": "fax"}, {"kind": 1}, {"visible": "true"}])
def test_bad_note_details_are_rejected(details: dict[str, Any]) -> None:
    sim = partner_email_case()
    decision = sim.send(C.NOTE, 5, message="x", details=details)
    assert [e.type for e in decision.events] == [ET.COMMAND_REJECTED]
