"""Case commands: intents sent to the case engine, the only writer of the case topic.

Key on the case-commands topic: case_id (so one case's commands reach one engine partition, in order).
One flat model for every command type; which fields a type needs is checked by the engine, and a command
that does not fit the case is answered with a `command.rejected` event (the case is untouched).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from schemas.base import Contract, UtcDatetime
from schemas.cases import CaseSource, DetailValue, Severity
from schemas.inventory import ID_PATTERN


class CommandType(StrEnum):
    """What the sender asks the case engine to do."""

    OPEN = "open"
    """Open a case (source, customer; severity for monitor/staff cases, none for email/portal). An email
    case's details carry `message_id` (the partner's Message-ID: answers are threaded to it) and `from`
    (the sender: written to when the partner has no help desk contact)."""
    TRIAGE = "triage"
    """Set severity (required) and owner; assigns the ticket number."""
    ASSIGN = "assign"
    """Set the owner."""
    START_WORK = "start_work"
    """Acknowledge: an engineer works the case (stops the Sev1 work clock)."""
    POST_UPDATE = "post_update"
    """Post a status update to the customer (message required); on an email/portal case this is the
    staff answer emailed to the partner help desk in the partner's thread."""
    WAIT_ON_CUSTOMER = "wait_on_customer"
    """The next move is the customer's: pausable clocks stop."""
    CUSTOMER_REPLIED = "customer_replied"
    """The customer answered (message optional): paused clocks run again."""
    NOTE = "note"
    """An internal note or phone follow-up (message required; details `kind`: "note" or "phone",
    `visible`: true to show it to the partner)."""
    CHANGE_SEVERITY = "change_severity"
    """New severity (required); its clocks start now."""
    RESOLVE = "resolve"
    CLOSE = "close"
    """Close the case. With details `referral: true`, on an untriaged case only: closed without a ticket
    and the partner is sent the referral (message, or the policy's text): end users go to their
    provider."""
    REOPEN = "reopen"
    SERVER_RECOVERED = "server_recovered"
    """The monitor saw the case's server pass a probe again."""
    TICK = "tick"
    """A timer found a deadline of the case due at `at`; the engine re-checks and acts (idempotent)."""
    NOTIFICATION_OUTCOME = "notification_outcome"
    """The notifier reports a delivery outcome (details: key, outcome, contact, attempt, error)."""


class CaseCommand(Contract):
    """One intent for one case, with who asks and why."""

    command_id: str = Field(min_length=1, max_length=200)
    """Idempotency key: the engine applies a command id to a case at most once. Deterministic when a
    machine sends it (monitor, timers, notifier); random (uuid4) from people."""
    case_id: str = Field(min_length=1, max_length=100)
    """The case (new for `open`)."""
    type: CommandType
    at: UtcDatetime
    """When it was asked; the events it causes carry this time."""
    actor: str = Field(min_length=1, max_length=200)
    """Who asks: `monitor`, `timer`, `notifier`, `email:<address>`, `staff:<name>`, `partner:<user>`."""
    reason: str = Field(default="", max_length=4000)
    """Why, in the actor's words."""
    source: CaseSource | None = None
    """open: where the case comes from."""
    customer_id: str | None = Field(default=None, pattern=ID_PATTERN)
    """open: the customer concerned."""
    partner_id: str | None = Field(default=None, pattern=ID_PATTERN)
    """open: the partner who filed it or supports the customer."""
    server_id: str | None = Field(default=None, pattern=ID_PATTERN)
    """open: the server concerned (monitor cases)."""
    severity: Severity | None = None
    """open (monitor/staff), triage, change_severity."""
    owner: str | None = Field(default=None, max_length=200)
    """triage, assign."""
    title: str = Field(default="", max_length=500)
    """open: a one-line summary."""
    message: str = Field(default="", max_length=20000)
    """post_update, note, customer_replied: the text."""
    details: dict[str, DetailValue] = Field(default_factory=dict)
    """Type-specific facts (monitor: failures, first_failure_at, ...; notification outcomes)."""
