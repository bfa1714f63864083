"""Case events: the audit log of the support process, one topic keyed by case id."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import IntEnum, StrEnum

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


class CaseEventType(StrEnum):
    """What happened to a case."""

    CASE_OPENED = "case.opened"
    """A case was opened (by the monitor: at the Nth consecutive failed probe)."""
    SERVER_RECOVERED = "server.recovered"
    """The monitored server passed a probe again after its case opened."""


class CaseEvent(Contract):
    """One event of one case. Key on the case topic: case_id. Ids are deterministic, so replays dedupe."""

    event_id: str = Field(min_length=1, max_length=100)
    """Deterministic id: the same event replayed after a crash has the same id."""
    case_id: str = Field(min_length=1, max_length=100)
    """Deterministic case id; a monitor case is derived from its outage (server + first failed probe)."""
    type: CaseEventType
    """What happened."""
    severity: Severity
    """The case's severity after this event."""
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


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def monitor_case_id(server_id: str, first_failure_at: datetime) -> str:
    """The id of the monitor case of one outage: the same outage always yields the same id."""
    return "mon-" + _digest("monitor", server_id, first_failure_at.isoformat())[:20]


def event_id_for(case_id: str, event_type: CaseEventType, discriminator: str = "") -> str:
    """Deterministic event id: case, event type and what makes this event unique within the case."""
    return "evt-" + _digest(case_id, event_type.value, discriminator)[:24]
