"""Planned maintenance windows: failures inside one open no monitor case and are marked planned.

Key on the maintenance topic (compacted): window_id. A cancelled window stays on the topic with
`cancelled_at` set, so the history can still tell what was planned when.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import Field, model_validator

from schemas.base import Contract, UtcDatetime
from schemas.inventory import ID_PATTERN


class Recurrence(StrEnum):
    """How a window repeats."""

    NONE = "none"
    DAILY = "daily"
    WEEKLY = "weekly"


class MaintenanceWindow(Contract):
    """One planned outage window, for one server or for all servers of one customer."""

    window_id: str = Field(pattern=ID_PATTERN)
    server_id: str | None = Field(default=None, pattern=ID_PATTERN)
    """The server concerned; None: every server of `customer_id`."""
    customer_id: str = Field(pattern=ID_PATTERN)
    starts_at: UtcDatetime
    """Start of the (first) occurrence."""
    ends_at: UtcDatetime
    """End of the (first) occurrence (exclusive)."""
    recurrence: Recurrence = Recurrence.NONE
    until: UtcDatetime | None = None
    """Recurring windows: no occurrence starts at or after this (None: forever)."""
    reason: str = Field(default="", max_length=2000)
    created_by: str = Field(min_length=1, max_length=200)
    created_at: UtcDatetime
    cancelled_at: UtcDatetime | None = None
    """Set when the window was cancelled; it no longer applies from then on."""
    cancelled_by: str | None = Field(default=None, max_length=200)
    """Who cancelled it (set with `cancelled_at`)."""

    @model_validator(mode="after")
    def _check(self) -> MaintenanceWindow:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        length = self.ends_at - self.starts_at
        period = {Recurrence.DAILY: timedelta(days=1), Recurrence.WEEKLY: timedelta(days=7)}
        if self.recurrence in period and length >= period[self.recurrence]:
            raise ValueError(f"a {self.recurrence.value} window must be shorter than its period")
        return self
