"""The outage detector: N consecutive failed probes of one server ask the case engine to open a case.

Pure policy code: no Kafka, Faust or aiohttp; time is passed in. One transition function,
`observe(streak, result, now, threshold, planned) -> (streak, commands)`, over explicit states:

    OK --fail--> FAILING(1..N-1) --Nth fail--> OPEN --success--> OK (+ server_recovered)
                  |  success                     ^ failures: no change
                  v                              |
                  OK (no command)

The detector does not write the case topic: it sends `CaseCommand`s (`open`, `server_recovered`) to the case
engine, the only writer of that topic. A command's `at` is `now` (the engine's clock); the probe's own time
travels in its details (`probe_started_at`).

* Replay-safe: a result not newer than the last state-changing result is ignored, so results re-read after a
  crash (offsets not yet committed) change nothing; the case id is derived from the outage (server id + first
  failed probe's start) and command ids from the case id (`open:<case>`, `recovered:<case>`), so even a replay
  from an empty state re-sends the same ids, which the engine applies at most once.
* Planned maintenance: a failure inside a maintenance window (`planned=True`, decided by the caller) neither
  counts nor resets the streak and never opens a case; a success is handled the same, planned or not. A
  planned failure does record itself (`last_change_at`, `planned_down`): the verdict "planned" is then taken
  once, and a replay after the window was cancelled (or declared late) cannot re-decide it and count a failure
  the first pass did not count. It also tells a redundancy partner that this server is down, if as planned
  (`streams.redundancy`). The cost is one table write per planned failure (maintenance is rare).
* Write-light: `observe` returns the very same `streak` object when nothing changed; callers write their table
  only when the returned object is not the one they passed in. A healthy server produces no writes, and an
  open outage's further failures produce none either.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.cases import CaseSource, Severity, monitor_case_id
from schemas.commands import CaseCommand, CommandType
from schemas.probes import ProbeResult

DEFAULT_THRESHOLD = 10
"""The support policy: 10 or more failed status requests in sequence open a Severity 1 case."""

ACTOR = "monitor"
"""The actor of every command the detector sends."""


class StreakState(StrEnum):
    """Where a server stands in the detector."""

    OK = "ok"
    """Last counted probe passed (or never probed)."""
    FAILING = "failing"
    """1..threshold-1 consecutive counted failures, no case yet."""
    OPEN = "open"
    """Threshold reached; a monitor case is open for this outage."""


class ServerStreak(BaseModel):
    """Detector state of one server (the value of the stream worker's streak table).

    Fields are only ever added, with defaults: the changelog holds serialized rows of older versions.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    state: StreakState = StreakState.OK
    """Current state."""
    failures: int = Field(default=0, ge=0)
    """Consecutive failures counted (planned ones are not; stops counting once the case is open)."""
    first_failure_at: datetime | None = None
    """Start of the first failed probe of the current outage."""
    last_change_at: datetime | None = None
    """Start of the last probe that changed this state; older or equal results are replays and ignored."""
    case_id: str | None = None
    """The open monitor case, in state OPEN."""
    severity: Severity | None = None
    """The open case's severity, in state OPEN: Sev1, or Sev2 while a redundancy partner serves."""
    planned_down: bool = False
    """The last result was a failure inside a maintenance window: not counted; the server is not serving."""
    backup_of: str | None = None
    """For a secondary: the primary it backs up, as its results said (kept by the redundancy-aware detector
    whenever the row is written, so the pairs are known again after a restart)."""


INITIAL = ServerStreak()
"""The state of a server never seen failing."""


def is_replay(streak: ServerStreak, result: ProbeResult) -> bool:
    """Whether `result` is not newer than the last result that changed `streak` (a replay: ignored)."""
    return streak.last_change_at is not None and result.started_at <= streak.last_change_at


def observe(
    streak: ServerStreak,
    result: ProbeResult,
    now: datetime,
    threshold: int = DEFAULT_THRESHOLD,
    planned: bool = False,
) -> tuple[ServerStreak, list[CaseCommand]]:
    """Apply one probe result. Returns the new state (the same object if unchanged) and commands to send.

    `planned`: the result is a failure inside a maintenance window (ignored for a success).
    """
    if threshold < 1:
        raise ValueError("threshold must be at least 1")
    if is_replay(streak, result):
        return streak, []
    if result.ok:
        return _on_success(streak, result, now)
    if planned:
        return _on_planned_failure(streak, result), []
    return _on_failure(streak, result, now, threshold)


def open_title(server_id: str, failures: int) -> str:
    """The title (and reason) of a monitor case."""
    return f"{server_id} down: {failures} consecutive failed status requests"


def _on_success(
    streak: ServerStreak, result: ProbeResult, now: datetime
) -> tuple[ServerStreak, list[CaseCommand]]:
    if streak.state is StreakState.OK and not streak.planned_down:
        return streak, []
    reset = ServerStreak(last_change_at=result.started_at, backup_of=streak.backup_of)
    if streak.state is not StreakState.OPEN:
        return reset, []
    assert streak.case_id is not None
    assert streak.first_failure_at is not None
    down_s = int((result.started_at - streak.first_failure_at).total_seconds())
    recovered = CaseCommand(
        command_id=f"recovered:{streak.case_id}",
        case_id=streak.case_id,
        type=CommandType.SERVER_RECOVERED,
        at=now,
        actor=ACTOR,
        reason=f"{result.server_id} passed a status request again after {down_s} s down",
        source=CaseSource.MONITOR,
        customer_id=result.customer_id,
        server_id=result.server_id,
        details={
            "outage_seconds": down_s,
            "first_failure_at": streak.first_failure_at.isoformat(),
            "probe_id": result.probe_id,
            "probe_started_at": result.started_at.isoformat(),
            "latency_ms": result.latency_ms,
        },
    )
    return reset, [recovered]


def _on_planned_failure(streak: ServerStreak, result: ProbeResult) -> ServerStreak:
    if streak.state is StreakState.OPEN:
        return streak  # the outage's case is open already; a window starting now changes nothing
    return streak.model_copy(update={"last_change_at": result.started_at, "planned_down": True})


def _on_failure(
    streak: ServerStreak, result: ProbeResult, now: datetime, threshold: int
) -> tuple[ServerStreak, list[CaseCommand]]:
    if streak.state is StreakState.OPEN:
        return streak, []
    first = streak.first_failure_at if streak.state is StreakState.FAILING else result.started_at
    assert first is not None
    failures = streak.failures + 1 if streak.state is StreakState.FAILING else 1
    if failures < threshold:
        failing = ServerStreak(
            state=StreakState.FAILING,
            failures=failures,
            first_failure_at=first,
            last_change_at=result.started_at,
            backup_of=streak.backup_of,
        )
        return failing, []
    case_id = monitor_case_id(result.server_id, first)
    title = open_title(result.server_id, failures)
    opened = CaseCommand(
        command_id=f"open:{case_id}",
        case_id=case_id,
        type=CommandType.OPEN,
        at=now,
        actor=ACTOR,
        reason=title,
        source=CaseSource.MONITOR,
        customer_id=result.customer_id,
        partner_id=result.partner_id,
        server_id=result.server_id,
        severity=Severity.SEV1,
        title=title,
        details={
            "failures": failures,
            "threshold": threshold,
            "first_failure_at": first.isoformat(),
            "probe_id": result.probe_id,
            "probe_started_at": result.started_at.isoformat(),
            "error_class": result.error_class,
            "error_message": result.error_message,
            "status_code": result.status_code,
        },
    )
    state = ServerStreak(
        state=StreakState.OPEN,
        failures=failures,
        first_failure_at=first,
        last_change_at=result.started_at,
        case_id=case_id,
        severity=Severity.SEV1,
        backup_of=streak.backup_of,
    )
    return state, [opened]
