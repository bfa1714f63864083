"""The outage detector: N consecutive failed probes of one server open one Severity 1 case.

Pure policy code: no Kafka, Faust or aiohttp; time is passed in. One transition function,
`observe(streak, result, now, threshold) -> (streak, events)`, over explicit states:

    OK --fail--> FAILING(1..N-1) --Nth fail--> OPEN --success--> OK (+ server.recovered)
                  |  success                     ^ failures: no change
                  v                              |
                  OK (no event)

* Replay-safe: a result not newer than the last state-changing result is ignored, so results re-read after a
  crash (offsets not yet committed) change nothing; the case id is derived from the outage (server id + first
  failed probe's start), so even a replay from an empty state re-emits the same ids and never a second case.
* Write-light: `observe` returns the very same `streak` object when nothing changed; callers write their table
  only when the returned object is not the one they passed in. A healthy server produces no writes, and an
  open outage's further failures produce none either.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.cases import (
    CaseEvent,
    CaseEventType,
    CaseSource,
    DetailValue,
    Severity,
    event_id_for,
    monitor_case_id,
)
from schemas.probes import ProbeResult

DEFAULT_THRESHOLD = 10
"""The support policy: 10 or more failed status requests in sequence open a Severity 1 case."""


class StreakState(StrEnum):
    """Where a server stands in the detector."""

    OK = "ok"
    """Last probe passed (or never probed)."""
    FAILING = "failing"
    """1..threshold-1 consecutive failures, no case yet."""
    OPEN = "open"
    """Threshold reached; a monitor case is open for this outage."""


class ServerStreak(BaseModel):
    """Detector state of one server (the value of the stream worker's streak table)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    state: StreakState = StreakState.OK
    """Current state."""
    failures: int = Field(default=0, ge=0)
    """Consecutive failures counted (stops counting once the case is open)."""
    first_failure_at: datetime | None = None
    """Start of the first failed probe of the current outage."""
    last_change_at: datetime | None = None
    """Start of the last probe that changed this state; older or equal results are replays and ignored."""
    case_id: str | None = None
    """The open monitor case, in state OPEN."""


INITIAL = ServerStreak()
"""The state of a server never seen failing."""


def _is_replay(streak: ServerStreak, result: ProbeResult) -> bool:
    return streak.last_change_at is not None and result.started_at <= streak.last_change_at


def observe(
    streak: ServerStreak, result: ProbeResult, now: datetime, threshold: int = DEFAULT_THRESHOLD
) -> tuple[ServerStreak, list[CaseEvent]]:
    """Apply one probe result. Returns the new state (the same object if unchanged) and events to emit."""
    if threshold < 1:
        raise ValueError("threshold must be at least 1")
    if _is_replay(streak, result):
        return streak, []
    if result.ok:
        return _on_success(streak, result, now)
    return _on_failure(streak, result, now, threshold)


def _monitor_event(
    event_type: CaseEventType, case_id: str, result: ProbeResult, now: datetime, **details: DetailValue
) -> CaseEvent:
    """A Sev1 monitor event of one case, triggered by `result` (its time is the probe's start)."""
    return CaseEvent(
        event_id=event_id_for(case_id, event_type),
        case_id=case_id,
        type=event_type,
        severity=Severity.SEV1,
        source=CaseSource.MONITOR,
        server_id=result.server_id,
        customer_id=result.customer_id,
        at=result.started_at,
        details={**details, "probe_id": result.probe_id, "detected_at": now.isoformat()},
    )


def _on_success(
    streak: ServerStreak, result: ProbeResult, now: datetime
) -> tuple[ServerStreak, list[CaseEvent]]:
    if streak.state is StreakState.OK:
        return streak, []
    reset = ServerStreak(last_change_at=result.started_at)
    if streak.state is StreakState.FAILING:
        return reset, []
    assert streak.case_id is not None
    assert streak.first_failure_at is not None
    down_s = int((result.started_at - streak.first_failure_at).total_seconds())
    recovered = _monitor_event(
        CaseEventType.SERVER_RECOVERED,
        streak.case_id,
        result,
        now,
        first_failure_at=streak.first_failure_at.isoformat(),
        outage_seconds=down_s,
        latency_ms=result.latency_ms,
    )
    return reset, [recovered]


def _on_failure(
    streak: ServerStreak, result: ProbeResult, now: datetime, threshold: int
) -> tuple[ServerStreak, list[CaseEvent]]:
    if streak.state is StreakState.OPEN:
        return streak, []
    first = streak.first_failure_at if streak.state is StreakState.FAILING else result.started_at
    assert first is not None
    failures = streak.failures + 1 if streak.state is StreakState.FAILING else 1
    if failures < threshold:
        return (
            ServerStreak(
                state=StreakState.FAILING,
                failures=failures,
                first_failure_at=first,
                last_change_at=result.started_at,
            ),
            [],
        )
    case_id = monitor_case_id(result.server_id, first)
    opened = _monitor_event(
        CaseEventType.CASE_OPENED,
        case_id,
        result,
        now,
        reason=f"{failures} consecutive failed status requests",
        failures=failures,
        threshold=threshold,
        first_failure_at=first.isoformat(),
        error_class=result.error_class,
        error_message=result.error_message,
        status_code=result.status_code,
    )
    state = ServerStreak(
        state=StreakState.OPEN,
        failures=failures,
        first_failure_at=first,
        last_change_at=result.started_at,
        case_id=case_id,
    )
    return state, [opened]
