"""Planned maintenance as the workers see it: the maintenance topic followed into a `MaintenanceBook`.

Used by the stream worker (the detector passes failures inside a window as planned) and the sink (rows
marked planned). Every such process reads the whole (single-partition, compacted) topic without a consumer
group, in a background thread, and asks `planned(server_id, customer_id, started_at)` for each probe result
it judges or stores (plain values: the sink asks for rows it decodes without building a ProbeResult). It
waits for the topic to be read to its end before it consumes results, so a restart marks what the first
pass marked. A window published less than a poll (~0.2 s) before a result is stored may miss that result;
windows are declared ahead of their start, so this matters only for a window added while it already runs.

A replayed chunk is rebuilt with the book of the moment; ClickHouse drops it by its dedup token, so the
rows of the first insert stay (marks are never rewritten). Cancelled windows still cover what happened
before the cancel (`policy.maintenance`), so late or replayed results inside them stay planned.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any

from fleetcore.compacted import CompactedFollower
from policy.maintenance import MaintenanceBook
from schemas.maintenance import MaintenanceWindow

log = logging.getLogger(__name__)


def _decode(raw: bytes) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate_json(raw)


class MaintenanceFeed:
    """A MaintenanceBook kept current from the maintenance topic; `planned` is safe from any thread."""

    def __init__(self, bootstrap: str, topic: str, name: str = "maintenance") -> None:
        self.book = MaintenanceBook()
        self.follower: CompactedFollower[MaintenanceWindow] = CompactedFollower(
            bootstrap, topic, _decode, on_update=self.book.apply, name=name
        )

    def start(self, wait_s: float, stop: threading.Event | None = None) -> bool:
        """Start following; wait up to `wait_s` (or until `stop` is set) for the topic to be read to its
        end. False if it was not read yet (results are then stored unplanned until it is)."""
        self.follower.start()
        deadline = time.monotonic() + wait_s
        caught_up = self.follower.wait_caught_up(0)
        while not caught_up and time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            caught_up = self.follower.wait_caught_up(0.1)
        if not caught_up:
            log.warning(
                "maintenance topic %s not read within %.0f s; results count as unplanned until it is",
                self.follower.topic,
                wait_s,
            )
        return caught_up

    def stop(self) -> None:
        """Stop following."""
        self.follower.stop()

    def planned(self, server_id: str, customer_id: str, started_at: datetime) -> str | None:
        """The id of the window covering a probe of `server_id` (of `customer_id`) started at
        `started_at`, or None."""
        return planned_by(self.book, self.follower.lock, server_id, customer_id, started_at)


def planned_by(
    book: MaintenanceBook, lock: Any, server_id: str, customer_id: str, started_at: datetime
) -> str | None:
    """The id of the window of `book` covering a probe of `server_id` started at `started_at`, or None."""
    if not len(book):  # no windows at all: skip the lock (the common case)
        return None
    with lock:
        window = book.covering(server_id, customer_id, started_at)
    return None if window is None else window.window_id
