"""The SLA clocks of a case in the engine: when a TICK is next needed (`next_due`, `tick_command`), fitting
(re)started clocks to what the case already is (`fit`), and acting on every clock point a command's time
reached (`fire_due`: warnings, breaches, status notices, the auto-resolve of a recovered monitor case)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from fleetcore.clock import to_epoch_ms
from policy import sla
from policy.sla import AlertLevel, ClockAlert, ClockKind, SlaClock, SlaPolicy
from schemas.cases import (
    CaseEvent,
    CaseEventType,
    CaseSource,
    CaseState,
    DetailValue,
    Severity,
    Visibility,
)
from schemas.commands import CaseCommand, CommandType
from streams import notices
from streams.cases.model import (
    MONITOR_ACTOR,
    OPEN_STATES,
    TIMER_ACTOR,
    Case,
    EngineConfig,
    sev,
)

if TYPE_CHECKING:
    from streams.cases.run import Run


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


def fit(case: Case, clocks: tuple[SlaClock, ...], at: datetime, policy: SlaPolicy) -> tuple[SlaClock, ...]:
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


def fire_due(run: Run) -> None:
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


def _on_alert(run: Run, alert: ClockAlert) -> None:
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
            f"{sev(run.case.severity)} first response due by {due_at.isoformat()}: support lead notified",
            details=facts,
            actor=TIMER_ACTOR,
        )
        purpose = f"sla.breached:{kind.value}:{event.seq}"
        run.notify(notices.first_response_breached(run.case, purpose, due_at), event)


def _status_notice(run: Run, due_at: datetime) -> None:
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


def sev1_mobilised(run: Run, purpose: str, trigger: CaseEvent) -> None:
    if run.case.severity is Severity.SEV1:
        run.notify(notices.sev1_opened(run.case, purpose, run.policy.sev1_work_within), trigger)


# ---------------------------------------------------------------------------------------------------------
