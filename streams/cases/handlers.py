"""What each command type does (`HANDLERS`): validate (raise `CommandRejected`), then change the case and
emit; the fields each type takes (`check_fields`) and what an OPEN carries (`thread_message_id`,
`requester`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from email.utils import parseaddr
from typing import TYPE_CHECKING

from policy import sla
from policy.sla import ClockKind
from schemas.cases import (
    CaseEventType,
    CaseSource,
    CaseState,
    DetailValue,
    Severity,
    Visibility,
    event_id_for,
)
from schemas.commands import CaseCommand, CommandType
from schemas.notifications import EMAIL_ADDRESS_PATTERN, MESSAGE_ID_PATTERN
from streams import notices
from streams.cases.clocks import sev1_mobilised
from streams.cases.model import (
    ACTIVE_STATES,
    NOTE_KINDS,
    OPEN_STATES,
    OUTCOMES,
    Case,
    CommandRejected,
    sev,
)

if TYPE_CHECKING:
    from streams.cases.run import Run


def reason_or(run: Run, default: str) -> str:
    return run.command.reason or default


def message_details(run: Run) -> dict[str, DetailValue]:
    details: dict[str, DetailValue] = dict(run.command.details)
    if run.command.message:
        details["message"] = run.command.message
    return details


# ---------------------------------------------------------------------------------------------------------


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


def check_fields(case: Case, command: CaseCommand) -> None:
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


def _require_severity(run: Run) -> Severity:
    if run.command.severity is None:
        raise CommandRejected(f"{run.command.type.value} needs a severity")
    return run.command.severity


def _require_message(run: Run) -> str:
    if not run.command.message.strip():
        raise CommandRejected(f"{run.command.type.value} needs a message")
    return run.command.message


def _require_state(run: Run, allowed: frozenset[CaseState], hint: str = "") -> None:
    state = run.case.state
    if state not in allowed:
        names = ", ".join(sorted(s.value for s in allowed))
        extra = f"; {hint}" if hint else ""
        raise CommandRejected(
            f"{run.command.type.value} is not allowed in state {state.value} (only {names}){extra}"
        )


# ---------------------------------------------------------------------------------------------------------


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


def default_title(command: CaseCommand) -> str:
    if command.server_id:
        return f"Server {command.server_id} not responding"
    return f"{command.source.value if command.source else 'new'} case for {command.customer_id}"


def _open_existing(run: Run) -> None:
    raise CommandRejected(f"case {run.case.case_id} already exists (opened by command {run.case.opened_by})")


# ---------------------------------------------------------------------------------------------------------


def _triage(run: Run) -> None:
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
            raise CommandRejected(f"already triaged as {sev(severity)}, owner {case.owner or 'none'}")
        return
    _require_state(run, frozenset({CaseState.NEW, CaseState.TRIAGED}), "use change_severity or assign")
    run.update(state=CaseState.TRIAGED, severity=severity, owner=run.command.owner or case.owner)
    run.assign_ticket()
    run.update(policy_version=run.policy.version)
    run.set_clocks(sla.open_clocks(severity, case.source, case.opened_at, run.policy))
    details = message_details(run)
    details.update({"clocks_from": case.opened_at.isoformat(), "policy_version": run.policy.version})
    event = run.emit(CaseEventType.TRIAGED, reason_or(run, f"triaged as {sev(severity)}"), details=details)
    sev1_mobilised(run, f"case.triaged:{event.seq}", event)
    if case.source in (CaseSource.EMAIL, CaseSource.PORTAL) and notices.partner_reachable(case):
        run.notify(notices.partner_triaged(run.case, f"ticket:{event.seq}"), event)


def _assign(run: Run) -> None:
    _require_state(run, OPEN_STATES | {CaseState.RESOLVED}, "reopen it first")
    if not run.command.owner:
        raise CommandRejected("assign needs an owner")
    if run.command.owner == run.case.owner:
        raise CommandRejected(f"already owned by {run.case.owner}")
    _assign_to(run, run.command.owner)


def _assign_to(run: Run, owner: str) -> None:
    previous = run.case.owner
    run.update(owner=owner)
    details = message_details(run)
    details["previous_owner"] = previous
    run.emit(CaseEventType.ASSIGNED, reason_or(run, f"assigned to {owner}"), details=details)


def _start_work(run: Run) -> None:
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
    run.emit(CaseEventType.WORK_STARTED, reason_or(run, "work started"), details=message_details(run))


def _post_update(run: Run) -> None:
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
        reason_or(run, "status update posted to the customer"),
        details=message_details(run),
    )
    run.notify(notices.customer_update(run.case, f"customer.update:{event.seq}", message), event)


def _wait_on_customer(run: Run) -> None:
    _require_state(run, frozenset({CaseState.TRIAGED, CaseState.WORKING}))
    run.update(state=CaseState.WAITING)
    run.set_clocks(run.case.clocks)
    run.emit(CaseEventType.WAITING, reason_or(run, "waiting on the customer"), details=message_details(run))


def _customer_replied(run: Run) -> None:
    _require_state(run, OPEN_STATES | {CaseState.RESOLVED}, "reopen it first")
    if run.case.state is CaseState.WAITING:
        back = CaseState.WORKING if run.case.worked else CaseState.TRIAGED
        run.update(state=back, clocks=sla.resume(run.case.clocks, run.at))
        default = f"customer replied; back to {back.value}"
    else:
        default = "customer wrote (the case was not waiting on them)"
    run.emit(CaseEventType.CUSTOMER_REPLIED, reason_or(run, default), details=message_details(run))


def _note(run: Run) -> None:
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
        reason_or(run, "phone follow-up" if kind == "phone" else "note"),
        details=message_details(run),
        visibility=Visibility.CUSTOMER if visible else Visibility.INTERNAL,
    )


def _flag(run: Run, name: str) -> bool:
    """A boolean detail of the command (absent: false); anything but a boolean is rejected."""
    value = run.command.details.get(name, False)
    if not isinstance(value, bool):
        raise CommandRejected(f"{run.command.type.value} details.{name} must be true or false")
    return value


def _change_severity(run: Run) -> None:
    severity = _require_severity(run)
    hint = "triage sets the first severity" if run.case.state is CaseState.NEW else "reopen it first"
    _require_state(run, ACTIVE_STATES, hint)
    if severity == run.case.severity:
        raise CommandRejected(f"severity is already {sev(severity)}")
    _change_severity_to(run, severity)


def _change_severity_to(run: Run, severity: Severity) -> None:
    previous = run.case.severity
    clocks = sla.change_severity(run.case.clocks, severity, run.case.source, run.at, run.policy)
    run.update(severity=severity, policy_version=run.policy.version)
    run.set_clocks(clocks)
    details = message_details(run)
    details.update({"previous_severity": None if previous is None else int(previous)})
    event = run.emit(
        CaseEventType.SEVERITY_CHANGED,
        reason_or(run, f"{sev(previous)} → {sev(severity)}; its clocks start now"),
        details=details,
    )
    if previous is not Severity.SEV1:
        sev1_mobilised(run, f"severity.sev1:{event.seq}", event)


def _resolve(run: Run) -> None:
    _require_state(run, OPEN_STATES)
    run.update(
        state=CaseState.RESOLVED,
        clocks=sla.stop(run.case.clocks, run.at),
        auto_resolve_pending=False,
    )
    run.emit(CaseEventType.RESOLVED, reason_or(run, "resolved"), details=message_details(run))


def _close(run: Run) -> None:
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
        run.emit(CaseEventType.CLOSED, reason_or(run, "closed"), details=message_details(run))
        return
    text = run.command.message.strip() or notices.REFERRAL_TEXT
    wanted = notices.referral(run.case, f"referral:{run.case.seq}", text)
    told = "the partner was told" if wanted else "nobody to tell (no partner or sender address)"
    details = message_details(run)
    details.update({"referral": True, "message": text})
    event = run.emit(
        CaseEventType.CLOSED,
        reason_or(run, f"closed as a referral, no ticket: end users contact their own provider; {told}"),
        details=details,
    )
    run.notify(wanted, event)


def _reopen(run: Run) -> None:
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
        CaseEventType.REOPENED, reason_or(run, "reopened; clocks restart now"), details=message_details(run)
    )


def _server_recovered(run: Run) -> None:
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
        reason_or(run, f"server {case.server_id} passed a probe again"),
        details=message_details(run),
        event_id=event_id_for(case.case_id, CaseEventType.SERVER_RECOVERED),
    )
    run.notify(notices.server_recovered(run.case, "server.recovered", run.at), event)


def _tick(run: Run) -> None:
    """Nothing beyond the clock check that runs around every command."""


def _notification_outcome(run: Run) -> None:
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
        reason_or(run, f"{key}: {outcome}"),
        details=facts,
        visibility=Visibility.INTERNAL if internal else Visibility.CUSTOMER,
    )


HANDLERS: dict[CommandType, Callable[[Run], None]] = {
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
