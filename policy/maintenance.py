"""Planned maintenance: which window, if any, covers a server at a moment. Pure: `at` is passed in.

A window's occurrences are `[starts_at + k * period, ends_at + k * period)` for k = 0, 1, ... (period one
day or one week, fixed in UTC: no daylight-saving shifts), and only those starting before `until`; a
one-off window has just k = 0. Start inclusive, end exclusive. Because an occurrence is shorter than its
period, at most one occurrence of a window covers a moment, found with one division.

A cancelled window no longer applies at or after `cancelled_at`, but still covers earlier moments, so a
replay of old probe results gives the same answer as the first pass did.

A window with a `server_id` covers that server; one without covers every server of its customer.
`MaintenanceBook` indexes windows by server and by customer, so a lookup costs O(windows of that server
and of its customer), which is what the detector and the sink pay per failed result.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from schemas.maintenance import MaintenanceWindow, Recurrence

PERIODS: dict[Recurrence, timedelta] = {
    Recurrence.DAILY: timedelta(days=1),
    Recurrence.WEEKLY: timedelta(days=7),
}
"""Length of each recurrence's period."""


class Occurrence(NamedTuple):
    """One occurrence of a window: start inclusive, end exclusive."""

    start: datetime
    end: datetime


class WindowStatus(StrEnum):
    """Where a window stands at a moment (for listings)."""

    ACTIVE = "active"
    """An occurrence covers the moment."""
    UPCOMING = "upcoming"
    """No occurrence covers the moment, a later one will."""
    CANCELLED = "cancelled"
    """Cancelled at or before the moment."""
    PAST = "past"
    """Not cancelled, and every occurrence is over."""


def _occurrence(window: MaintenanceWindow, k: int) -> Occurrence | None:
    """The k-th occurrence (k >= 0) if the schedule has one."""
    period = PERIODS.get(window.recurrence)
    if period is None:
        return Occurrence(window.starts_at, window.ends_at) if k == 0 else None
    start = window.starts_at + k * period
    if window.until is not None and start >= window.until:
        return None
    return Occurrence(start, window.ends_at + k * period)


def _index_at(window: MaintenanceWindow, at: datetime) -> int:
    """The number of the last occurrence starting at or before `at` (`at` not before the first start)."""
    period = PERIODS.get(window.recurrence)
    if period is None:
        return 0
    return (at - window.starts_at) // period


def occurrence_at(window: MaintenanceWindow, at: datetime) -> Occurrence | None:
    """The occurrence of the window's schedule covering `at`, ignoring cancellation; None if none does."""
    if at < window.starts_at:
        return None
    found = _occurrence(window, _index_at(window, at))
    if found is None or at >= found.end:
        return None
    return found


def applies(window: MaintenanceWindow, at: datetime) -> bool:
    """True if the window covers `at`: an occurrence covers it and it was not cancelled by then."""
    if window.cancelled_at is not None and at >= window.cancelled_at:
        return False
    return occurrence_at(window, at) is not None


def concerns(window: MaintenanceWindow, server_id: str, customer_id: str) -> bool:
    """True if the window is about this server (its own window, or a window of its whole customer)."""
    if window.server_id is not None:
        return window.server_id == server_id
    return window.customer_id == customer_id


def _preference(window: MaintenanceWindow) -> tuple[bool, str]:
    """Order among several covering windows: a server's own window first, then by window id."""
    return (window.server_id is None, window.window_id)


def covering(
    windows: Iterable[MaintenanceWindow], server_id: str, customer_id: str, at: datetime
) -> MaintenanceWindow | None:
    """The window among `windows` that covers this server at `at`, or None.

    Several may: a server's own window wins over a customer-wide one, then the smallest window id, so
    the answer does not depend on the order windows arrived in.
    """
    best: MaintenanceWindow | None = None
    for window in windows:
        if not concerns(window, server_id, customer_id) or not applies(window, at):
            continue
        if best is None or _preference(window) < _preference(best):
            best = window
    return best


def current_or_next(window: MaintenanceWindow, at: datetime) -> Occurrence | None:
    """The schedule's occurrence covering `at`, else the next one to start after it; None if none is left.

    Ignores cancellation (see `status`).
    """
    if at < window.starts_at:
        return _occurrence(window, 0)
    k = _index_at(window, at)
    found = _occurrence(window, k)
    if found is not None and at < found.end:
        return found
    return _occurrence(window, k + 1)


def status(window: MaintenanceWindow, at: datetime) -> WindowStatus:
    """Where the window stands at `at`."""
    if window.cancelled_at is not None and window.cancelled_at <= at:
        return WindowStatus.CANCELLED
    scheduled = current_or_next(window, at)
    if scheduled is None:
        return WindowStatus.PAST
    if at >= scheduled.start:
        return WindowStatus.ACTIVE
    return WindowStatus.UPCOMING


def still_relevant(window: MaintenanceWindow, at: datetime) -> bool:
    """True while the window is worth listing: an occurrence is running or to come, or, for a cancelled
    window, until the occurrence it cancelled (running or next at cancel time) would have ended."""
    ref = at
    if window.cancelled_at is not None and window.cancelled_at <= at:
        ref = window.cancelled_at
    scheduled = current_or_next(window, ref)
    return scheduled is not None and at < scheduled.end


class MaintenanceBook:
    """The current windows, indexed for `covering(server, customer, at)`. Not thread-safe: guard it."""

    def __init__(self, windows: Iterable[MaintenanceWindow] = ()) -> None:
        self._by_id: dict[str, MaintenanceWindow] = {}
        self._by_server: dict[str, dict[str, MaintenanceWindow]] = {}
        self._by_customer: dict[str, dict[str, MaintenanceWindow]] = {}
        for window in windows:
            self.upsert(window)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, window_id: object) -> bool:
        return window_id in self._by_id

    def get(self, window_id: str) -> MaintenanceWindow | None:
        """The window with this id, if known."""
        return self._by_id.get(window_id)

    def windows(self) -> list[MaintenanceWindow]:
        """Every window, by window id."""
        return [self._by_id[k] for k in sorted(self._by_id)]

    def _bucket(self, window: MaintenanceWindow) -> tuple[dict[str, dict[str, MaintenanceWindow]], str]:
        if window.server_id is not None:
            return self._by_server, window.server_id
        return self._by_customer, window.customer_id

    def upsert(self, window: MaintenanceWindow) -> None:
        """Add a window, or replace the one with its id (whose scope may have changed)."""
        self.remove(window.window_id)
        self._by_id[window.window_id] = window
        index, key = self._bucket(window)
        index.setdefault(key, {})[window.window_id] = window

    def remove(self, window_id: str) -> None:
        """Forget a window (a tombstone on the topic); unknown ids are ignored."""
        old = self._by_id.pop(window_id, None)
        if old is None:
            return
        index, key = self._bucket(old)
        bucket = index.get(key)
        if bucket is not None:
            bucket.pop(window_id, None)
            if not bucket:
                del index[key]

    def apply(self, window_id: str, window: MaintenanceWindow | None) -> None:
        """Apply one record of the compacted topic: a window, or None (tombstone) to remove it."""
        if window is None:
            self.remove(window_id)
        else:
            self.upsert(window)

    def covering(self, server_id: str, customer_id: str, at: datetime) -> MaintenanceWindow | None:
        """The window covering this server at `at` (see module `covering` for the tie-break), or None."""
        own = self._by_server.get(server_id)
        wide = self._by_customer.get(customer_id)
        if own is None and wide is None:
            return None
        candidates = [*(own.values() if own else ()), *(wide.values() if wide else ())]
        return covering(candidates, server_id, customer_id, at)
