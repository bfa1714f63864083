"""Delivery planning, pure: for one notification and its contacts, what to send where, or why not.

A notification becomes one `Delivery` per resolved contact (plus one to the generic webhook when
configured). A delivery either carries an action (an email to send, a JSON body to POST) or the reason it
cannot be sent (no email address, no pager routing key, pages not configured, nobody in the role...):
the service reports the latter as a `failed` outcome; nothing here raises on missing data.

Payload shapes: pages follow the PagerDuty Events API v2 (`dedup_key` = the notification key, so a
re-sent page never opens a second incident); calls and the generic webhook are plain JSON; emails carry a
Message-ID derived from (key, contact), so a re-sent email is recognisably the same message.

Threading: an email whose notification has a `thread_message_id` (partner help desk emails of a case the
partner opened by email) answers that message: `In-Reply-To` and `References` name it, so the partner's
mail client files it in the thread. The id is checked again here (`<local@domain>`, printable, no
spaces or line breaks) and left out when it does not fit, so no header can be smuggled through it.
Emails to the partner help desk invite a reply (it reaches the support address and, through the ticket in
the subject or the References, the case); every other email says not to reply.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.headerregistry import BaseHeader, HeaderRegistry, MessageIDHeader
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any, cast

from fleetcore.settings import Settings
from schemas.cases import Severity
from schemas.notifications import MESSAGE_ID_PATTERN, Channel, Notification, Role
from sinks.notifier.directory import Contact

WEBHOOK = "webhook"
"""Channel and pseudo contact id of the generic webhook delivery (one per notification)."""
NOBODY = "nobody"
"""Pseudo contact id of the failed delivery of a notification whose role resolves to no one."""
BACKOFF_CAP_S = 60.0
"""Longest wait between two attempts."""
PD_SUMMARY_MAX = 1024
"""PagerDuty's limit on payload.summary."""

PD_SEVERITY = {Severity.SEV1: "critical", Severity.SEV2: "error", Severity.SEV3: "warning"}


def _email_policy() -> policy.EmailPolicy[EmailMessage]:
    """The default policy, with In-Reply-To and References parsed and folded as msg-ids (like Message-ID),
    not as free text: a long id is moved to its own line whole instead of being RFC 2047-encoded, which
    would break threading."""
    registry = HeaderRegistry()
    msg_id = cast("type[BaseHeader]", MessageIDHeader)  # a mixin the registry combines with BaseHeader
    registry.map_to_type("in-reply-to", msg_id)
    registry.map_to_type("references", msg_id)
    return policy.default.clone(header_factory=registry)


EMAIL_POLICY = _email_policy()


@dataclass(frozen=True)
class DeliveryConfig:
    """What planning needs from the settings."""

    sender: str = "support@fleetwatch.local"
    pager_url: str = ""
    call_url: str = ""
    webhook_url: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryConfig:
        return cls(
            sender=settings.smtp_sender,
            pager_url=settings.pager_url,
            call_url=settings.call_url,
            webhook_url=settings.webhook_url,
        )


@dataclass(frozen=True)
class EmailSend:
    """Send `message` over SMTP to `recipient`."""

    message: EmailMessage
    recipient: str


@dataclass(frozen=True)
class HttpPost:
    """POST `body` as JSON to `url`."""

    url: str
    body: dict[str, Any]


Action = EmailSend | HttpPost


@dataclass(frozen=True)
class Delivery:
    """One notification to one contact (or the webhook) over one channel: an action, or why not."""

    notification: Notification
    contact_id: str
    channel: str
    """`email`, `page`, `call` or `webhook`."""
    action: Action | None
    reason: str = ""
    """Why nothing can be sent (when `action` is None)."""

    @property
    def ledger_key(self) -> str:
        """Key on the notify-ledger topic: the (key, contact) pair delivered at most once."""
        return ledger_key(self.notification.key, self.contact_id)


def ledger_key(key: str, contact_id: str) -> str:
    return f"{key}|{contact_id}"


def backoff_s(attempt: int, base_s: float, cap_s: float = BACKOFF_CAP_S) -> float:
    """Wait after failed attempt number `attempt` (1-based): base * 2**(attempt-1), at most `cap_s`."""
    if attempt < 1:
        return 0.0
    return min(cap_s, base_s * 2.0 ** min(attempt - 1, 62))


def one_line(text: str) -> str:
    """Text safe for a header or a summary: no line breaks."""
    return " ".join(text.split())


def subject_line(notification: Notification) -> str:
    """The subject, with the ticket in front (`[FW-100001] ...`) when the case has one."""
    subject = one_line(notification.subject) or notification.purpose
    if notification.ticket and f"[{notification.ticket}]" not in subject:
        subject = f"[{notification.ticket}] {subject}"
    return subject


def message_id(key: str, contact_id: str, sender: str) -> str:
    """Deterministic Message-ID of the email of (key, contact): the same message when re-sent."""
    digest = hashlib.sha256(ledger_key(key, contact_id).encode()).hexdigest()[:40]
    domain = sender.rpartition("@")[2] or "fleetwatch.local"
    return f"<{digest}@{domain}>"


def thread_reference(notification: Notification) -> str | None:
    """The Message-ID this email answers, if the notification names a well-formed one."""
    value = notification.thread_message_id
    if value is None or len(value) > 504 or not re.fullmatch(MESSAGE_ID_PATTERN, value):
        return None
    return value


def email_message(notification: Notification, contact: Contact, sender: str) -> EmailMessage:
    """The email of one notification to one contact (requires `contact.email`)."""
    assert contact.email is not None
    message = EmailMessage(policy=EMAIL_POLICY)
    message["From"] = sender
    message["To"] = formataddr((one_line(contact.name), contact.email))
    message["Subject"] = subject_line(notification)
    message["Date"] = format_datetime(notification.at)
    message["Message-ID"] = message_id(notification.key, contact.id, sender)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Fleetwatch-Key"] = one_line(notification.key)
    message["X-Fleetwatch-Case"] = one_line(notification.case_id)
    if notification.ticket:
        message["X-Fleetwatch-Ticket"] = one_line(notification.ticket)
    if (thread := thread_reference(notification)) is not None:
        message["In-Reply-To"] = thread
        message["References"] = thread
    head = chain_head(notification)
    if head is not None:
        message["X-Fleetwatch-Chain-Head"] = head
    ticket = f", ticket {notification.ticket}" if notification.ticket else ""
    footer = f"Case {notification.case_id}{ticket}"
    if notification.role is Role.PARTNER_HELPDESK:
        keep = f" (keep [{notification.ticket}] in the subject)" if notification.ticket else ""
        footer += f". Reply to this email to add to the case{keep}.\n"
    else:
        footer += ". Sent by fleetwatch; please do not reply.\n"
    if head is not None:
        footer += (
            f"Audit chain head: {head} (keep it: `fleetwatch audit verify` or the documented recipe shows "
            "the case's signed chain still reaches this event).\n"
        )
    message.set_content(f"{notification.body}\n\n-- \n{footer}")
    return message


def chain_head(notification: Notification) -> str | None:
    """`<case> seq=<n> sha256=<hash>`: the case's audit chain head when the notification was asked for."""
    if notification.chain_seq is None or not notification.chain_hash:
        return None
    return f"{one_line(notification.case_id)} seq={notification.chain_seq} sha256={notification.chain_hash}"


def pager_body(notification: Notification, contact: Contact) -> dict[str, Any]:
    """PagerDuty Events API v2 trigger event for one contact's routing key (requires the key)."""
    severity = PD_SEVERITY.get(notification.severity, "warning") if notification.severity else "warning"
    return {
        "routing_key": contact.pager_routing_key,
        "event_action": "trigger",
        "dedup_key": notification.key,
        "client": "fleetwatch",
        "payload": {
            "summary": subject_line(notification)[:PD_SUMMARY_MAX],
            "source": notification.server_id or notification.customer_id,
            "severity": severity,
            "timestamp": notification.at.isoformat(),
            "group": notification.customer_id,
            "class": notification.purpose,
            "custom_details": {
                "case_id": notification.case_id,
                "ticket": notification.ticket,
                "role": notification.role.value,
                "purpose": notification.purpose,
                "customer_id": notification.customer_id,
                "partner_id": notification.partner_id,
                "server_id": notification.server_id,
                "contact": contact.id,
                "body": notification.body,
            },
        },
    }


def call_body(notification: Notification, contact: Contact) -> dict[str, Any]:
    """Generic JSON call request for one contact (requires `contact.phone`)."""
    return {
        "key": notification.key,
        "contact": contact.id,
        "phone": contact.phone,
        "name": contact.name,
        "message": notification.body or subject_line(notification),
        "case_id": notification.case_id,
        "ticket": notification.ticket,
    }


def webhook_body(notification: Notification, contacts: Sequence[Contact]) -> dict[str, Any]:
    """Generic JSON of a notification for the catch-all webhook, with who it was resolved to."""
    return {**notification.model_dump(mode="json"), "recipients": [c.id for c in contacts]}


def _for_contact(notification: Notification, contact: Contact, config: DeliveryConfig) -> Delivery:
    channel = notification.channel

    def cannot(reason: str) -> Delivery:
        return Delivery(notification, contact.id, channel.value, None, reason)

    if channel is Channel.EMAIL:
        if not contact.email:
            return cannot(f"contact {contact.id} has no email address")
        action: Action = EmailSend(email_message(notification, contact, config.sender), contact.email)
    elif channel is Channel.PAGE:
        if not contact.pager_routing_key:
            return cannot(f"contact {contact.id} has no pager routing key")
        if not config.pager_url:
            return cannot("pages are not configured (pager_url is empty)")
        action = HttpPost(config.pager_url, pager_body(notification, contact))
    else:
        if not contact.phone:
            return cannot(f"contact {contact.id} has no phone number")
        if not config.call_url:
            return cannot("calls are not configured (call_url is empty)")
        action = HttpPost(config.call_url, call_body(notification, contact))
    return Delivery(notification, contact.id, channel.value, action)


def plan(
    notification: Notification, contacts: Sequence[Contact], config: DeliveryConfig, audience: str
) -> list[Delivery]:
    """Every delivery of one notification: one per contact (or one failed `nobody`), plus the webhook.

    `audience` names who the role means (for the reason when `contacts` is empty).
    """
    deliveries = [_for_contact(notification, contact, config) for contact in contacts]
    if not contacts:
        reason = f"no contact for {audience} in the contacts directory"
        deliveries.append(Delivery(notification, NOBODY, notification.channel.value, None, reason))
    if config.webhook_url:
        body = webhook_body(notification, contacts)
        deliveries.append(Delivery(notification, WEBHOOK, WEBHOOK, HttpPost(config.webhook_url, body)))
    return deliveries
