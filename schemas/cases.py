"""Case events: the audit log of the support process, one topic keyed by case id."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import IntEnum, StrEnum

import orjson
from pydantic import Field

from schemas.base import Contract, UtcDatetime
from schemas.inventory import ID_PATTERN

DetailValue = str | int | float | bool | None


class Severity(IntEnum):
    """Case severity as the support policy defines it."""

    SEV1 = 1
    """Urgent: many users affected (a server down); Operations Manager paged at once."""
    SEV2 = 2
    """One server, one user or client software; respond within 24 hours."""
    SEV3 = 3
    """Information, billing, documentation; respond within 48 hours."""


class CaseSource(StrEnum):
    """Where a case came from."""

    MONITOR = "monitor"
    EMAIL = "email"
    PORTAL = "portal"
    STAFF = "staff"


class CaseState(StrEnum):
    """Where a case stands in the support process."""

    NEW = "new"
    """Entered the queue (email, portal); not triaged yet: no severity, no ticket."""
    TRIAGED = "triaged"
    """Support set severity (and owner) and assigned the ticket number; nobody works it yet."""
    WORKING = "working"
    """An engineer acknowledged it and works it."""
    WAITING = "waiting_on_customer"
    """The next move is the customer's; pausable SLA clocks stop."""
    RESOLVED = "resolved"
    """Support considers it solved; it can be reopened or closed."""
    CLOSED = "closed"
    """Done; only a reopen brings it back."""


class Visibility(StrEnum):
    """Who may see an event (the portal shows partners only `customer` events; the chain covers all)."""

    CUSTOMER = "customer"
    INTERNAL = "internal"


class CaseEventType(StrEnum):
    """What happened to a case."""

    CASE_OPENED = "case.opened"
    """A case was opened (by the monitor: at the Nth consecutive failed probe)."""
    SERVER_RECOVERED = "server.recovered"
    """The monitored server passed a probe again after its case opened."""
    TRIAGED = "case.triaged"
    """Support set severity and owner; the ticket number was assigned."""
    ASSIGNED = "case.assigned"
    """The owner changed."""
    WORK_STARTED = "case.work_started"
    """An engineer acknowledged the case and works it (stops the Sev1 2-hour work clock)."""
    CUSTOMER_UPDATE = "case.customer_update"
    """Staff posted a status update to the customer (restarts the hourly update clock)."""
    STATUS_NOTICE = "case.status_notice"
    """An hourly update was due and none was posted: the automatic status notice went out."""
    WAITING = "case.waiting_on_customer"
    """The case waits on the customer; pausable clocks stop."""
    CUSTOMER_REPLIED = "case.customer_replied"
    """The customer answered; paused clocks run again."""
    NOTE = "case.note"
    """An internal note or a logged phone follow-up."""
    SEVERITY_CHANGED = "case.severity_changed"
    """Severity changed; the new severity's clocks start at this event."""
    RESOLVED = "case.resolved"
    """Support resolved the case (or it auto-resolved after a healthy period)."""
    CLOSED = "case.closed"
    """The case closed."""
    REOPENED = "case.reopened"
    """A resolved or closed case was reopened."""
    SLA_WARNING = "sla.warning"
    """Internal pre-breach warning of an SLA clock (never shown to the customer)."""
    SLA_BREACHED = "sla.breached"
    """An SLA clock passed its deadline."""
    NOTIFICATION_REQUESTED = "notification.requested"
    """The engine asked for a page, email or call (the Notification is on the notifications topic)."""
    NOTIFICATION_SENT = "notification.sent"
    """The notifier delivered a notification to one contact."""
    NOTIFICATION_RETRYING = "notification.retrying"
    """A delivery attempt failed and will be retried."""
    NOTIFICATION_FAILED = "notification.failed"
    """A delivery gave up (attempts exhausted, or no such contact)."""
    COMMAND_REJECTED = "command.rejected"
    """A command was invalid for the case (the reason says why); the case is unchanged."""


class CaseEvent(Contract):
    """One event of one case. Key on the case topic: case_id. Ids are deterministic, so replays dedupe.

    Events of one case form a hash chain: `seq` counts from 0, `prev_hash` is the previous event's `hash`
    ("" for the first), and `hash` is `case_event_hash(event)`. A removed, reordered or rewritten event
    breaks the chain (`fleetwatch audit verify`).
    """

    event_id: str = Field(min_length=1, max_length=100)
    """Deterministic id: the same event replayed after a crash has the same id."""
    case_id: str = Field(min_length=1, max_length=100)
    """Deterministic case id; a monitor case is derived from its outage (server + first failed probe)."""
    type: CaseEventType
    """What happened."""
    severity: Severity | None
    """The case's severity after this event (None while an email/portal case awaits triage)."""
    source: CaseSource
    """Where the case came from."""
    server_id: str | None = Field(default=None, pattern=ID_PATTERN)
    """The server concerned, for monitor cases."""
    customer_id: str = Field(pattern=ID_PATTERN)
    """The customer concerned."""
    at: UtcDatetime
    """When it happened (for monitor events: the start of the probe that triggered it)."""
    actor: str = Field(default="monitor", min_length=1, max_length=200)
    """Who or what caused the event."""
    details: dict[str, DetailValue] = Field(default_factory=dict)
    """Event-specific facts, e.g. failure count, first failure time, last error."""
    state: CaseState = CaseState.NEW
    """The case's state after this event."""
    ticket: str | None = Field(default=None, max_length=40)
    """The ticket number, once assigned (at triage; monitor cases at open)."""
    owner: str | None = Field(default=None, max_length=200)
    """The engineer who owns the case, if assigned."""
    partner_id: str | None = Field(default=None, pattern=ID_PATTERN)
    """The Solution Partner or ISP supporting the customer, if any."""
    reason: str = Field(default="", max_length=4000)
    """Why (the actor's words, or the rule that fired)."""
    command_id: str | None = Field(default=None, max_length=200)
    """The command this event answers, if any."""
    visibility: Visibility = Visibility.CUSTOMER
    """Who may see it; internal events are still in the chain."""
    seq: int = Field(default=0, ge=0)
    """Position in the case's chain, from 0."""
    prev_hash: str = Field(default="", max_length=64)
    """`hash` of the case's previous event ("" for the first)."""
    hash: str = Field(default="", max_length=64)
    """sha256 over this event's canonical JSON without `hash`, `key_id` and `sig` (see `case_event_hash`)."""
    key_id: str = Field(default="", max_length=64)
    """Id of the Ed25519 key that signed `hash` (first 16 hex digits of sha256 of the raw public key; ""
    before events were signed). Not covered by the hash: the signature binds the hash to the key."""
    sig: str = Field(default="", max_length=100)
    """Base64 Ed25519 signature by the case engine's key `key_id` over the ASCII bytes of `hash` ("":
    unsigned, written before events were signed). See `casefile.signing`."""


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def monitor_case_id(server_id: str, first_failure_at: datetime) -> str:
    """The id of the monitor case of one outage: the same outage always yields the same id."""
    return "mon-" + _digest("monitor", server_id, first_failure_at.isoformat())[:20]


def event_id_for(case_id: str, event_type: CaseEventType, discriminator: str = "") -> str:
    """Deterministic event id: case, event type and what makes this event unique within the case."""
    return "evt-" + _digest(case_id, event_type.value, discriminator)[:24]


UNHASHED: tuple[str, ...] = ("hash", "key_id", "sig")
"""Members of an event's JSON its chain hash does not cover (the hash itself and its signature)."""


def case_event_hash(event: CaseEvent) -> str:
    """The chain hash of an event: sha256 (hex) of its canonical JSON without `hash`, `key_id` and `sig`.

    Canonical JSON: the model's JSON-mode dump, keys sorted, no whitespace, UTF-8 (orjson OPT_SORT_KEYS).
    The signature fields (`UNHASHED`) sit outside the hash they sign, so events written before signing keep
    their hashes. A field added to CaseEvent later changes every stored event's hash unless it is left out
    here while unset: add it to `UNHASHED` only if it must never be covered, otherwise exclude it when it
    holds its default (tests/unit/schemas pin a legacy event's hash).
    """
    body = event.model_dump(mode="json", exclude=set(UNHASHED))
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def chained(event: CaseEvent, seq: int, prev_hash: str) -> CaseEvent:
    """`event` placed at `seq` after `prev_hash`, with its own hash set."""
    placed = event.model_copy(
        update={"seq": seq, "prev_hash": prev_hash, "hash": "", "key_id": "", "sig": ""}
    )
    return placed.model_copy(update={"hash": case_event_hash(placed)})
