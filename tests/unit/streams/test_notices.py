"""Who is notified and with what text: roles per occurrence, keys, internal-only warnings, status wording."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.cases import CaseSource, CaseState, Severity
from schemas.notifications import Channel, Role
from streams import notices
from streams.cases import Case

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def make_case(**changes: Any) -> Case:
    fields: dict[str, Any] = {
        "case_id": "case-1",
        "state": CaseState.TRIAGED,
        "severity": Severity.SEV1,
        "source": CaseSource.MONITOR,
        "customer_id": "acme",
        "partner_id": None,
        "server_id": "web-1",
        "ticket": "FW-100004",
        "owner": None,
        "title": "Server web-1 not responding",
        "opened_at": T0,
        "updated_at": T0,
        "seq": 1,
        "last_hash": "",
        "clocks": (),
        "policy_version": "policy-2026-11",
        "worked": False,
        "server_down": True,
        "recovered_at": None,
        "status_notices": 0,
        "recent_commands": (),
    }
    fields.update(changes)
    return Case(**fields)


def who(items: list[notices.Notice]) -> list[tuple[Channel, Role]]:
    return [(n.channel, n.role) for n in items]


def test_sev1_opened_pages_ops_manager_mobilises_team_and_contacts_monitor_customers() -> None:
    monitor = notices.sev1_opened(make_case(), "case.opened", timedelta(hours=2))
    assert who(monitor) == [
        (Channel.PAGE, Role.OPERATIONS_MANAGER),
        (Channel.EMAIL, Role.SUPPORT_TEAM),
        (Channel.EMAIL, Role.CUSTOMER_TECHNICAL),
    ]
    assert "2 h 00 min" in monitor[0].body
    assert "FW-100004" in monitor[0].subject
    assert "web-1" in monitor[2].subject
    staff = notices.sev1_opened(make_case(source=CaseSource.STAFF), "case.opened", timedelta(hours=2))
    assert who(staff) == [(Channel.PAGE, Role.OPERATIONS_MANAGER), (Channel.EMAIL, Role.SUPPORT_TEAM)]


def test_escalations_reach_the_policy_roles() -> None:
    case = make_case()
    assert who(notices.sev1_work_breached(case, "p", T0)) == [
        (Channel.PAGE, Role.VP_OPERATIONS),
        (Channel.CALL, Role.CUSTOMER_TECHNICAL),
    ]
    sev2 = make_case(severity=Severity.SEV2, source=CaseSource.EMAIL)
    assert who(notices.first_response_breached(sev2, "p", T0)) == [(Channel.EMAIL, Role.SUPPORT_LEAD)]
    assert who(notices.customer_update(case, "p", "hello")) == [(Channel.EMAIL, Role.CUSTOMER_TECHNICAL)]
    assert who(notices.server_recovered(case, "p", T0)) == [(Channel.EMAIL, Role.CUSTOMER_TECHNICAL)]
    partner = notices.partner_triaged(make_case(partner_id="isp-9", source=CaseSource.PORTAL), "p")
    assert who(partner) == [(Channel.EMAIL, Role.PARTNER_HELPDESK)]
    assert "FW-100004" in partner[0].body


def test_warnings_go_to_internal_roles_only() -> None:
    warned = notices.warning(make_case(), "sla.warning:sev1.work:4", "sev1.work", T0, timedelta(minutes=30))
    assert {n.role for n in warned} <= notices.INTERNAL_ROLES
    assert Role.CUSTOMER_TECHNICAL not in notices.INTERNAL_ROLES
    assert Role.PARTNER_HELPDESK not in notices.INTERNAL_ROLES
    assert "30 min" in warned[0].subject


@pytest.mark.parametrize("state", list(CaseState))
def test_status_text_tells_the_current_state(state: CaseState) -> None:
    text = notices.status_text(make_case(state=state), T0 + timedelta(hours=3))
    assert f"Status: {state.value}" in text
    assert notices.STATE_WORDS[state] in text
    assert "3 h 00 min ago" in text
    assert "still down" in text


def test_status_text_mentions_owner_recovery_and_last_update() -> None:
    case = make_case(owner="staff:carol", server_down=False, last_update_at=T0 + timedelta(minutes=90))
    text = notices.status_text(case, T0 + timedelta(hours=2))
    assert "staff:carol" in text
    assert "responding" in text
    assert "2026-11-02 10:30 UTC" in text


def test_notification_key_and_fields() -> None:
    case = make_case(partner_id="isp-9")
    notice = notices.status_notice(case, "status.notice:3", T0, 3)[0]
    item = notices.notification(case, notice, T0)
    assert item.key == "case-1:status.notice:3:customer_technical:email"
    assert item.key == notices.notification_key(
        "case-1", "status.notice:3", Role.CUSTOMER_TECHNICAL, Channel.EMAIL
    )
    assert (item.ticket, item.customer_id, item.partner_id, item.server_id) == (
        "FW-100004",
        "acme",
        "isp-9",
        "web-1",
    )
    assert (item.severity, item.at, item.purpose) == (Severity.SEV1, T0, "status.notice:3")


def test_long_texts_are_clipped_to_the_contract() -> None:
    case = make_case(title="x" * 500)
    item = notices.notification(case, notices.customer_update(case, "p", "y" * 30000)[0], T0)
    assert len(item.subject) == notices.SUBJECT_MAX
    assert item.subject.endswith("…")
    assert len(item.body) == notices.BODY_MAX


def test_a_case_without_ticket_is_referred_to_by_its_id() -> None:
    notice = notices.customer_update(make_case(ticket=None), "p", "hi")[0]
    assert "[case-1]" in notice.subject


# --- partner correspondence (issue 4) ----------------------------------------------------------------------

MID = "<abc.123@mail.isp-9.example>"


@pytest.mark.parametrize(
    ("source", "partner_id", "requester", "expected"),
    [
        (CaseSource.EMAIL, "isp-9", None, [Role.PARTNER_HELPDESK]),
        (CaseSource.PORTAL, "isp-9", None, [Role.PARTNER_HELPDESK]),
        (CaseSource.EMAIL, None, "desk@isp-9.example", [Role.PARTNER_HELPDESK]),
        (CaseSource.EMAIL, None, None, [Role.CUSTOMER_TECHNICAL]),
        (CaseSource.PORTAL, None, None, [Role.CUSTOMER_TECHNICAL]),
        (CaseSource.MONITOR, None, None, [Role.CUSTOMER_TECHNICAL]),
        (CaseSource.MONITOR, "isp-9", None, [Role.CUSTOMER_TECHNICAL, Role.PARTNER_HELPDESK]),
        (CaseSource.STAFF, "isp-9", None, [Role.CUSTOMER_TECHNICAL, Role.PARTNER_HELPDESK]),
        (CaseSource.STAFF, None, "someone@x.example", [Role.CUSTOMER_TECHNICAL]),
    ],
)
def test_the_customers_voice(
    source: CaseSource, partner_id: str | None, requester: str | None, expected: list[Role]
) -> None:
    case = make_case(source=source, partner_id=partner_id, requester=requester)
    assert notices.customer_roles(case) == expected
    assert [n.role for n in notices.customer_update(case, "p", "hi")] == expected
    assert [n.role for n in notices.status_notice(case, "p", T0, 1)] == expected


def test_only_partner_helpdesk_emails_are_threaded() -> None:
    case = make_case(
        source=CaseSource.STAFF, partner_id="isp-9", thread_message_id=MID, requester="desk@isp-9.example"
    )
    items = [notices.notification(case, n, T0) for n in notices.customer_update(case, "p", "hi")]
    assert [(i.role, i.thread_message_id, i.reply_to_address) for i in items] == [
        (Role.CUSTOMER_TECHNICAL, None, None),
        (Role.PARTNER_HELPDESK, MID, "desk@isp-9.example"),
    ]
    sev1 = [notices.notification(case, n, T0) for n in notices.sev1_opened(case, "p", timedelta(hours=2))]
    assert all(i.thread_message_id is None for i in sev1)


def test_referral_text_and_recipient() -> None:
    case = make_case(source=CaseSource.EMAIL, partner_id="isp-9", ticket=None, title="My TV is broken")
    (notice,) = notices.referral(case, "referral:1", "")
    assert (notice.channel, notice.role) == (Channel.EMAIL, Role.PARTNER_HELPDESK)
    assert notice.body == notices.REFERRAL_TEXT
    assert "own provider" in notice.body
    assert notice.subject == "[FW case case-1] Re: My TV is broken"
    assert notices.referral(case, "referral:1", " Ask your ISP. ")[0].body == "Ask your ISP."
    assert notices.referral(make_case(source=CaseSource.EMAIL), "referral:1", "") == []


def test_untriaged_partner_mails_carry_the_intakes_case_tag() -> None:
    case = make_case(source=CaseSource.EMAIL, partner_id="isp-9", ticket=None, title="Slow")
    (update,) = notices.customer_update(case, "p", "hi")
    assert update.subject == "[FW case case-1] Update: Slow"
    (ticketed,) = notices.customer_update(make_case(source=CaseSource.EMAIL, partner_id="isp-9"), "p", "hi")
    assert ticketed.subject.startswith("[FW-100004] Update:")
