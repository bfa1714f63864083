"""The intake's decisions: loop rules, the rate limit over virtual time, threading, customers, the plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from portal.directory import UNAUTHENTICATED_CUSTOMER, Partner
from portal.intake.auth import Verdict
from portal.intake.parse import ParsedMail
from portal.intake.rules import (
    Action,
    Answer,
    LoopCheck,
    RateLimiter,
    RefKind,
    Thread,
    case_id_for,
    case_tag,
    command_id_for,
    decide,
    loop_check,
    named_customer,
    rate_limited,
    references_of,
)

SUPPORT = "support@fleetwatch.local"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
NORTHWIND = Partner(
    partner_id="northwind-partners",
    name="Northwind Partners",
    addresses=("helpdesk@northwind.example",),
    customers=("acme", "umbrella"),
)


def mail(
    sender: str = "helpdesk@northwind.example",
    subject: str = "Server down",
    body: str = "acme-1 does not answer",
    message_id: str | None = "<m1@northwind.example>",
    references: tuple[str, ...] = (),
    content_type: str = "text/plain",
    **loop_headers: str,
) -> ParsedMail:
    return ParsedMail(
        sender=sender,
        sender_name="",
        subject=subject,
        message_id=message_id,
        references=references,
        body=body,
        attachments=(),
        content_type=content_type,
        loop_headers={k.replace("_", "-"): v for k, v in loop_headers.items()},
        digest="d" * 64,
    )


# -- loops --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "envelope", "answer", "file"),
    [
        ({}, "helpdesk@northwind.example", True, True),
        ({"auto_submitted": "no"}, "helpdesk@northwind.example", True, True),
        ({"auto_submitted": "No; comment"}, "helpdesk@northwind.example", True, True),
        ({"auto_submitted": "auto-replied"}, "helpdesk@northwind.example", False, False),
        ({"auto_submitted": "auto-replied; owner-email=x"}, "helpdesk@northwind.example", False, False),
        ({"auto_submitted": "auto-generated"}, "helpdesk@northwind.example", False, True),
        ({"auto_submitted": "auto-notified"}, "helpdesk@northwind.example", False, True),
        ({"precedence": "bulk"}, "helpdesk@northwind.example", False, True),
        ({"precedence": "Junk"}, "helpdesk@northwind.example", False, True),
        ({"precedence": "list"}, "helpdesk@northwind.example", False, True),
        ({"precedence": "first-class"}, "helpdesk@northwind.example", True, True),
        ({"x_autoreply": "yes"}, "helpdesk@northwind.example", False, False),
        ({"x_autorespond": "yes"}, "helpdesk@northwind.example", False, False),
        ({"x_auto_response_suppress": "All"}, "helpdesk@northwind.example", False, True),
        ({"x_auto_response_suppress": "DR, OOF, AutoReply"}, "helpdesk@northwind.example", False, True),
        ({"x_auto_response_suppress": "DR, RN"}, "helpdesk@northwind.example", True, True),
        ({"list_id": "<helpdesk.northwind.example>"}, "helpdesk@northwind.example", False, True),
        ({}, "<>", False, False),
        ({}, "", False, False),
        ({"sender": "support@fleetwatch.local"}, "x@y.example", False, False),
        ({}, "SUPPORT@fleetwatch.local", False, False),
        ({"sender": "mailer-daemon@northwind.example"}, "x@northwind.example", False, False),
        ({"sender": "postmaster@northwind.example"}, "x@northwind.example", False, False),
        ({"sender": "no-reply@northwind.example"}, "x@northwind.example", False, True),
        ({"content_type": "multipart/report"}, "helpdesk@northwind.example", False, False),
    ],
)
def test_loop_matrix(kwargs: dict[str, str], envelope: str, answer: bool, file: bool) -> None:
    check = loop_check(mail(**kwargs), envelope, SUPPORT)  # type: ignore[arg-type]
    assert (check.answer, check.file) == (answer, file)
    assert bool(check.reason) == (not answer)


# -- rate limit ------------------------------------------------------------------------------------------


def test_rate_limit_is_a_sliding_hour_per_sender() -> None:
    limiter = RateLimiter(per_hour=3)
    a, b = "a@x.example", "b@x.example"
    assert [limiter.allow(a, T0 + timedelta(minutes=m)) for m in (0, 10, 20, 30)] == [True, True, True, False]
    assert limiter.allow(b, T0 + timedelta(minutes=30))  # another sender has its own budget
    assert not limiter.allow(a, T0 + timedelta(minutes=59, seconds=59))
    assert limiter.allow(a, T0 + timedelta(minutes=60))  # the 12:00 answer left the window
    assert not limiter.allow(a, T0 + timedelta(minutes=61))
    assert limiter.allow(a, T0 + timedelta(minutes=200))


def test_refused_attempts_do_not_extend_the_block() -> None:
    limiter = RateLimiter(per_hour=1)
    assert limiter.allow("a@x.example", T0)
    for minute in range(1, 60):
        assert not limiter.allow("a@x.example", T0 + timedelta(minutes=minute))
    assert limiter.allow("a@x.example", T0 + timedelta(minutes=60))


def test_rate_limit_remembers_a_bounded_number_of_senders() -> None:
    limiter = RateLimiter(per_hour=1, max_senders=2)
    for name in ("a", "b", "c"):
        assert limiter.allow(f"{name}@x.example", T0)
    assert limiter.allow("a@x.example", T0)  # forgotten as the oldest: a fresh budget
    assert not limiter.allow("c@x.example", T0)


# -- threading and customers -----------------------------------------------------------------------------


def test_references_strongest_first() -> None:
    case = "eml-0123456789abcdef0123"
    parsed = mail(subject=f"Re: {case_tag(case)} Received: [fw-100123] down", references=("<a@x>", "<b@x>"))
    assert references_of(parsed) == [
        (RefKind.CASE, case),
        (RefKind.TICKET, "FW-100123"),
        (RefKind.MESSAGE_ID, "<a@x>"),
        (RefKind.MESSAGE_ID, "<b@x>"),
    ]


@pytest.mark.parametrize(
    "subject", ["[FW case eml-123] short", "[FW-12] short ticket", "FW-100123 without brackets", "[FW case]"]
)
def test_things_that_are_not_tags(subject: str) -> None:
    assert references_of(mail(subject=subject)) == []


@pytest.mark.parametrize(
    ("subject", "body", "expected"),
    [
        ("Server down", "nothing named", None),
        ("Server down customer: umbrella", "", "umbrella"),
        ("Server down", "Hello,\nCustomer: ACME.\nthanks", "acme"),
        ("Server down", "customer: globex", None),  # not this partner's customer
        ("customer: globex", "customer: umbrella", "umbrella"),
    ],
)
def test_named_customer(subject: str, body: str, expected: str | None) -> None:
    assert named_customer(mail(subject=subject, body=body), NORTHWIND) == expected


# -- ids -------------------------------------------------------------------------------------------------


def test_ids_are_deterministic() -> None:
    one = mail()
    assert case_id_for(one, "northwind-partners") == case_id_for(mail(), "northwind-partners")
    assert case_id_for(one, "northwind-partners") != case_id_for(one, "telco-isp")
    assert case_id_for(one, "p").startswith("eml-")
    assert len(case_id_for(one, "p")) == 24
    assert command_id_for(one, "open") != command_id_for(one, "reply")
    assert command_id_for(mail(message_id=None), "open") == command_id_for(mail(message_id=None), "open")
    assert case_id_for(mail(message_id=None), "p") != case_id_for(one, "p")


# -- the plan --------------------------------------------------------------------------------------------


OK = LoopCheck()
PASS = Verdict(True, "alignment")
FAIL = Verdict(False, reason="envelope sender domain telco-isp.example is not aligned with From domain")
QUIET = LoopCheck(answer=False, file=True, reason="Precedence: bulk")
DROP = LoopCheck(answer=False, file=False, reason="Auto-Submitted: auto-replied")


def test_partner_mail_opens_a_case_with_an_ack() -> None:
    plan = decide(mail(), partner=NORTHWIND, loop=OK, thread=None, duplicate=False, auth=PASS)
    assert plan.action is Action.OPEN
    assert plan.answer is Answer.ACK
    assert plan.case_id == case_id_for(mail(), "northwind-partners")
    assert (plan.customer_id, plan.partner_id) == ("acme", "northwind-partners")


def test_named_customer_is_used() -> None:
    plan = decide(
        mail(body="customer: umbrella"), partner=NORTHWIND, loop=OK, thread=None, duplicate=False, auth=PASS
    )
    assert plan.customer_id == "umbrella"


def test_reply_to_an_open_case() -> None:
    thread = Thread("eml-0123456789abcdef0123", "northwind-partners")
    plan = decide(mail(), partner=NORTHWIND, loop=OK, thread=thread, duplicate=False, auth=PASS)
    assert (plan.action, plan.answer, plan.case_id) == (Action.REPLY, Answer.ADDED, thread.case_id)


def test_reply_to_a_closed_case_opens_a_new_one() -> None:
    thread = Thread("eml-0123456789abcdef0123", "northwind-partners", open=False)
    plan = decide(mail(), partner=NORTHWIND, loop=OK, thread=thread, duplicate=False, auth=PASS)
    assert plan.action is Action.OPEN
    assert plan.follows == thread.case_id
    assert plan.case_id != thread.case_id


@pytest.mark.parametrize(
    ("partner", "loop", "duplicate", "action", "answer"),
    [
        (None, OK, False, Action.NONE, Answer.UNKNOWN_SENDER),
        (None, QUIET, False, Action.NONE, Answer.NONE),
        (None, DROP, False, Action.NONE, Answer.NONE),
        (NORTHWIND, QUIET, False, Action.OPEN, Answer.NONE),
        (NORTHWIND, DROP, False, Action.NONE, Answer.NONE),
        (NORTHWIND, OK, True, Action.OPEN, Answer.NONE),
    ],
)
def test_decision_matrix(
    partner: Partner | None, loop: LoopCheck, duplicate: bool, action: Action, answer: Answer
) -> None:
    plan = decide(mail(), partner=partner, loop=loop, thread=None, duplicate=duplicate, auth=PASS)
    assert (plan.action, plan.answer) == (action, answer)
    assert plan.note


def test_rate_limited_plan_keeps_its_action() -> None:
    plan = rate_limited(decide(mail(), partner=NORTHWIND, loop=OK, thread=None, duplicate=False, auth=PASS))
    assert (plan.action, plan.answer) == (Action.OPEN, Answer.NONE)
    assert "rate limit" in plan.note


def test_unauthenticated_partner_mail_is_kept_for_staff_and_never_joins_a_case() -> None:
    thread = Thread("eml-0123456789abcdef0123", "northwind-partners")
    for given in (None, thread):
        plan = decide(mail(), partner=NORTHWIND, loop=OK, thread=given, duplicate=False, auth=FAIL)
        assert (plan.action, plan.answer) == (Action.OPEN, Answer.NONE)
        assert plan.case_id != thread.case_id
        assert plan.case_id != case_id_for(mail(), "northwind-partners")
        assert (plan.customer_id, plan.partner_id) == (UNAUTHENTICATED_CUSTOMER, None)
        assert plan.unauthenticated == FAIL.reason
        assert plan.claimed_partner == "northwind-partners"
    authenticated = decide(mail(), partner=NORTHWIND, loop=OK, thread=None, duplicate=False, auth=PASS)
    assert authenticated.unauthenticated is None


def test_unknown_sender_with_a_misaligned_envelope_gets_no_reply() -> None:
    plan = decide(
        mail("someone@elsewhere.example"), partner=None, loop=OK, thread=None, duplicate=False, auth=FAIL
    )
    assert (plan.action, plan.answer) == (Action.NONE, Answer.NONE)
    assert "not aligned" in plan.note
