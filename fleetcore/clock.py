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
