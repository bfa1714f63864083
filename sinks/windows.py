"""The maintenance windows table kept equal to the maintenance topic the sink follows.

The sink already follows the (compacted) maintenance topic to mark planned probes
(`policy.maintenance_feed`). `WindowWriter` writes that table into ``maintenance_windows``: every window
as it arrives, again when it changes (a cancellation sets `cancelled_at`), and a ``deleted`` row when its
key leaves the topic (a tombstone, or a key gone after a re-read). Idempotent: it loads what the store
holds at start and writes only differences, so a restart, which re-reads the whole topic, writes nothing
new. Each write carries a larger `version` (sink clock, ms), so the table's ReplacingMergeTree keeps the
latest; read it with FINAL (deleted windows are hidden then).

It runs in its own thread with its own client, polling the follower's update counter every `interval_s`
(0.2 s): a window is in the table well within a second of reaching the topic. A failed write is logged
and retried at the next round; it never stops the sink.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from fleetcore.clock import Clock, SystemClock, to_epoch_ms
from fleetcore.compacted import CompactedFollower
from fleetcore.errors import StoreError
from history.ddl import MAINTENANCE_COLUMNS, MAINTENANCE_WINDOWS
from schemas.maintenance import MaintenanceWindow

log = logging.getLogger(__name__)

RESYNC_ROUNDS = 50
"""Compare the whole table every this many rounds even without updates (cheap: no write if equal)."""

Row = tuple[Any, ...]
"""A maintenance_windows row without its version (what the writer compares)."""


def _ms(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_epoch_ms(moment)


def window_row(window: MaintenanceWindow) -> Row:
    """The stored row of a window (times as epoch ms), version excluded."""
    return (
        window.window_id,
        window.server_id,
        window.customer_id,
        _ms(window.starts_at),
        _ms(window.ends_at),
        window.recurrence.value,
        _ms(window.until),
        window.reason,
        window.created_by,
        _ms(window.created_at),
        _ms(window.cancelled_at),
        window.cancelled_by,
        0,
    )


def deleted_row(window_id: str) -> Row:
    """The row that removes a window from the table (FINAL hides it)."""
    return (window_id, None, "", 0, 0, "none", None, "", "", 0, None, None, 1)


def stored_row(values: tuple[Any, ...]) -> Row:
    """A row read back from the table (version excluded) in `window_row` form."""
    wid, server, customer, starts, ends, rec, until, reason, by, created, cancelled, cancel_by, gone = values
    return (
        str(wid),
        server,
        str(customer),
        _ms(starts),
        _ms(ends),
        str(rec),
        _ms(until),
        str(reason),
        str(by),
        _ms(created),
        _ms(cancelled),
        cancel_by,
        int(gone),
    )


class WindowWriter:
    """Writes the differences between the followed topic and the maintenance_windows table."""

    def __init__(
        self,
        client: Client,
        follower: CompactedFollower[MaintenanceWindow],
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.follower = follower
        self.clock = clock or SystemClock()
        self.stored: dict[str, Row] = {}
        """window_id -> the row the table holds (deleted windows excluded)."""
        self.written = 0
        """Rows written so far."""
        self._version = 0
        self._loaded = False

    def load(self) -> None:
        """Read what the table holds (latest row per window) and its highest version."""
        names = ", ".join(MAINTENANCE_COLUMNS[:-1])
        try:
            rows = self.client.query(f"SELECT {names} FROM {MAINTENANCE_WINDOWS} FINAL").result_rows  # noqa: S608
            top = self.client.query(f"SELECT max(version) FROM {MAINTENANCE_WINDOWS}").result_rows  # noqa: S608
        except Exception as exc:
            raise StoreError(f"cannot read {MAINTENANCE_WINDOWS}: {exc}") from exc
        self.stored = {str(r[0]): stored_row(tuple(r)) for r in rows}
        self._version = int(top[0][0] or 0)
        self._loaded = True

    def _next_version(self) -> int:
        self._version = max(self._version + 1, to_epoch_ms(self.clock.now()))
        return self._version

    def changes(self) -> dict[str, Row]:
        """window_id -> row to write, for every window that differs from the table."""
        table = self.follower.snapshot()
        out: dict[str, Row] = {}
        for window_id, window in table.items():
            row = window_row(window)
            if self.stored.get(window_id) != row:
                out[window_id] = row
        if self.follower.caught_up.is_set():  # only a complete read says a key is gone
            for window_id in self.stored:
                if window_id not in table:
                    out[window_id] = deleted_row(window_id)
        return out

    def sync(self) -> int:
        """Write every difference in one insert; return the rows written. StoreError if the write fails."""
        if not self._loaded:
            self.load()
        changes = self.changes()
        if not changes:
            return 0
        rows = [[*row, self._next_version()] for _, row in sorted(changes.items())]
        try:
            self.client.insert(MAINTENANCE_WINDOWS, rows, column_names=list(MAINTENANCE_COLUMNS))
        except Exception as exc:
            raise StoreError(f"cannot write {len(rows)} maintenance window(s): {exc}") from exc
        for window_id, row in changes.items():
            if row[-1]:
                self.stored.pop(window_id, None)
            else:
                self.stored[window_id] = row
        self.written += len(rows)
        log.info("sink: %d maintenance window row(s) written", len(rows))
        return len(rows)

    def run(self, stop: threading.Event, interval_s: float = 0.2) -> None:
        """Sync whenever the follower applied updates (or finished a read) until `stop` is set."""
        seen: tuple[int, bool] | None = None
        rounds = 0
        while not stop.is_set():
            now_seen = (self.follower.updates, self.follower.caught_up.is_set())
            rounds += 1
            if now_seen != seen or rounds % RESYNC_ROUNDS == 0:  # resync: a re-read may drop keys silently
                try:
                    self.sync()
                    seen = now_seen
                except Exception:
                    log.exception("sink: maintenance windows not written; retrying")
            stop.wait(interval_s)
