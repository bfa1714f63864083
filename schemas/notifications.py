"""Notifications: pages, emails and calls the case engine asks for, addressed to roles.

Key on the notifications topic: `key` (the idempotency key). The notifier resolves the role to people
through the contacts directory and delivers to each; a (key, contact) pair is delivered at most once.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from schemas.base import Contract, UtcDatetime
from schemas.cases import Severity
from schemas.inventory import ID_PATTERN

MESSAGE_ID_PATTERN = r"^<[!#-'*+\-/-9=?A-Z^-~.]{1,250}@[!#-'*+\-/-9=?A-Z\[\]^-~.]{1,250}>$"
"""A Message-ID as it may appear in In-Reply-To/References: `<local@domain>`, printable ASCII without
spaces, quotes, angle brackets, commas or line breaks (RFC 5322 msg-id, dot-atom forms only)."""
EMAIL_ADDRESS_PATTERN = r"^[^@\s<>\"',;()\[\]\\]{1,64}@[^@\s<>\"',;()\[\]\\]+\.[^@\s<>\"',;()\[\]\\]+$"
"""A bare email address (no display name), safe to place in a header."""


class Channel(StrEnum):
    """How a notification reaches people."""

    PAGE = "page"
    """A page (PagerDuty Events API v2 shaped webhook, dedup_key = key)."""
    EMAIL = "email"
    """An email over SMTP."""
    CALL = "call"
    """A phone call, requested through the call webhook (generic JSON)."""


class Role(StrEnum):
    """Who a notification is for; the contacts directory maps roles to people."""

    OPERATIONS_MANAGER = "operations_manager"
    VP_OPERATIONS = "vp_operations"
    SUPPORT_TEAM = "support_team"
    """The whole support team (Sev1: everyone mobilised)."""
    ONCALL_ENGINEERS = "oncall_engineers"
    SUPPORT_LEAD = "support_lead"
    CUSTOMER_TECHNICAL = "customer_technical"
    """The customer's technical staff (directory: per customer)."""
    PARTNER_HELPDESK = "partner_helpdesk"
    """The partner's help desk (directory: per partner)."""


class Notification(Contract):
    """One page, email or call request for one role about one case."""

    key: str = Field(min_length=1, max_length=200)
    """Idempotency key, deterministic: `<case_id>:<purpose>:<role>:<channel>`."""
    case_id: str = Field(min_length=1, max_length=100)
    ticket: str | None = Field(default=None, max_length=40)
    customer_id: str = Field(pattern=ID_PATTERN)
    partner_id: str | None = Field(default=None, pattern=ID_PATTERN)
    server_id: str | None = Field(default=None, pattern=ID_PATTERN)
    severity: Severity | None = None
    channel: Channel
    role: Role
    purpose: str = Field(min_length=1, max_length=100)
    """Why: `case.opened`, `sla.breached:sev1.work`, `status.notice:3`, ..."""
    subject: str = Field(max_length=500)
    body: str = Field(max_length=20000)
    at: UtcDatetime
    """When the engine asked for it."""
    thread_message_id: str | None = Field(default=None, max_length=504, pattern=MESSAGE_ID_PATTERN)
    """Emails to the partner help desk: the Message-ID of the partner's email that opened the case; the
    notifier sets In-Reply-To and References to it, so the email lands in the partner's thread."""
    reply_to_address: str | None = Field(default=None, max_length=254, pattern=EMAIL_ADDRESS_PATTERN)
    """Emails to the partner help desk: the address that wrote to us about the case (the requester). The
    notifier emails it when the partner's directory entry names no help desk contact."""
    chain_seq: int | None = Field(default=None, ge=0)
    """The case's chain head when the engine asked for this notification: the seq of the case's newest event
    (None: not known, e.g. a notification from before chain heads were sent)."""
    chain_hash: str = Field(default="", max_length=64, pattern=r"^([0-9a-f]{64})?$")
    """The `hash` of that event. Emails carry both (`X-Fleetwatch-Chain-Head`), so a customer holds proof of
    how far the case's audit chain reached and can later detect a truncated chain."""
