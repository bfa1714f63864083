"""Delivery planning: what goes to whom on which channel, or why not; payload shapes; Message-ID; backoff."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from pydantic import ValidationError

from schemas.cases import Severity
from schemas.notifications import Channel, Role
from sinks.notifier.delivery import (
    NOBODY,
    WEBHOOK,
    Delivery,
    DeliveryConfig,
    EmailSend,
    HttpPost,
    backoff_s,
    email_message,
    message_id,
    plan,
    thread_reference,
)
from sinks.notifier.directory import Contact, Directory
from tests.unit.sinks.notifier.conftest import notification

FULL = DeliveryConfig(
    sender="support@fw.example",
    pager_url="http://pager/v2/enqueue",
    call_url="http://calls/call",
)


def planned(
    directory: Directory, role: Role, channel: Channel, config: DeliveryConfig = FULL
) -> list[Delivery]:
    n = notification(role, channel)
    return plan(n, directory.resolve(n), config, directory.audience(n))


def test_email_to_each_contact_of_the_role(directory: Directory) -> None:
    deliveries = planned(directory, Role.SUPPORT_TEAM, Channel.EMAIL)
    assert [(d.contact_id, d.channel) for d in deliveries] == [("eng1", "email"), ("eng2", "email")]
    assert isinstance(deliveries[0].action, EmailSend)
    assert deliveries[0].action.recipient == "one@ops.example"
    assert deliveries[1].action is None
    assert deliveries[1].reason == "contact eng2 has no email address"
    assert deliveries[0].ledger_key == "mon-abc:case.opened:support_team:email|eng1"


def test_email_headers_and_body(directory: Directory) -> None:
    (delivery,) = planned(directory, Role.OPERATIONS_MANAGER, Channel.EMAIL)
    assert isinstance(delivery.action, EmailSend)
    message = delivery.action.message
    assert message["Subject"] == "[FW-100001] Server srv-1 is down"
    assert message["From"] == "support@fw.example"
    assert message["To"] == "Olga Manager <olga@ops.example>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Fleetwatch-Key"] == "mon-abc:case.opened:operations_manager:email"
    assert message["X-Fleetwatch-Case"] == "mon-abc"
    assert message["Message-ID"] == message_id(
        "mon-abc:case.opened:operations_manager:email", "om", "x@fw.example"
    )
    assert message["Date"] == "Sun, 01 Nov 2026 12:00:00 +0000"
    body = message.get_content()
    assert "srv-1 failed 10 probes in a row." in body
    assert "ticket FW-100001" in body


def test_subject_keeps_an_existing_ticket_and_drops_line_breaks(directory: Directory) -> None:
    n = notification(subject="[FW-100001] down\r\nBcc: evil@example.com", ticket="FW-100001")
    (delivery,) = plan(n, directory.resolve(n), FULL, "")
    assert isinstance(delivery.action, EmailSend)
    assert delivery.action.message["Subject"] == "[FW-100001] down Bcc: evil@example.com"
    assert delivery.action.message["Bcc"] is None
    no_ticket = notification(ticket=None)
    (delivery,) = plan(no_ticket, directory.resolve(no_ticket), FULL, "")
    assert isinstance(delivery.action, EmailSend)
    assert delivery.action.message["Subject"] == "Server srv-1 is down"


def test_message_id_is_deterministic_per_key_and_contact() -> None:
    first = message_id("k1", "om", "support@fw.example")
    assert first == message_id("k1", "om", "support@fw.example")
    assert first != message_id("k1", "vp", "support@fw.example")
    assert first != message_id("k2", "om", "support@fw.example")
    assert first.startswith("<")
    assert first.endswith("@fw.example>")


def test_page_is_a_pagerduty_v2_trigger_with_the_key_as_dedup_key(directory: Directory) -> None:
    (delivery,) = planned(directory, Role.OPERATIONS_MANAGER, Channel.PAGE)
    assert isinstance(delivery.action, HttpPost)
    assert delivery.action.url == "http://pager/v2/enqueue"
    body = delivery.action.body
    assert body["routing_key"] == "rk-om"
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == "mon-abc:case.opened:operations_manager:page"
    payload = body["payload"]
    assert payload["summary"] == "[FW-100001] Server srv-1 is down"
    assert payload["source"] == "srv-1"
    assert payload["severity"] == "critical"
    assert payload["timestamp"] == "2026-11-01T12:00:00+00:00"
    details = payload["custom_details"]
    assert details["case_id"] == "mon-abc"
    assert details["ticket"] == "FW-100001"
    assert details["role"] == "operations_manager"
    assert details["purpose"] == "case.opened"


@pytest.mark.parametrize(
    ("severity", "expected"),
    [(Severity.SEV1, "critical"), (Severity.SEV2, "error"), (Severity.SEV3, "warning"), (None, "warning")],
)
def test_page_severity_follows_the_case_severity(
    directory: Directory, severity: Severity | None, expected: str
) -> None:
    n = notification(Role.OPERATIONS_MANAGER, Channel.PAGE, severity=severity)
    (delivery,) = plan(n, directory.resolve(n), FULL, "")
    assert isinstance(delivery.action, HttpPost)
    assert delivery.action.body["payload"]["severity"] == expected


def test_call_is_generic_json(directory: Directory) -> None:
    (delivery,) = planned(directory, Role.CUSTOMER_TECHNICAL, Channel.CALL)
    assert isinstance(delivery.action, HttpPost)
    assert delivery.action.url == "http://calls/call"
    assert delivery.action.body == {
        "key": "mon-abc:case.opened:customer_technical:call",
        "contact": "acme-ops",
        "phone": "+1 555 0100",
        "name": "Acme Ops",
        "message": "srv-1 failed 10 probes in a row.",
        "case_id": "mon-abc",
        "ticket": "FW-100001",
    }


@pytest.mark.parametrize(
    ("role", "channel", "config", "reason"),
    [
        (Role.VP_OPERATIONS, Channel.PAGE, FULL, "contact vp has no pager routing key"),
        (
            Role.OPERATIONS_MANAGER,
            Channel.PAGE,
            DeliveryConfig(),
            "pages are not configured (pager_url is empty)",
        ),
        (Role.OPERATIONS_MANAGER, Channel.CALL, FULL, "contact om has no phone number"),
        (Role.VP_OPERATIONS, Channel.CALL, DeliveryConfig(), "calls are not configured (call_url is empty)"),
    ],
)
def test_what_cannot_be_sent_says_why(
    directory: Directory, role: Role, channel: Channel, config: DeliveryConfig, reason: str
) -> None:
    (delivery,) = planned(directory, role, channel, config)
    assert delivery.action is None
    assert delivery.reason == reason


def test_nobody_in_the_role_is_one_failed_delivery(directory: Directory) -> None:
    n = notification(Role.CUSTOMER_TECHNICAL, customer_id="initech")
    (delivery,) = plan(n, directory.resolve(n), FULL, directory.audience(n))
    assert delivery.contact_id == NOBODY
    assert delivery.action is None
    assert (
        delivery.reason == "no contact for technical contacts of customer initech in the contacts directory"
    )


def test_webhook_gets_every_notification_once(directory: Directory) -> None:
    config = DeliveryConfig(webhook_url="http://hooks/webhook")
    n = notification(Role.SUPPORT_TEAM, Channel.EMAIL)
    deliveries = plan(n, directory.resolve(n), config, "")
    hooks = [d for d in deliveries if d.contact_id == WEBHOOK]
    assert len(hooks) == 1
    assert hooks[0].channel == WEBHOOK
    assert isinstance(hooks[0].action, HttpPost)
    body = hooks[0].action.body
    assert body["key"] == n.key
    assert body["recipients"] == ["eng1", "eng2"]
    assert body["channel"] == "email"


def test_backoff_doubles_from_the_base_and_is_capped() -> None:
    assert [backoff_s(a, 1.0) for a in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_s(3, 0.25) == 1.0
    assert backoff_s(2000, 1.0) == 60.0
    assert backoff_s(0, 1.0) == 0.0
    assert backoff_s(4, 1.0, cap_s=5.0) == 5.0


# --- threading (issue 4) -----------------------------------------------------------------------------------

PARTNER_MID = "<CAF+x=1.abc@mail.partner.example>"


def partner_email(directory: Directory, **overrides: object) -> EmailMessage:
    n = notification(Role.PARTNER_HELPDESK, Channel.EMAIL, **overrides)
    (delivery,) = plan(n, directory.resolve(n), FULL, directory.audience(n))
    assert isinstance(delivery.action, EmailSend)
    return delivery.action.message


def header_lines(message: EmailMessage) -> list[str]:
    """The header block as sent over SMTP, unfolded into logical lines."""
    raw = message.as_bytes(policy=policy.SMTP).decode("ascii")
    head = raw.split("\r\n\r\n", 1)[0]
    return head.replace("\r\n ", " ").replace("\r\n\t", " ").split("\r\n")


def test_threaded_email_answers_the_partners_message(directory: Directory) -> None:
    message = partner_email(directory, thread_message_id=PARTNER_MID)
    assert message["In-Reply-To"] == PARTNER_MID
    assert message["References"] == PARTNER_MID
    lines = header_lines(message)
    assert f"In-Reply-To: {PARTNER_MID}" in lines
    assert f"References: {PARTNER_MID}" in lines
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert str(parsed["In-Reply-To"]) == PARTNER_MID
    assert "[FW-100001]" in str(parsed["Subject"])


def test_a_long_message_id_is_folded_whole_never_encoded(directory: Directory) -> None:
    long_mid = "<" + "a1b2c3d4" * 30 + "@mail.partner.example>"
    message = partner_email(directory, thread_message_id=long_mid)
    lines = header_lines(message)
    assert f"In-Reply-To: {long_mid}" in lines
    assert f"References: {long_mid}" in lines
    assert not any("=?" in line for line in lines)


def test_unthreaded_emails_have_no_reply_headers(directory: Directory) -> None:
    message = partner_email(directory)
    assert message["In-Reply-To"] is None
    assert message["References"] is None


@pytest.mark.parametrize(
    "hostile",
    [
        "<a@x>\r\nBcc: victim@evil.example",
        "<a@x>\nX-Injected: yes",
        "<a@x> <b@y>",
        "a@x",
        '<"a b"@x>',
        "<a@x>\r\n",
    ],
)
def test_a_hostile_thread_id_is_refused_by_the_contract_and_by_the_notifier(
    directory: Directory, hostile: str
) -> None:
    with pytest.raises(ValidationError):
        notification(Role.PARTNER_HELPDESK, thread_message_id=hostile)
    forged = notification(Role.PARTNER_HELPDESK).model_copy(update={"thread_message_id": hostile})
    assert thread_reference(forged) is None
    message = email_message(forged, directory.contacts["desk"], "support@fw.example")
    assert message["In-Reply-To"] is None
    assert message["References"] is None
    raw = message.as_bytes().decode()
    assert "Bcc" not in raw
    assert "X-Injected" not in raw


def test_partner_emails_invite_a_reply_others_do_not(directory: Directory) -> None:
    partner = partner_email(directory).get_content()
    assert "Reply to this email to add to the case (keep [FW-100001] in the subject)." in partner
    assert "please do not reply" not in partner
    (internal,) = planned(directory, Role.OPERATIONS_MANAGER, Channel.EMAIL)
    assert isinstance(internal.action, EmailSend)
    assert "please do not reply" in internal.action.message.get_content()


def test_requester_fallback_gets_the_threaded_email() -> None:
    empty = Directory()
    n = notification(
        Role.PARTNER_HELPDESK,
        partner_id="unlisted",
        thread_message_id=PARTNER_MID,
        reply_to_address="nadia@unlisted.example",
    )
    (delivery,) = plan(n, empty.resolve(n), FULL, empty.audience(n))
    assert delivery.contact_id == "requester"
    assert isinstance(delivery.action, EmailSend)
    assert delivery.action.recipient == "nadia@unlisted.example"
    assert delivery.action.message["In-Reply-To"] == PARTNER_MID


def test_email_carries_the_chain_head_header_and_line() -> None:
    head = "ab" * 32
    with_head = notification(chain_seq=7, chain_hash=head)
    message = email_message(with_head, Contact(id="om", name="Olga", email="olga@ops.example"), "x@fw.ex")
    assert message["X-Fleetwatch-Chain-Head"] == f"mon-abc seq=7 sha256={head}"
    assert f"Audit chain head: mon-abc seq=7 sha256={head}" in message.get_content()
    plain = email_message(notification(), Contact(id="om", name="Olga", email="olga@ops.example"), "x@fw.ex")
    assert plain["X-Fleetwatch-Chain-Head"] is None
    with pytest.raises(ValidationError):
        notification(chain_seq=1, chain_hash="not a hash\r\nBcc: x@evil.example")
