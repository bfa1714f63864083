"""WindowWriter: maintenance_windows follows the followed topic's table, writes only differences, hides
removed windows, and a restart (a new writer on the same store) writes nothing new."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from fleetcore.compacted import CompactedFollower
from history.ddl import migrate
from history.store import connect
from schemas.maintenance import MaintenanceWindow
from sinks.windows import WindowWriter

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class FixedClock:
    def now(self) -> datetime:
        return T0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Client]:
    client = connect(f"chdb://{tmp_path / 'clickhouse'}", "fleetwatch")
    migrate(client)
    try:
        yield client
    finally:
        client.close()


def window(window_id: str, **extra: Any) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate(
        {
            "window_id": window_id,
            "customer_id": "acme",
            "starts_at": T0,
            "ends_at": T0 + timedelta(hours=1),
            "created_by": "ops",
            "created_at": T0 - timedelta(days=1),
            **extra,
        }
    )


def follower(*windows: MaintenanceWindow, caught_up: bool = True) -> CompactedFollower[MaintenanceWindow]:
    """A follower that is never started: its table is set by the test."""
    f: CompactedFollower[MaintenanceWindow] = CompactedFollower(
        "127.0.0.1:1", "unused", MaintenanceWindow.model_validate_json
    )
    f.table = {w.window_id: w for w in windows}
    if caught_up:
        f.caught_up.set()
    return f


def stored(client: Client) -> dict[str, tuple[Any, ...]]:
    rows = client.query(
        "SELECT window_id, server_id, ends_at, recurrence, until, cancelled_at, cancelled_by "
        "FROM maintenance_windows FINAL ORDER BY window_id"
    ).result_rows
    return {str(r[0]): tuple(r[1:]) for r in rows}


def test_windows_are_written_updated_and_removed(store: Client) -> None:
    weekly = window("mw-2", recurrence="weekly", until=T0 + timedelta(days=30))
    follow = follower(window("mw-1", server_id="srv-a"), weekly)
    writer = WindowWriter(store, follow, FixedClock())
    assert writer.sync() == 2
    assert writer.sync() == 0  # nothing changed: nothing written
    got = stored(store)
    assert set(got) == {"mw-1", "mw-2"}
    assert (got["mw-1"][0], got["mw-1"][5]) == ("srv-a", None)
    assert (got["mw-2"][2], got["mw-2"][0]) == ("weekly", None)

    follow.table["mw-1"] = window("mw-1", server_id="srv-a", cancelled_at=T0, cancelled_by="bob")
    del follow.table["mw-2"]
    assert writer.sync() == 2
    got = stored(store)
    assert set(got) == {"mw-1"}  # the removed window is hidden
    assert (got["mw-1"][4].replace(tzinfo=UTC), got["mw-1"][5]) == (T0, "bob")
    versions = store.query("SELECT version FROM maintenance_windows ORDER BY version").result_rows
    assert len({v[0] for v in versions}) == 4  # every write has its own, later version


def test_a_restart_writes_nothing_for_unchanged_windows(store: Client) -> None:
    windows = (window("mw-1"), window("mw-2", server_id="srv-b", reason="disk swap"))
    assert WindowWriter(store, follower(*windows), FixedClock()).sync() == 2
    again = WindowWriter(store, follower(*windows), FixedClock())
    assert again.sync() == 0
    assert store.query("SELECT count() FROM maintenance_windows").result_rows[0][0] == 2
    changed = WindowWriter(store, follower(windows[0], window("mw-2", server_id="srv-b")), FixedClock())
    assert changed.sync() == 1  # the reason changed


def test_keys_are_removed_only_after_a_complete_read(store: Client) -> None:
    WindowWriter(store, follower(window("mw-1"), window("mw-2")), FixedClock()).sync()
    reading = follower(window("mw-1"), caught_up=False)
    writer = WindowWriter(store, reading, FixedClock())
    assert writer.sync() == 0  # mw-2 may still come
    assert set(stored(store)) == {"mw-1", "mw-2"}
    reading.caught_up.set()
    assert writer.sync() == 1
    assert set(stored(store)) == {"mw-1"}
