"""The runtime clock. Decision code never reads the clock: it is given `now` by its caller, who asks this.

`SystemClock` is wall time. `ScaledClock` runs faster than wall time from a fixed origin (e.g. factor 60:
one real minute is one policy hour) for demos and integration tests.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Anything that can say what time it is (timezone-aware UTC)."""

    def now(self) -> datetime:
        """The current time, UTC."""
        ...

    def scale(self) -> float:
        """How many policy seconds pass per real second (1.0 for wall time)."""
        ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def scale(self) -> float:
        return 1.0


class ScaledClock:
    """Time that runs `factor` times faster than wall time, starting at `origin` (default: now)."""

    def __init__(self, factor: float, origin: datetime | None = None) -> None:
        if factor <= 0:
            raise ValueError("clock factor must be positive")
        self._factor = factor
        self._origin = origin or datetime.now(UTC)
        self._start = time.monotonic()

    def now(self) -> datetime:
        elapsed = time.monotonic() - self._start
        return self._origin + timedelta(seconds=elapsed * self._factor)

    def scale(self) -> float:
        return self._factor


def to_epoch_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch of an aware datetime."""
    return int(moment.timestamp() * 1000)


def from_epoch_ms(ms: int) -> datetime:
    """Aware UTC datetime from milliseconds since the Unix epoch."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def clock_for(scale: float, origin_ms: int = 0) -> Clock:
    """The runtime clock a process uses: wall time at scale 1, else a scaled clock.

    With `origin_ms` set, every process computes the same scaled time, `origin + (wall - origin) * scale`,
    so a stack of processes started at different moments agrees on "now" (`fleetwatch up` passes one origin
    to all of them). Without it the scaled clock starts at this process's start.
    """
    if scale == 1.0:
        return SystemClock()
    if not origin_ms:
        return ScaledClock(scale)
    origin = from_epoch_ms(origin_ms)
    wall = datetime.now(UTC)
    return ScaledClock(scale, origin=origin + (wall - origin) * scale)
