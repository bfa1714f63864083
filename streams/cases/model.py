"""What the case engine keeps and answers: the `Case` (the value of its table), the `EngineConfig`, the
`Decision` one command yields, ticket numbers, and the constants the engine's modules share."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from fleetcore.errors import FleetwatchError
from policy.sla import PolicyBook, SlaClock
from schemas.cases import (
    CaseEvent,
    CaseEventType,
    CaseSource,
    CaseState,
    Severity,
)
from schemas.notifications import Notification

RECENT_COMMANDS = 64
"""How many applied command ids a case remembers (replays after a crash come within a few)."""
TIMER_ACTOR = "timer"
"""Actor of clock-driven events (warnings, breaches, status notices) and of TICK commands."""
MONITOR_ACTOR = "monitor"
"""Actor of an auto-resolve."""
TICKET_BASE = 100000

OPEN_STATES = frozenset({CaseState.NEW, CaseState.TRIAGED, CaseState.WORKING, CaseState.WAITING})
"""States in which a case still owes something (not resolved, not closed)."""
ACTIVE_STATES = frozenset({CaseState.TRIAGED, CaseState.WORKING, CaseState.WAITING})
"""Triaged states: the case has a severity and running clocks."""
NOTE_KINDS = frozenset({"note", "phone"})
"""Values of a NOTE's `details.kind`."""
OUTCOMES = {
    "sent": CaseEventType.NOTIFICATION_SENT,
    "retrying": CaseEventType.NOTIFICATION_RETRYING,
    "failed": CaseEventType.NOTIFICATION_FAILED,
}


class Case(BaseModel):
    """One case as the engine keeps it (the value of the case table). Add fields only, with defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    case_id: str
    state: CaseState
    severity: Severity | None
    source: CaseSource
    customer_id: str
    partner_id: str | None
    server_id: str | None
    ticket: str | None
    """Assigned at open (monitor/staff with severity) or at triage."""
    owner: str | None
    title: str
    opened_at: datetime
    updated_at: datetime
    """`at` of the last command that changed the case (rejections do not)."""
    seq: int
    """The seq the next event gets (= number of events emitted so far)."""
    last_hash: str
    """Hash of the last event ("" before the first)."""
    clocks: tuple[SlaClock, ...]
    """Running (or paused, or breached but unmet) clocks; stopped clocks are dropped."""
    policy_version: str
    """Version of the policy the current clocks came from."""
    worked: bool
    """An engineer started work (since the last reopen)."""
    server_down: bool
    """A monitor case whose server has not recovered yet."""
    recovered_at: datetime | None
    status_notices: int
    """Automatic status notices sent so far (numbers their purposes)."""
    recent_commands: tuple[str, ...]
    """The last RECENT_COMMANDS applied command ids (idempotency)."""
    opened_by: str = ""
    """Command id of the OPEN (a repeat of it is ignored however old)."""
    responded: bool = False
    """A first response was given (work started or an update posted) since the last reopen."""
    last_update_at: datetime | None = None
    """When staff last posted a customer update."""
    auto_resolve_pending: bool = False
    """The server recovered while the case was open: a TICK may auto-resolve it (if configured)."""
    next_due_at: datetime | None = None
    """`next_due(case, config)` after the last applied command: what the timer waits for."""
    thread_message_id: str | None = None
    """Message-ID of the partner's email that opened the case (OPEN `details.message_id`): partner help
    desk emails are threaded to it."""
    requester: str | None = None
    """The address that emailed the case in (OPEN `details.from`, bare address): written to when the
    partner's directory entry has no help desk contact."""


@dataclass(frozen=True)
class EngineConfig:
    """What the engine needs besides the case and the command."""

    policies: PolicyBook = field(default_factory=PolicyBook)
    auto_resolve_after: timedelta | None = None
    """Resolve a monitor case once its server has been healthy this long (None: staff resolve)."""
    closed_retention: timedelta | None = timedelta(days=30)
    """How long a closed case stays in the engine's table after its last event (reopen works until then);
    then a TICK purges it, so the table grows with the open work, not with time. None: kept forever."""


@dataclass(frozen=True)
class Decision:
    """What one command did."""

    case: Case | None
    """The new state (None: there is still no case)."""
    events: list[CaseEvent]
    """Chained in order, ready for the case topic."""
    notifications: list[Notification]
    """Ready for the notifications topic."""
    ticket_used: bool
    """The `ticket` passed to apply() was assigned to this case: bump the partition's counter."""
    dead_letter: str | None
    """Why, when the command can't be applied and there is no case to record it on."""
    purge: bool = False
    """The case is closed and past `closed_retention`: drop it from the table (its events stay on the
    topic)."""


class CommandRejected(FleetwatchError):
    """A command does not fit the case; the message says why (it becomes a `command.rejected` event)."""


def ticket_number(partition: int, counter: int, partitions: int) -> str:
    """FW-<100000 + counter*partitions + partition>: unique across partitions without coordination, dense,
    stable (see the package docstring, `streams.cases`)."""
    if partitions < 1 or not 0 <= partition < partitions or counter < 0:
        raise ValueError(f"no ticket for partition {partition} of {partitions}, counter {counter}")
    return f"FW-{TICKET_BASE + counter * partitions + partition}"


def sev(severity: Severity | None) -> str:
    return "no severity" if severity is None else f"Sev{int(severity)}"
