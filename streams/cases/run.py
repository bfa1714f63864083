"""One command applied to one case: `apply` (the engine's entry), the opening of a new case, and `Run`, the
scratch state of one apply that chains events as they are emitted."""

from __future__ import annotations

from datetime import datetime

from policy import sla
from policy.sla import SlaClock, SlaPolicy
from schemas.cases import (
    CaseEvent,
    CaseEventType,
    CaseSource,
    CaseState,
    DetailValue,
    Visibility,
    chained,
    event_id_for,
)
from schemas.commands import CaseCommand, CommandType
from schemas.notifications import Notification
from streams import notices
from streams.cases.clocks import fire_due, fit, next_due, sev1_mobilised
from streams.cases.handlers import (
    HANDLERS,
    check_fields,
    default_title,
    message_details,
    reason_or,
    requester,
    thread_message_id,
)
from streams.cases.model import (
    RECENT_COMMANDS,
    Case,
    CommandRejected,
    Decision,
    EngineConfig,
    sev,
)
from streams.notices import Notice


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
        run = Run(case, command, config, ticket)
        try:
            check_fields(case, command)
            if command.type is not CommandType.TICK:
                fire_due(run)
            HANDLERS[command.type](run)
            fire_due(run)
        except CommandRejected as exc:
            run = Run(case, command, config, ticket)
            run.reject(str(exc))
        return run.decision()
    except ValueError as exc:  # an event or notification outside its contract: never crash the agent
        return _dead(case, f"{command.type.value} could not be applied: {exc}")


def _open_new(command: CaseCommand, config: EngineConfig, ticket: str) -> Decision:
    if command.type is not CommandType.OPEN:
        return _dead(None, f"no case {command.case_id}: {command.type.value} needs an open case")
    if command.source is None or command.customer_id is None:
        return _dead(None, "open needs a source and a customer_id")
    policy = config.policies.for_customer(command.customer_id)
    source = command.source
    requested = command.severity
    severity = requested if source in (CaseSource.MONITOR, CaseSource.STAFF) else None
    title = command.title or default_title(command)
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
        run = Run(case, command, config, ticket)
        details = message_details(run)
        details.update({"title": title, "policy_version": policy.version})
        if severity is not None:
            run.update(state=CaseState.TRIAGED, severity=severity)
            run.assign_ticket()
            run.set_clocks(sla.open_clocks(severity, source, command.at, policy))
        elif requested is not None:
            details["requested_severity"] = int(requested)
        default = f"{source.value} case opened" + (
            f" as {sev(severity)}" if severity else "; awaiting triage"
        )
        event = run.emit(
            CaseEventType.CASE_OPENED,
            reason_or(run, default),
            details=details,
            event_id=event_id_for(case.case_id, CaseEventType.CASE_OPENED),
        )
        sev1_mobilised(run, "case.opened", event)
        return run.decision()
    except ValueError as exc:
        return _dead(None, f"open could not be applied: {exc}")


class Run:
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
        """New clocks, fitted to what the case already is (see `fit`)."""
        self.update(clocks=fit(self.case, clocks, self.at, self.policy))

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
