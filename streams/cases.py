"""The case engine: one pure state machine from case commands to chained case events and notifications.

Pure policy code: no Kafka, Faust or aiohttp; time comes in as `command.at`. The Faust agent that owns a case
(key = case id) calls `apply(case, command, config, ticket)` and sends what the `Decision` says: events to the
case topic (the audit log), notifications to the notifications topic, the new `Case` to its table.

States (`schemas.cases.CaseState`)::

    OPEN ─┬─ severity (monitor/staff) ─▶ TRIAGED ──start_work──▶ WORKING ◀──customer_replied──┐
          └─ none (email/portal) ─▶ NEW ──triage──▶ TRIAGED        │ wait_on_customer           │
                                                      └────────────┴──────────────▶ WAITING ───┘
    any open state ──resolve──▶ RESOLVED ──close──▶ CLOSED;  any non-closed state ──close──▶ CLOSED
    RESOLVED/CLOSED ──reopen──▶ TRIAGED (NEW without severity), clocks restart at the reopen

Rules the engine keeps (the support policy, `policy.sla` for the clocks, `streams.notices` for who is told):

* Every valid command first fires what its clocks owed up to `command.at` (as a TICK would), then applies,
  then checks again (a triage anchors clocks at the open, so they may already be due). So a START_WORK that
  arrives at 2:00 of a Sev1 still pages the VP: "not worked within 2 h" is judged on event time, not on how
  soon the timer ticked. Only a TICK auto-resolves a recovered monitor case.
* An invalid command leaves the case as it was and yields ONE `command.rejected` event (internal) saying
  why; only the chain position (`seq`, `last_hash`) and the remembered command ids advance. A command for a
  case that does not exist (other than a well-formed OPEN) has nowhere to be recorded: dead letter.
* Idempotent: a command id among the last 64 applied (`recent_commands`) changes nothing and emits nothing;
  so does an OPEN repeated with the case's own opening command id, however old. Everything else is
  deterministic (event ids, notification keys, texts), so the same inputs give the same Decision, byte for
  byte, and a replay after a crash re-emits the same ids.
* Event ids: `case.opened` and `server.recovered` once per case (`event_id_for(case_id, type)`); every
  other event `event_id_for(case_id, type, f"{command_id}:{index}")`, index = its place in the Decision.
* Status notices keep their cadence: the next is due one period after the previous *due* time; if the
  engine was down across several due times, one notice covers them and the cadence resumes after `at`.

Partner correspondence (issue 4; `streams.notices` says who hears what):

* Threading. An OPEN may carry `details.message_id` (the Message-ID of the partner's email that opened the
  case) and `details.from` (its sender). The engine keeps them on the case as `thread_message_id` and
  `requester` when they are well formed (a `<local@domain>` id; a bare address, a display name is
  dropped) and ignores them otherwise: a case is never refused for a bad header. Every email to the
  partner help desk about the case carries both, so the notifier threads it into the partner's email and,
  when the partner's directory entry has no help desk contact, writes to the requester instead.
* Answering the partner. POST_UPDATE is how staff answer: the text goes to the customer's voice
  (`notices.customer_roles`): for an email/portal case the partner help desk (threaded) and not the
  customer's technical staff; for a monitor/staff case the customer's technical staff as before, plus the
  partner help desk when the case names a partner. Allowed from NEW too (a question before triage).
* Referral. CLOSE with `details.referral = true` on a NEW case (untriaged, no ticket: an end user's
  request) closes it without a ticket and emails the partner help desk the referral (`message`, or the
  policy's `notices.REFERRAL_TEXT`), threaded; the `case.closed` event says `referral: true` and the
  requests are on the case. A referral of a triaged case is rejected (it has a ticket: close it plainly).
  A flag on CLOSE rather than a new command type: it is a close in every other respect (state, clocks,
  reopen), and readers that know CLOSE keep working.
* Notes and phone follow-ups. NOTE takes `details.kind` ("note", the default, or "phone": a logged call,
  reason "phone follow-up") and `details.visible` (default false). A note is internal unless `visible` is
  true; then the partner sees it in the portal timeline. No email either way (a call already reached
  them; use POST_UPDATE to write). A visible note on an open case counts as the first response (the
  partner was answered), nothing more: it restarts no status clock.

Ticket numbers: `FW-<n>`, n = 100000 + counter * P + p, where p is the engine partition that owns the case
(0 ≤ p < P, P = partitions of the case-commands topic) and counter is that partition's own count of tickets
issued so far, kept in the engine's table beside its cases. Partitions never share an n (n mod P = p), so no
coordination is needed; numbers stay dense (P partitions issue the first P*k numbers between them) and
human-sized (6 digits until a million tickets). The counter moves only when a Decision says `ticket_used`,
and it is written with the case, so a replayed command reads the case that already holds its ticket and never
draws a second one. Changing P renumbers nothing already issued but may collide with it: a partition
change needs a new base (e.g. 200000).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr

from pydantic import BaseModel, ConfigDict

from fleetcore.clock import to_epoch_ms
from fleetcore.errors import FleetwatchError
from policy import sla
from policy.sla import AlertLevel, ClockAlert, ClockKind, PolicyBook, SlaClock, SlaPolicy
from schemas.cases import (
    CaseEvent,
    CaseEventType,
    CaseSource,
    CaseState,
    DetailValue,
    Severity,
    Visibility,
    chained,
    event_id_for,
)
from schemas.commands import CaseCommand, CommandType
from schemas.notifications import EMAIL_ADDRESS_PATTERN, MESSAGE_ID_PATTERN, Notification
from streams import notices
from streams.notices import Notice

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
    stable (see the module docstring)."""
    if partitions < 1 or not 0 <= partition < partitions or counter < 0:
        raise ValueError(f"no ticket for partition {partition} of {partitions}, counter {counter}")
    return f"FW-{TICKET_BASE + counter * partitions + partition}"


def next_due(case: Case, config: EngineConfig) -> datetime | None:
    """Earliest moment a TICK would do something (clock warning/breach, status notice, auto-resolve); None if
    nothing pending."""
    points = []
    if case.state is CaseState.CLOSED and config.closed_retention is not None:
        points.append(case.updated_at + config.closed_retention)
    if case.state in OPEN_STATES:
        if (deadline := sla.next_deadline(case.clocks)) is not None:
            points.append(deadline)
        if (auto := _auto_resolve_at(case, config)) is not None:
            points.append(auto)
    return min(points, default=None)


def tick_command(case: Case, now: datetime) -> CaseCommand:
    """The TICK a timer sends: deterministic command_id f"tick:{case_id}:{epoch-ms of next_due}",
    actor "timer", at=now. (`next_due` as stored on the case by the last apply; `now` if nothing is due.)"""
    due = case.next_due_at or now
    return CaseCommand(
        command_id=f"tick:{case.case_id}:{to_epoch_ms(due)}",
        case_id=case.case_id,
        type=CommandType.TICK,
        at=now,
        actor=TIMER_ACTOR,
    )


def apply(case: Case | None, command: CaseCommand, config: EngineConfig, ticket: str) -> Decision:
    """Apply one command to a case (None: no such case yet). Pure and deterministic."""
    if case is None:
        return _open_new(command, config, ticket)
    if command.case_id != case.case_id:
        return _dead(case, f"command for case {command.case_id} given case {case.case_id}")
    if command.command_id in case.recent_commands or (
        command.type is CommandType.OPEN and command.command_id == case.opened_by
    ):
        return _dead(case, None)  # applied before: a replay changes nothing
    if (
        command.type is CommandType.TICK
        and case.state is CaseState.CLOSED
        and config.closed_retention is not None
        and command.at >= case.updated_at + config.closed_retention
    ):
        return Decision(case, [], [], False, None, purge=True)
    try:
        run = _Run(case, command, config, ticket)
        try:
            _check_fields(case, command)
            if command.type is not CommandType.TICK:
                _fire_due(run)
            _HANDLERS[command.type](run)
            _fire_due(run)
        except CommandRejected as exc:
            run = _Run(case, command, config, ticket)
            run.reject(str(exc))
        return run.decision()
    except ValueError as exc:  # an event or notification outside its contract: never crash the agent
        return _dead(case, f"{command.type.value} could not be applied: {exc}")


# ---------------------------------------------------------------------------------------------------------
# The run: one command applied to one case, events chained as they are emitted


class _Run:
    """Mutable scratch state of one apply(); the Case itself stays immutable."""

    def __init__(self, case: Case, command: CaseCommand, config: EngineConfig, ticket: str) -> None:
        self.original = case
        self.case = case
        self.command = command
        self.config = config
        self.ticket = ticket
        self.policy: SlaPolicy = config.policies.for_customer(case.customer_id)
        self.events: list[CaseEvent] = []
        self.notifications: list[Notification] = []
        self.ticket_used = False
        self.rejected = False

    @property
    def at(self) -> datetime:
        return self.command.at

    def update(self, **changes: object) -> None:
        self.case = self.case.model_copy(update=changes)

    def set_clocks(self, clocks: tuple[SlaClock, ...]) -> None:
        """New clocks, fitted to what the case already is (see `_fit`)."""
        self.update(clocks=_fit(self.case, clocks, self.at, self.policy))

    def assign_ticket(self) -> None:
        if self.case.ticket is None:
            self.update(ticket=self.ticket)
            self.ticket_used = True

    def emit(
        self,
        type_: CaseEventType,
        reason: str,
        *,
        details: dict[str, DetailValue] | None = None,
        visibility: Visibility = Visibility.CUSTOMER,
        actor: str | None = None,
        event_id: str | None = None,
    ) -> CaseEvent:
        """Append an event carrying the case as it is now, chained after the previous one."""
        c, cmd = self.case, self.command
        event = CaseEvent(
            event_id=event_id or event_id_for(c.case_id, type_, f"{cmd.command_id}:{len(self.events)}"),
            case_id=c.case_id,
            type=type_,
            severity=c.severity,
            source=c.source,
            server_id=c.server_id,
            customer_id=c.customer_id,
            at=cmd.at,
            actor=actor or cmd.actor,
            details=details or {},
            state=c.state,
            ticket=c.ticket,
            owner=c.owner,
            partner_id=c.partner_id,
            reason=_clip(reason, 4000),
            command_id=cmd.command_id,
            visibility=visibility,
        )
        event = chained(event, c.seq, c.last_hash)
        self.update(seq=c.seq + 1, last_hash=event.hash)
        self.events.append(event)
        return event

    def notify(self, wanted: list[Notice], trigger: CaseEvent) -> None:
        """Ask for each notice, and record each request on the case (the audit of who was told)."""
        for notice in wanted:
            item = notices.notification(self.case, notice, self.at)
            if self.case.last_hash:  # chain head: the trigger, never the decision's last (re-hashed) event
                head = {"chain_seq": self.case.seq - 1, "chain_hash": self.case.last_hash}
                item = item.model_copy(update=head)
            self.notifications.append(item)
            self.emit(
                CaseEventType.NOTIFICATION_REQUESTED,
                f"{notice.channel.value} to {notice.role.value}: {notice.purpose}",
                details={
                    "key": item.key,
                    "channel": notice.channel.value,
                    "role": notice.role.value,
                    "purpose": notice.purpose,
                },
                visibility=trigger.visibility,
                actor=trigger.actor,
            )

    def reject(self, why: str) -> None:
        """The command does not fit: one internal event says why; the case itself stays as it was."""
        self.rejected = True
        self.emit(
            CaseEventType.COMMAND_REJECTED,
            why,
            details={"command_type": self.command.type.value, "command_reason": self.command.reason},
            visibility=Visibility.INTERNAL,
        )

    def decision(self) -> Decision:
        if not self.events:
            return Decision(self.original, [], [], False, None)
        case = self.case
        recent = (*case.recent_commands, self.command.command_id)[-RECENT_COMMANDS:]
        if self.rejected:
            return Decision(case.model_copy(update={"recent_commands": recent}), self.events, [], False, None)
        case = case.model_copy(
            update={
                "clocks": tuple(c for c in case.clocks if c.stopped_at is None),
                "updated_at": self.at,
                "recent_commands": recent,
            }
        )
        case = case.model_copy(update={"next_due_at": next_due(case, self.config)})
        events, last_hash = _with_deadlines(self.events, case)
        case = case.model_copy(update={"last_hash": last_hash})
        return Decision(case, events, self.notifications, self.ticket_used, None)


DEADLINES = "due"
"""Detail key of a decision's last event: the running clocks' deadlines after it, `kind=iso,kind=iso`
("" when none run), so readers (the portal) show what is due by when without the policy code."""


def _with_deadlines(events: list[CaseEvent], case: Case) -> tuple[list[CaseEvent], str]:
    """The events with the last one carrying the case's running deadlines (re-hashed); the new chain head."""
    deadlines = ",".join(
        f"{clock.kind.value}={due.isoformat()}"
        for clock in case.clocks
        if clock.stopped_at is None and not clock.breached and (due := clock.due_at()) is not None
    )
    last = events[-1]
    marked = last.model_copy(update={"details": {**last.details, DEADLINES: deadlines}})
    marked = chained(marked, last.seq, last.prev_hash)
    return [*events[:-1], marked], marked.hash


def _dead(case: Case | None, reason: str | None) -> Decision:
    return Decision(case, [], [], False, reason)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sev(severity: Severity | None) -> str:
    return "no severity" if severity is None else f"Sev{int(severity)}"


def _reason(run: _Run, default: str) -> str:
    return run.command.reason or default


def _message_details(run: _Run) -> dict[str, DetailValue]:
    details: dict[str, DetailValue] = dict(run.command.details)
    if run.command.message:
        details["message"] = run.command.message
    return details


# ---------------------------------------------------------------------------------------------------------
# Clocks


def _fit(case: Case, clocks: tuple[SlaClock, ...], at: datetime, policy: SlaPolicy) -> tuple[SlaClock, ...]:
    """Make freshly (re)started clocks agree with what already happened: a recovered monitor case owes no
    status updates, a worked case no Sev1 work, a responded case no first response, and a waiting case's
    pausable clocks are paused."""
    if case.source is CaseSource.MONITOR and not case.server_down:
        clocks = sla.stop(clocks, at, frozenset({ClockKind.STATUS_UPDATE}))
    if case.worked:
        clocks = sla.satisfy(clocks, ClockKind.SEV1_WORK, at, policy)
    if case.responded:
        clocks = sla.satisfy(clocks, ClockKind.FIRST_RESPONSE, at, policy)
    if case.state is CaseState.WAITING:
        clocks = sla.pause(clocks, at)
    return clocks


def _auto_resolve_at(case: Case, config: EngineConfig) -> datetime | None:
    if (
        config.auto_resolve_after is None
        or not case.auto_resolve_pending
        or case.recovered_at is None
        or case.state not in OPEN_STATES
    ):
        return None
    return case.recovered_at + config.auto_resolve_after


def _fire_due(run: _Run) -> None:
    """Act on every clock point reached by `run.at`, in time order; a TICK also auto-resolves."""
    for _ in range(4):  # a restarted status clock can reach its warning point in the next round; no more
        clocks, alerts = sla.check(run.case.clocks, run.at)
        if not alerts:
            break
        run.update(clocks=clocks)
        breached = {a.kind for a in alerts if a.level is AlertLevel.BREACH}
        due = [a for a in alerts if a.level is AlertLevel.BREACH or a.kind not in breached]
        for alert in sorted(due, key=lambda a: (a.point, a.level is AlertLevel.BREACH)):
            _on_alert(run, alert)
    if run.command.type is CommandType.TICK:
        auto = _auto_resolve_at(run.case, run.config)
        if auto is not None and run.at >= auto:
            run.update(state=CaseState.RESOLVED, clocks=sla.stop(run.case.clocks, run.at))
            run.update(auto_resolve_pending=False)
            run.emit(
                CaseEventType.RESOLVED,
                f"server healthy since {run.case.recovered_at:%Y-%m-%d %H:%M} UTC "
                f"(auto-resolve after {run.config.auto_resolve_after})",
                details={"auto": True},
                actor=MONITOR_ACTOR,
            )


def _on_alert(run: _Run, alert: ClockAlert) -> None:
    kind, due_at = alert.kind, alert.due_at
    facts: dict[str, DetailValue] = {
        "clock": kind.value,
        "due_at": due_at.isoformat(),
        "policy_version": run.case.policy_version,
    }
    if alert.level is AlertLevel.WARNING:
        event = run.emit(
            CaseEventType.SLA_WARNING,
            f"{kind.value} due at {due_at.isoformat()}",
            details=facts,
            visibility=Visibility.INTERNAL,
            actor=TIMER_ACTOR,
        )
        # The hourly status clock warns in the log only: its deadline sends the automatic notice anyway, and
        # an email to on-call every hour of every Sev1 would train people to ignore warnings.
        if kind is not ClockKind.STATUS_UPDATE:
            purpose = f"sla.warning:{kind.value}:{event.seq}"
            run.notify(notices.warning(run.case, purpose, kind.value, due_at, due_at - run.at), event)
    elif kind is ClockKind.STATUS_UPDATE:
        _status_notice(run, due_at)
    elif kind is ClockKind.SEV1_WORK:
        event = run.emit(
            CaseEventType.SLA_BREACHED,
            f"Sev1 not worked by {due_at.isoformat()}: VP of Operations paged, customer called",
            details=facts,
            actor=TIMER_ACTOR,
        )
        purpose = f"sla.breached:{kind.value}:{event.seq}"
        run.notify(notices.sev1_work_breached(run.case, purpose, due_at), event)
    else:
        event = run.emit(
            CaseEventType.SLA_BREACHED,
            f"{_sev(run.case.severity)} first response due by {due_at.isoformat()}: support lead notified",
            details=facts,
            actor=TIMER_ACTOR,
        )
        purpose = f"sla.breached:{kind.value}:{event.seq}"
        run.notify(notices.first_response_breached(run.case, purpose, due_at), event)


def _status_notice(run: _Run, due_at: datetime) -> None:
    """No staff update by `due_at`: the automatic notice goes out; the next is due one period after `due_at`
    (or after the last missed period, when the engine comes back late)."""
    every = run.policy.sev1_update_every
    missed = (run.at - due_at) // every
    restart = due_at + missed * every
    number = run.case.status_notices + 1
    run.update(
        status_notices=number,
        clocks=sla.satisfy(run.case.clocks, ClockKind.STATUS_UPDATE, restart, run.policy),
    )
    text = notices.status_text(run.case, run.at)
    event = run.emit(
        CaseEventType.STATUS_NOTICE,
        f"status update due at {due_at.isoformat()} and none posted: automatic notice {number}",
        details={"notice": number, "due_at": due_at.isoformat(), "missed": missed, "message": text},
        actor=TIMER_ACTOR,
    )
    run.notify(notices.status_notice(run.case, f"status.notice:{number}", run.at, number), event)


def _sev1_mobilised(run: _Run, purpose: str, trigger: CaseEvent) -> None:
    if run.case.severity is Severity.SEV1:
        run.notify(notices.sev1_opened(run.case, purpose, run.policy.sev1_work_within), trigger)


# ---------------------------------------------------------------------------------------------------------
# Fields a command type takes


_TAKES: dict[CommandType, frozenset[str]] = {
    CommandType.OPEN: frozenset({"source", "partner_id", "title", "severity", "owner", "message"}),
    CommandType.TRIAGE: frozenset({"severity", "owner", "message"}),
    CommandType.ASSIGN: frozenset({"owner", "message"}),
    CommandType.START_WORK: frozenset({"owner", "message"}),
    CommandType.CHANGE_SEVERITY: frozenset({"severity", "message"}),
    CommandType.TICK: frozenset(),
    CommandType.NOTIFICATION_OUTCOME: frozenset(),
}
_OPTIONAL = ("source", "partner_id", "title", "severity", "owner", "message")
_IDENTITY = frozenset({"source", "partner_id"})


def _check_fields(case: Case, command: CaseCommand) -> None:
    """Reject fields the command type does not use (they would be silently ignored) and ids that contradict
    the case."""
    takes = _TAKES.get(command.type, frozenset({"message"}))
    unused = [
        name
        for name in _OPTIONAL
        if name not in takes
        and getattr(command, name) not in (None, "")
        # identity fields that repeat the case's own value (the monitor sends them) contradict nothing
        and not (name in _IDENTITY and getattr(command, name) == getattr(case, name))
    ]
    if unused:
        raise CommandRejected(f"{command.type.value} does not take {', '.join(unused)}")
    if command.customer_id is not None and command.customer_id != case.customer_id:
        raise CommandRejected(f"customer_id {command.customer_id} is not the case's ({case.customer_id})")
    if command.server_id is not None and command.server_id != case.server_id:
        raise CommandRejected(f"server_id {command.server_id} is not the case's ({case.server_id})")


def _require_severity(run: _Run) -> Severity:
    if run.command.severity is None:
        raise CommandRejected(f"{run.command.type.value} needs a severity")
    return run.command.severity


def _require_message(run: _Run) -> str:
    if not run.command.message.strip():
        raise CommandRejected(f"{run.command.type.value} needs a message")
    return run.command.message


def _require_state(run: _Run, allowed: frozenset[CaseState], hint: str = "") -> None:
    state = run.case.state
    if state not in allowed:
        names = ", ".join(sorted(s.value for s in allowed))
        extra = f"; {hint}" if hint else ""
        raise CommandRejected(
            f"{run.command.type.value} is not allowed in state {state.value} (only {names}){extra}"
        )


# ---------------------------------------------------------------------------------------------------------
# Opening


def _open_new(command: CaseCommand, config: EngineConfig, ticket: str) -> Decision:
    if command.type is not CommandType.OPEN:
        return _dead(None, f"no case {command.case_id}: {command.type.value} needs an open case")
    if command.source is None or command.customer_id is None:
        return _dead(None, "open needs a source and a customer_id")
    policy = config.policies.for_customer(command.customer_id)
    source = command.source
    requested = command.severity
    severity = requested if source in (CaseSource.MONITOR, CaseSource.STAFF) else None
    title = command.title or _default_title(command)
    case = Case(
        case_id=command.case_id,
        state=CaseState.NEW,
        severity=None,
        source=source,
        customer_id=command.customer_id,
        partner_id=command.partner_id,
        server_id=command.server_id,
        ticket=None,
        owner=command.owner,
        title=title,
        opened_at=command.at,
        updated_at=command.at,
        seq=0,
        last_hash="",
        clocks=(),
        policy_version=policy.version,
        worked=False,
        server_down=source is CaseSource.MONITOR,
        recovered_at=None,
        status_notices=0,
        recent_commands=(),
        opened_by=command.command_id,
        thread_message_id=thread_message_id(command.details),
        requester=requester(command.details),
    )
    try:
        run = _Run(case, command, config, ticket)
        details = _message_details(run)
        details.update({"title": title, "policy_version": policy.version})
        if severity is not None:
            run.update(state=CaseState.TRIAGED, severity=severity)
            run.assign_ticket()
            run.set_clocks(sla.open_clocks(severity, source, command.at, policy))
        elif requested is not None:
            details["requested_severity"] = int(requested)
        default = f"{source.value} case opened" + (
            f" as {_sev(severity)}" if severity else "; awaiting triage"
        )
        event = run.emit(
            CaseEventType.CASE_OPENED,
            _reason(run, default),
            details=details,
            event_id=event_id_for(case.case_id, CaseEventType.CASE_OPENED),
        )
        _sev1_mobilised(run, "case.opened", event)
        return run.decision()
    except ValueError as exc:
        return _dead(None, f"open could not be applied: {exc}")


def thread_message_id(details: Mapping[str, DetailValue]) -> str | None:
    """`details.message_id` as a header-safe `<local@domain>` (brackets added if missing), else None."""
    value = details.get("message_id")
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value.startswith("<"):
        value = f"<{value}>"
    return value if len(value) <= 504 and re.fullmatch(MESSAGE_ID_PATTERN, value) else None


def requester(details: Mapping[str, DetailValue]) -> str | None:
    """The bare address of `details.from` (a display name is dropped), if it is a header-safe address."""
    value = details.get("from")
    if not isinstance(value, str) or "\n" in value or "\r" in value:
        return None
    address = parseaddr(value)[1].strip()
    return address if len(address) <= 254 and re.fullmatch(EMAIL_ADDRESS_PATTERN, address) else None


def _default_title(command: CaseCommand) -> str:
    if command.server_id:
        return f"Server {command.server_id} not responding"
    return f"{command.source.value if command.source else 'new'} case for {command.customer_id}"


def _open_existing(run: _Run) -> None:
    raise CommandRejected(f"case {run.case.case_id} already exists (opened by command {run.case.opened_by})")


# ---------------------------------------------------------------------------------------------------------
# Handlers: validate (raise CommandRejected), then change the case and emit


def _triage(run: _Run) -> None:
    severity = _require_severity(run)
    case = run.case
    if case.state is CaseState.TRIAGED:
        changed = False
        if severity != case.severity:
            _change_severity_to(run, severity)
            changed = True
        if run.command.owner and run.command.owner != case.owner:
            _assign_to(run, run.command.owner)
            changed = True
        if not changed:
            raise CommandRejected(f"already triaged as {_sev(severity)}, owner {case.owner or 'none'}")
        return
    _require_state(run, frozenset({CaseState.NEW, CaseState.TRIAGED}), "use change_severity or assign")
    run.update(state=CaseState.TRIAGED, severity=severity, owner=run.command.owner or case.owner)
    run.assign_ticket()
    run.update(policy_version=run.policy.version)
    run.set_clocks(sla.open_clocks(severity, case.source, case.opened_at, run.policy))
    details = _message_details(run)
    details.update({"clocks_from": case.opened_at.isoformat(), "policy_version": run.policy.version})
    event = run.emit(CaseEventType.TRIAGED, _reason(run, f"triaged as {_sev(severity)}"), details=details)
    _sev1_mobilised(run, f"case.triaged:{event.seq}", event)
    if case.source in (CaseSource.EMAIL, CaseSource.PORTAL) and notices.partner_reachable(case):
        run.notify(notices.partner_triaged(run.case, f"ticket:{event.seq}"), event)


def _assign(run: _Run) -> None:
    _require_state(run, OPEN_STATES | {CaseState.RESOLVED}, "reopen it first")
    if not run.command.owner:
        raise CommandRejected("assign needs an owner")
    if run.command.owner == run.case.owner:
        raise CommandRejected(f"already owned by {run.case.owner}")
    _assign_to(run, run.command.owner)


def _assign_to(run: _Run, owner: str) -> None:
    previous = run.case.owner
    run.update(owner=owner)
    details = _message_details(run)
    details["previous_owner"] = previous
    run.emit(CaseEventType.ASSIGNED, _reason(run, f"assigned to {owner}"), details=details)


def _start_work(run: _Run) -> None:
    hint = (
        "already being worked"
        if run.case.state is CaseState.WORKING
        else "triage it first"
        if run.case.state is CaseState.NEW
        else "reopen it first"
    )
    _require_state(run, frozenset({CaseState.TRIAGED, CaseState.WAITING}), hint)
    clocks = run.case.clocks
    if run.case.state is CaseState.WAITING:
        clocks = sla.resume(clocks, run.at)
    run.update(
        state=CaseState.WORKING,
        worked=True,
        responded=True,
        owner=run.command.owner or run.case.owner,
    )
    run.set_clocks(clocks)
    run.emit(CaseEventType.WORK_STARTED, _reason(run, "work started"), details=_message_details(run))


def _post_update(run: _Run) -> None:
    message = _require_message(run)
    _require_state(run, OPEN_STATES | {CaseState.RESOLVED}, "reopen it first")
    every = run.policy.sev1_update_every
    clocks = run.case.clocks
    current = next((c for c in clocks if c.kind is ClockKind.STATUS_UPDATE and c.stopped_at is None), None)
    # An update restarts the hourly clock, but never pulls the next notice earlier than it was due
    # (a monitor Sev1's first notice stays at open + 2 h).
    due = current.due_at() if current is not None else None
    if current is not None and (due is None or due < run.at + every):
        clocks = sla.satisfy(clocks, ClockKind.STATUS_UPDATE, run.at, run.policy)
    run.update(responded=True, last_update_at=run.at)
    run.set_clocks(clocks)
    event = run.emit(
        CaseEventType.CUSTOMER_UPDATE,
        _reason(run, "status update posted to the customer"),
        details=_message_details(run),
    )
    run.notify(notices.customer_update(run.case, f"customer.update:{event.seq}", message), event)


def _wait_on_customer(run: _Run) -> None:
    _require_state(run, frozenset({CaseState.TRIAGED, CaseState.WORKING}))
    run.update(state=CaseState.WAITING)
    run.set_clocks(run.case.clocks)
    run.emit(CaseEventType.WAITING, _reason(run, "waiting on the customer"), details=_message_details(run))


def _customer_replied(run: _Run) -> None:
    _require_state(run, OPEN_STATES | {CaseState.RESOLVED}, "reopen it first")
    if run.case.state is CaseState.WAITING:
        back = CaseState.WORKING if run.case.worked else CaseState.TRIAGED
        run.update(state=back, clocks=sla.resume(run.case.clocks, run.at))
        default = f"customer replied; back to {back.value}"
    else:
        default = "customer wrote (the case was not waiting on them)"
    run.emit(CaseEventType.CUSTOMER_REPLIED, _reason(run, default), details=_message_details(run))


def _note(run: _Run) -> None:
    """An internal note, or a logged phone follow-up; customer-visible only when `details.visible`."""
    _require_message(run)
    kind = run.command.details.get("kind", "note")
    if not isinstance(kind, str) or kind not in NOTE_KINDS:
        raise CommandRejected(f"note details.kind must be one of {', '.join(sorted(NOTE_KINDS))}")
    visible = _flag(run, "visible")
    if visible and run.case.state in OPEN_STATES:
        run.update(responded=True)
        run.set_clocks(run.case.clocks)
    run.emit(
        CaseEventType.NOTE,
        _reason(run, "phone follow-up" if kind == "phone" else "note"),
        details=_message_details(run),
        visibility=Visibility.CUSTOMER if visible else Visibility.INTERNAL,
    )


def _flag(run: _Run, name: str) -> bool:
    """A boolean detail of the command (absent: false); anything but a boolean is rejected."""
    value = run.command.details.get(name, False)
    if not isinstance(value, bool):
        raise CommandRejected(f"{run.command.type.value} details.{name} must be true or false")
    return value


def _change_severity(run: _Run) -> None:
    severity = _require_severity(run)
    hint = "triage sets the first severity" if run.case.state is CaseState.NEW else "reopen it first"
    _require_state(run, ACTIVE_STATES, hint)
    if severity == run.case.severity:
        raise CommandRejected(f"severity is already {_sev(severity)}")
    _change_severity_to(run, severity)


def _change_severity_to(run: _Run, severity: Severity) -> None:
    previous = run.case.severity
    clocks = sla.change_severity(run.case.clocks, severity, run.case.source, run.at, run.policy)
    run.update(severity=severity, policy_version=run.policy.version)
    run.set_clocks(clocks)
    details = _message_details(run)
    details.update({"previous_severity": None if previous is None else int(previous)})
    event = run.emit(
        CaseEventType.SEVERITY_CHANGED,
        _reason(run, f"{_sev(previous)} → {_sev(severity)}; its clocks start now"),
        details=details,
    )
    if previous is not Severity.SEV1:
        _sev1_mobilised(run, f"severity.sev1:{event.seq}", event)


def _resolve(run: _Run) -> None:
    _require_state(run, OPEN_STATES)
    run.update(
        state=CaseState.RESOLVED,
        clocks=sla.stop(run.case.clocks, run.at),
        auto_resolve_pending=False,
    )
    run.emit(CaseEventType.RESOLVED, _reason(run, "resolved"), details=_message_details(run))


def _close(run: _Run) -> None:
    _require_state(run, OPEN_STATES | {CaseState.RESOLVED})
    referral = _flag(run, "referral")
    if referral and run.case.state is not CaseState.NEW:
        raise CommandRejected(
            f"a referral closes an untriaged case; this one is {run.case.state.value} with ticket "
            f"{run.case.ticket}: close it without details.referral"
        )
    run.update(
        state=CaseState.CLOSED,
        clocks=sla.stop(run.case.clocks, run.at),
        auto_resolve_pending=False,
    )
    if not referral:
        run.emit(CaseEventType.CLOSED, _reason(run, "closed"), details=_message_details(run))
        return
    text = run.command.message.strip() or notices.REFERRAL_TEXT
    wanted = notices.referral(run.case, f"referral:{run.case.seq}", text)
    told = "the partner was told" if wanted else "nobody to tell (no partner or sender address)"
    details = _message_details(run)
    details.update({"referral": True, "message": text})
    event = run.emit(
        CaseEventType.CLOSED,
        _reason(run, f"closed as a referral, no ticket: end users contact their own provider; {told}"),
        details=details,
    )
    run.notify(wanted, event)


def _reopen(run: _Run) -> None:
    _require_state(run, frozenset({CaseState.RESOLVED, CaseState.CLOSED}))
    severity = run.case.severity
    run.update(
        state=CaseState.NEW if severity is None else CaseState.TRIAGED,
        worked=False,
        responded=False,
        policy_version=run.policy.version,
    )
    if severity is not None:
        run.set_clocks(sla.open_clocks(severity, run.case.source, run.at, run.policy))
    run.emit(
        CaseEventType.REOPENED, _reason(run, "reopened; clocks restart now"), details=_message_details(run)
    )


def _server_recovered(run: _Run) -> None:
    case = run.case
    if case.source is not CaseSource.MONITOR:
        raise CommandRejected(f"not a monitor case (source {case.source.value}): no outage to recover from")
    if case.recovered_at is not None:
        raise CommandRejected(f"server already recovered at {case.recovered_at.isoformat()}")
    run.update(
        server_down=False,
        recovered_at=run.at,
        auto_resolve_pending=case.state in OPEN_STATES,
    )
    run.set_clocks(run.case.clocks)  # a recovered monitor case owes no more status notices
    event = run.emit(
        CaseEventType.SERVER_RECOVERED,
        _reason(run, f"server {case.server_id} passed a probe again"),
        details=_message_details(run),
        event_id=event_id_for(case.case_id, CaseEventType.SERVER_RECOVERED),
    )
    run.notify(notices.server_recovered(run.case, "server.recovered", run.at), event)


def _tick(run: _Run) -> None:
    """Nothing beyond the clock check that runs around every command."""


def _notification_outcome(run: _Run) -> None:
    details = run.command.details
    key, outcome = details.get("key"), details.get("outcome")
    if not isinstance(key, str) or not key:
        raise CommandRejected("notification_outcome needs details.key")
    if not key.startswith(f"{run.case.case_id}:"):
        raise CommandRejected(f"notification {key} is not about case {run.case.case_id}")
    if not isinstance(outcome, str) or outcome not in OUTCOMES:
        raise CommandRejected(f"notification_outcome needs details.outcome in {', '.join(OUTCOMES)}")
    facts: dict[str, DetailValue] = {
        name: details.get(name) for name in ("key", "contact", "outcome", "attempt", "error")
    }
    facts.update({name: details[name] for name in ("channel", "role") if name in details})
    internal = ":sla.warning:" in key
    run.emit(
        OUTCOMES[outcome],
        _reason(run, f"{key}: {outcome}"),
        details=facts,
        visibility=Visibility.INTERNAL if internal else Visibility.CUSTOMER,
    )


_HANDLERS: dict[CommandType, Callable[[_Run], None]] = {
    CommandType.OPEN: _open_existing,
    CommandType.TRIAGE: _triage,
    CommandType.ASSIGN: _assign,
    CommandType.START_WORK: _start_work,
    CommandType.POST_UPDATE: _post_update,
    CommandType.WAIT_ON_CUSTOMER: _wait_on_customer,
    CommandType.CUSTOMER_REPLIED: _customer_replied,
    CommandType.NOTE: _note,
    CommandType.CHANGE_SEVERITY: _change_severity,
    CommandType.RESOLVE: _resolve,
    CommandType.CLOSE: _close,
    CommandType.REOPEN: _reopen,
    CommandType.SERVER_RECOVERED: _server_recovered,
    CommandType.TICK: _tick,
    CommandType.NOTIFICATION_OUTCOME: _notification_outcome,
}
