"""Redundancy-aware severity: one server of a redundant group down is Sev2; the whole group down is Sev1.

Pure policy code (no Kafka, Faust or aiohttp; time passed in). `Detector` is what the detector agent calls
once per probe result: it applies `streams.detector.observe` and, when `redundancy_aware` is on (off by
default: the support policy says Sev1), decides how severe a new monitor case is.

A secondary names its primary in `Server.backup_of` (copied onto its `ProbeResult`s). The *group* of a
primary is the primary and its secondaries; a server's *partners* are the other members of its group. The
probe worker partitions results by `backup_of or server_id`, so a whole group lands on one probe-results
partition and one detector task: the decision reads the partners' streaks through the same table, with no
cross-worker reads, and sees a group's results in the order they were produced. Redundancy is one level deep:
a secondary of a secondary is keyed by its direct primary only and is not a partner of the top primary.

Rules (redundancy on):

* A partner *serves* when its streak is not OPEN, its last result was not a planned (maintenance) failure, and
  it was heard from recently: its latest result started at most `partner_horizon` before the result being
  decided. The last condition is fail-safe: a partner removed from the inventory, or not heard from since the
  worker started, cannot turn a real outage into a Sev2; the case then opens Sev1, as the policy says.
* A server reaching the threshold while a partner serves opens Sev2 ("a single server; its partner serves").
* A server reaching the threshold while no partner serves opens Sev1, and every partner's open Sev2 case gets
  a CHANGE_SEVERITY to Sev1 (command id `pair-sev1:<partner case>`, deterministic), so the partner's case gets
  Sev1 clocks from that moment. A partner going down for planned maintenance (its first planned failure) does
  the same for the group's open Sev2 cases when no other member serves: the customer has no server left.
* Severity never goes down here (a recovered partner does not downgrade a Sev1 case; staff can).

Redundancy off: every case opens Sev1 and nothing is indexed.

The group index (secondary -> primary and back) is learned from results (`ProbeResult.backup_of`) and from
restored table rows (`learn`; rows carry `backup_of` whenever the redundancy-aware detector writes them). It
holds one entry per secondary, and `last seen` one timestamp per server, so both are bounded by the servers
of the fleet seen since the worker started.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from schemas.cases import Severity
from schemas.commands import CaseCommand, CommandType
from schemas.probes import ProbeResult
from streams.detector import ACTOR, INITIAL, ServerStreak, StreakState, is_replay, observe

DEFAULT_PARTNER_HORIZON = timedelta(minutes=40)
"""How recently a partner must have been heard from to count as serving: the 15-minute probe cadence with
its 10% jitter, twice over, plus shipping slack. Callers with another cadence pass their own."""

StreakLookup = Callable[[str], ServerStreak | None]
"""The current streak of a server (None: no row, i.e. never seen failing). Must include the changes returned
by earlier `observe` calls that the caller has not written to its table yet."""


class Detector:
    """The detector agent's per-result decision: streak transitions, commands, redundancy-aware severity."""

    def __init__(
        self,
        threshold: int,
        redundancy_aware: bool,
        partner_horizon: timedelta = DEFAULT_PARTNER_HORIZON,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        if partner_horizon <= timedelta(0):
            raise ValueError("partner_horizon must be positive")
        self.threshold = threshold
        self.redundancy_aware = redundancy_aware
        self.partner_horizon = partner_horizon
        self._primary_of: dict[str, str] = {}
        self._secondaries: dict[str, set[str]] = {}
        self._seen: dict[str, datetime] = {}

    def learn(self, server_id: str, streak: ServerStreak) -> None:
        """Index a table row restored at start-up (its `backup_of`, if any)."""
        if self.redundancy_aware:
            self._link(server_id, streak.backup_of)

    def partners(self, server_id: str) -> list[str]:
        """The other members of the server's group, as far as known (sorted)."""
        primary = self._primary_of.get(server_id, server_id)
        group = {primary, *self._secondaries.get(primary, ())}
        group.discard(server_id)
        return sorted(group)

    def observe(
        self, get: StreakLookup, result: ProbeResult, now: datetime, planned: bool = False
    ) -> tuple[dict[str, ServerStreak], list[CaseCommand]]:
        """Apply one result. Returns the streaks that changed (server id -> new streak; possibly partners'
        too) and the commands to send, in order. `planned`: a failure inside a maintenance window."""
        server_id = result.server_id
        before = get(server_id) or INITIAL
        if is_replay(before, result):
            return {}, []
        after, commands = observe(before, result, now, self.threshold, planned)
        if not self.redundancy_aware:
            return ({server_id: after} if after is not before else {}), commands
        self._note(result)
        if after is not before and after.backup_of != result.backup_of:
            after = after.model_copy(update={"backup_of": result.backup_of})
        changed = {server_id: after} if after is not before else {}
        opened = after.state is StreakState.OPEN and before.state is not StreakState.OPEN
        went_planned_down = after.planned_down and not before.planned_down
        if not (opened or went_planned_down):
            return changed, commands
        partners = self.partners(server_id)
        serving = [p for p in partners if self._serves(get(p), p, result.started_at)]
        if opened and serving:
            changed[server_id] = after.model_copy(update={"severity": Severity.SEV2})
            return changed, [_as_sev2(c, serving) for c in commands]
        if serving:
            return changed, commands  # down for maintenance, but another member still serves
        if opened and partners:
            why = "; ".join(f"{p} {self._why_not(get(p), p, result.started_at)}" for p in partners)
            commands = [_noting_partners_down(c, why) for c in commands]
        for partner in partners:
            streak = get(partner)
            if streak is None or streak.state is not StreakState.OPEN or streak.case_id is None:
                continue
            if streak.severity is not Severity.SEV2:
                continue
            changed[partner] = streak.model_copy(update={"severity": Severity.SEV1})
            commands.append(_upgrade(partner, streak.case_id, server_id, now, planned=not opened))
        return changed, commands

    # -- the group index ---------------------------------------------------------------------------------
    def _note(self, result: ProbeResult) -> None:
        server_id = result.server_id
        seen = self._seen.get(server_id)
        if seen is None or result.started_at > seen:
            self._seen[server_id] = result.started_at
        if self._primary_of.get(server_id) != result.backup_of:
            self._link(server_id, result.backup_of)

    def _link(self, server_id: str, primary: str | None) -> None:
        old = self._primary_of.pop(server_id, None)
        if old is not None:
            siblings = self._secondaries.get(old)
            if siblings is not None:
                siblings.discard(server_id)
                if not siblings:
                    del self._secondaries[old]
        if primary is not None and primary != server_id:
            self._primary_of[server_id] = primary
            self._secondaries.setdefault(primary, set()).add(server_id)

    def _serves(self, streak: ServerStreak | None, server_id: str, at: datetime) -> bool:
        return self._why_not(streak, server_id, at) == ""

    def _why_not(self, streak: ServerStreak | None, server_id: str, at: datetime) -> str:
        """Why a partner does not serve at `at` ("" when it serves)."""
        streak = streak or INITIAL
        if streak.state is StreakState.OPEN:
            return "is down (case open)"
        if streak.planned_down:
            return "is down for planned maintenance"
        seen = self._seen.get(server_id)
        if seen is None or at - seen > self.partner_horizon:
            return "was not heard from recently"
        return ""


def _as_sev2(command: CaseCommand, serving: list[str]) -> CaseCommand:
    if command.type is not CommandType.OPEN:
        return command
    who = ", ".join(serving)
    return command.model_copy(
        update={
            "severity": Severity.SEV2,
            "reason": f"{command.reason}; a single server: its partner {who} serves",
            "details": {**command.details, "serving_partners": who},
        }
    )


def _noting_partners_down(command: CaseCommand, why: str) -> CaseCommand:
    if command.type is not CommandType.OPEN:
        return command
    return command.model_copy(
        update={
            "reason": f"{command.reason}; no partner serves: {why}",
            "details": {**command.details, "partners_down": why},
        }
    )


def _upgrade(partner: str, case_id: str, server_id: str, now: datetime, planned: bool) -> CaseCommand:
    """Sev1 for `partner`'s open Sev2 case: `server_id`, its last serving partner, went down too."""
    how = "is down for planned maintenance" if planned else "is down too"
    return CaseCommand(
        command_id=f"pair-sev1:{case_id}",
        case_id=case_id,
        type=CommandType.CHANGE_SEVERITY,
        at=now,
        actor=ACTOR,
        severity=Severity.SEV1,
        server_id=partner,
        reason=f"{partner} is down and its partner {server_id} {how}: no server serves; Sev1 from now",
        details={"partner_server_id": server_id},
    )
