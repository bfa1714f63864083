"""The stream worker's tables behind one small adapter: the one place that knows Faust table internals.

The agents keep their state in Faust tables (changelog-backed, partitioned like their source topic) but write
them in a way Faust's public mapping API does not offer: a take's changes are written once, after the broker
acknowledged the take's outputs, outside any single event, each to an explicit changelog partition (the
source partition of the message that changed it). That needs private parts of Faust:

* `Table.data`: the local store (the memory store's dict), written without Faust's `on_key_set`, which would
  pick the changelog partition from the *current* event and fail outside one;
* `Table.send_changelog(partition, key, value)`: the changelog write to that partition (a tombstone is a
  `None` value with the "raw" serializer, as Faust's own `del table[key]` writes);
* `Table._new_changelog_topic()`: the table constructor refuses `value_serializer` and builds its changelog
  topic with "json"; `new_table` sets the codec and rebuilds the topic so restored rows decode as the model;
* `App.assignor.assigned_actives()`: the partitions of a source topic this worker owns (`active_partitions`,
  for scans over the rows of those partitions only).

Nothing else in `streams/` touches those; `tests/unit/streams/test_tables.py` is the contract test that runs
this adapter against a real Faust table (so a Faust upgrade that changes them fails there, not in production).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

import faust

V = TypeVar("V")


def new_table(app: faust.App, name: str, partitions: int, serializer: str | None) -> Any:
    """A Faust table of str keys (missing keys read as None) whose values use the codec `serializer`."""
    table: Any = app.Table(name, default=None, partitions=partitions, key_type=str)
    if serializer is not None:
        # The constructor rejects value_serializer and has already built its changelog topic with "json":
        # set the codec, then rebuild the changelog topic so restored rows decode as the model too.
        table.value_serializer = serializer
        table.changelog_topic = table._new_changelog_topic()
    return table


def active_partitions(app: faust.App, topic: str) -> set[int]:
    """The partitions of `topic` assigned to this worker as active (not standby)."""
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}


class TableStore(Generic[V]):
    """Reads and partition-explicit writes of one Faust table (str keys; a missing key reads as None).

    `put`/`delete` change the local row at once and queue its changelog record to `partition` (the source
    partition whose message changed it). Reads see only the rows this worker holds: the partitions assigned to
    it (no standby replicas are configured)."""

    def __init__(self, table: Any) -> None:
        self.table = table
        """The Faust table itself (for Faust's own wiring: its name, its changelog topic)."""

    def get(self, key: str) -> V | None:
        """The row of `key`, or None."""
        value: V | None = self.table.get(key)
        return value

    def __getitem__(self, key: str) -> V:
        """The row of `key`; KeyError when there is none."""
        value: V = self.table[key]
        return value

    def __contains__(self, key: object) -> bool:
        return key in self.table.data

    def __len__(self) -> int:
        return len(self.table.data)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.table.data))

    def items(self) -> list[tuple[str, V]]:
        """A snapshot of the rows this worker holds (safe to iterate while the table changes)."""
        return list(self.table.data.items())

    def values(self) -> list[V]:
        """A snapshot of the values this worker holds."""
        return list(self.table.data.values())

    def put(self, partition: int, key: str, value: V) -> None:
        """Write `key`'s row and queue its changelog record to `partition`."""
        self.table.data[key] = value
        self.table.send_changelog(partition, key, value)

    def delete(self, partition: int, key: str) -> None:
        """Remove `key`'s row and queue a tombstone to `partition` (compaction then drops the key)."""
        self.table.data.pop(key, None)
        self.table.send_changelog(partition, key, None, value_serializer="raw")
