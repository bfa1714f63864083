"""SLA clocks of the support policy, as data and pure functions (used by `streams.cases`).

Time is always passed in. A case carries a tuple of `SlaClock`s; `check(clocks, now)` says which crossed their
warning point (internal, never shown to the customer) or their deadline, each exactly once.

Defaults (`SlaPolicy()`, version `policy-2026-11`) are the support policy's:
- Sev1: work must start within 2 h (else the VP of Operations is paged and the customer contact called);
  a customer status update is due every hour until the case is resolved (the policy says "until closed";
  a resolved case has told the customer its resolution, and hourly "still resolved" notices until someone
  closes it would be noise, so resolve is where the hourly obligation ends; a reopen restarts it).
- Monitor-opened Sev1: the customer's technical staff are contacted at open; the hourly updates start once the
  outage has lasted 2 h (first due at open + 2 h, then every hour).
- Sev2: first response within 24 h. Sev3: first response within 48 h.
- Warnings at 75 % of a clock's budget.

Which clocks pause while the case waits on the customer: the first-response and status-update clocks (the
next move is the customer's, so the support team owes nothing meanwhile); the Sev1 work clock does not (a
Sev1 outage is worked whatever the customer does). A paused clock keeps its remaining budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetcore.errors import ConfigError
from schemas.cases import CaseSource, Severity
from schemas.envelope import validation_reason


class SlaPolicy(BaseModel):
    """One versioned set of clock budgets (the default policy, or a customer's own plan)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = "policy-2026-11"
    """Recorded on every clock, so an audit can tell which rules applied."""
    sev1_work_within: timedelta = timedelta(hours=2)
    """A Sev1 must be worked within this; else the VP of Operations is paged and the customer called."""
    sev1_update_every: timedelta = timedelta(hours=1)
    """Customer status updates of a Sev1 are due this often until it is resolved (or closed)."""
    monitor_updates_after: timedelta = timedelta(hours=2)
    """A monitor-opened Sev1's hourly updates start once the outage has lasted this long."""
    sev2_first_response: timedelta = timedelta(hours=24)
    """First response due for a Sev2 case."""
    sev3_first_response: timedelta = timedelta(hours=48)
    """First response due for a Sev3 case."""
    warn_fraction: float = Field(default=0.75, gt=0, lt=1)
    """Internal pre-breach warning at this fraction of a clock's budget."""
    uptime_target_percent: float | None = Field(default=None, gt=0, le=100)
    """Monthly uptime target of a customer's plan (reporting), if the plan sets one."""


class PolicyBook(BaseModel):
    """The default policy and per-customer plans, as loaded from a config file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: SlaPolicy = SlaPolicy()
    customers: dict[str, SlaPolicy] = Field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PolicyBook:
        """Build from a parsed config: customer plans override only the fields they name."""
        default = SlaPolicy.model_validate(data.get("default", {}))
        plans = {
            customer: SlaPolicy.model_validate({**default.model_dump(), **overrides})
            for customer, overrides in (data.get("customers") or {}).items()
        }
        return cls(default=default, customers=plans)

    def for_customer(self, customer_id: str) -> SlaPolicy:
        return self.customers.get(customer_id, self.default)


def load_policy_book(path: Path | None) -> PolicyBook:
    """The policy book from a YAML/JSON file (see examples/sla-policy.yaml), or the defaults when none is set.

    The one loader of the book: the case engine, the reports and the compose test read it the same way."""
    if path is None:
        return PolicyBook()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: an SLA policy file must be a mapping")
        return PolicyBook.from_mapping(data)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the SLA policy file {path}: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"invalid SLA policy file {path}: {validation_reason(exc)}") from exc


class ClockKind(StrEnum):
    """What a clock measures."""

    SEV1_WORK = "sev1.work"
    STATUS_UPDATE = "status.update"
    FIRST_RESPONSE = "first.response"


PAUSABLE = frozenset({ClockKind.STATUS_UPDATE, ClockKind.FIRST_RESPONSE})
"""Clocks that stop running while the case waits on the customer."""


class SlaClock(BaseModel):
    """One running (or finished) clock of one case."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClockKind
    started_at: datetime
    budget: timedelta
    policy_version: str
    warn_fraction: float = 0.75
    paused_since: datetime | None = None
    paused_for: timedelta = timedelta(0)
    stopped_at: datetime | None = None
    warned: bool = False
    breached: bool = False

    def due_at(self) -> datetime | None:
        """When it breaches, or None while paused or once stopped."""
        if self.paused_since is not None or self.stopped_at is not None:
            return None
        return self.started_at + self.paused_for + self.budget

    def warn_at(self) -> datetime | None:
        due = self.due_at()
        return None if due is None else due - self.budget * (1 - self.warn_fraction)


class AlertLevel(StrEnum):
    WARNING = "warning"
    """Internal pre-breach warning; never shown to the customer."""
    BREACH = "breach"
    """The deadline passed."""


class ClockAlert(BaseModel):
    """A clock crossed a point; the caller turns it into case events and notifications."""

    model_config = ConfigDict(frozen=True)

    kind: ClockKind
    level: AlertLevel
    due_at: datetime
    """The clock's deadline."""
    point: datetime
    """The instant that was reached: the warning point (WARNING) or the deadline (BREACH)."""


def _clock(kind: ClockKind, start: datetime, budget: timedelta, policy: SlaPolicy) -> SlaClock:
    return SlaClock(
        kind=kind,
        started_at=start,
        budget=budget,
        policy_version=policy.version,
        warn_fraction=policy.warn_fraction,
    )


def open_clocks(
    severity: Severity, source: CaseSource, at: datetime, policy: SlaPolicy
) -> tuple[SlaClock, ...]:
    """The clocks a case of this severity and source starts with at `at`."""
    if severity is Severity.SEV1:
        first_update = (
            policy.monitor_updates_after if source is CaseSource.MONITOR else policy.sev1_update_every
        )
        return (
            _clock(ClockKind.SEV1_WORK, at, policy.sev1_work_within, policy),
            _clock(ClockKind.STATUS_UPDATE, at, first_update, policy),
        )
    budget = policy.sev2_first_response if severity is Severity.SEV2 else policy.sev3_first_response
    return (_clock(ClockKind.FIRST_RESPONSE, at, budget, policy),)


def check(clocks: tuple[SlaClock, ...], now: datetime) -> tuple[tuple[SlaClock, ...], list[ClockAlert]]:
    """Alerts for every warning point and deadline reached by `now`, each once; clocks marked."""
    out, alerts = [], []
    for clock in clocks:
        due, warn = clock.due_at(), clock.warn_at()
        if due is None or warn is None:
            out.append(clock)
            continue
        if not clock.warned and now >= warn:
            alerts.append(ClockAlert(kind=clock.kind, level=AlertLevel.WARNING, due_at=due, point=warn))
            clock = clock.model_copy(update={"warned": True})
        if not clock.breached and now >= due:
            alerts.append(ClockAlert(kind=clock.kind, level=AlertLevel.BREACH, due_at=due, point=due))
            clock = clock.model_copy(update={"breached": True})
        out.append(clock)
    return tuple(out), alerts


def next_deadline(clocks: tuple[SlaClock, ...]) -> datetime | None:
    """The earliest pending warning or deadline (what a timer must wake up for), if any."""
    points = []
    for clock in clocks:
        if not clock.warned and (warn := clock.warn_at()) is not None:
            points.append(warn)
        if not clock.breached and (due := clock.due_at()) is not None:
            points.append(due)
    return min(points, default=None)


def pause(clocks: tuple[SlaClock, ...], at: datetime) -> tuple[SlaClock, ...]:
    """The case waits on the customer: pausable running clocks stop counting."""
    return tuple(
        c.model_copy(update={"paused_since": at})
        if c.kind in PAUSABLE and c.paused_since is None and c.stopped_at is None
        else c
        for c in clocks
    )


def resume(clocks: tuple[SlaClock, ...], at: datetime) -> tuple[SlaClock, ...]:
    """The customer answered: paused clocks count again, their budget intact."""
    return tuple(
        c.model_copy(update={"paused_since": None, "paused_for": c.paused_for + (at - c.paused_since)})
        if c.paused_since is not None
        else c
        for c in clocks
    )


def satisfy(
    clocks: tuple[SlaClock, ...], kind: ClockKind, at: datetime, policy: SlaPolicy
) -> tuple[SlaClock, ...]:
    """The obligation was met at `at`: work started or first response sent stops its clock; a status update
    restarts the hourly clock from `at`."""
    out = []
    for c in clocks:
        if c.kind is not kind or c.stopped_at is not None:
            out.append(c)
        elif kind is ClockKind.STATUS_UPDATE:
            out.append(_clock(kind, at, policy.sev1_update_every, policy))
        else:
            out.append(c.model_copy(update={"stopped_at": at}))
    return tuple(out)


def stop(
    clocks: tuple[SlaClock, ...], at: datetime, kinds: frozenset[ClockKind] | None = None
) -> tuple[SlaClock, ...]:
    """Stop running clocks (all, or those of `kinds`) at `at`: the case resolved or closed, or an obligation
    ended without being met (a monitor case's status updates once its server recovered)."""
    return tuple(
        c.model_copy(update={"stopped_at": at})
        if c.stopped_at is None and (kinds is None or c.kind in kinds)
        else c
        for c in clocks
    )


def change_severity(
    clocks: tuple[SlaClock, ...], severity: Severity, source: CaseSource, at: datetime, policy: SlaPolicy
) -> tuple[SlaClock, ...]:
    """Stop the running clocks and start the new severity's from `at` (Sev2 → Sev1: Sev1 clocks from now)."""
    stopped = tuple(c if c.stopped_at else c.model_copy(update={"stopped_at": at}) for c in clocks)
    return stopped + open_clocks(severity, source, at, policy)
