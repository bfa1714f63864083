"""CompactedFollower without Kafka: a re-read after a failure keeps the old table until caught up."""

from __future__ import annotations

from typing import Any, NamedTuple

from kafka import TopicPartition

from fleetcore.compacted import CompactedFollower


class Rec(NamedTuple):
    offset: int
    key: bytes | None
    value: bytes | None


class FakeConsumer:
    """One partition holding `records`; handed out one record per poll."""

    def __init__(
        self, records: list[Rec], follower: CompactedFollower[str], seen_during: list[dict[str, str]]
    ):
        self.records = records
        self.pos = 0
        self.follower = follower
        self.seen_during = seen_during

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def assign(self, tps: list[TopicPartition]) -> None:
        pass

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.pos = 0

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.records) for tp in tps}

    def position(self, tp: TopicPartition) -> int:
        return self.pos

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        self.seen_during.append(dict(self.follower.table))
        if self.pos >= len(self.records):
            self.follower._stop.set()  # caught up: end the pass
            return {}
        record = self.records[self.pos]
        self.pos += 1
        return {TopicPartition("t", 0): [record]}


def test_reread_keeps_old_values_while_reading_then_drops_keys_the_topic_lost() -> None:
    updates: list[tuple[str, str | None]] = []
    follower: CompactedFollower[str] = CompactedFollower(
        "unused:1", "t", bytes.decode, on_update=lambda k, v: updates.append((k, v))
    )
    follower.table.update({"gone": "x", "kept": "old"})  # what a previous pass had read
    snapshots: list[dict[str, str]] = []
    records = [Rec(0, b"kept", b"new"), Rec(1, None, b"keyless"), Rec(2, b"added", b"1")]
    assert follower._follow(FakeConsumer(records, follower, snapshots))
    assert snapshots[1] == {"gone": "x", "kept": "new"}  # no gap: "gone" still answers while re-reading
    assert follower.table == {"kept": "new", "added": "1"}
    assert updates == [("kept", "new"), ("added", "1"), ("gone", None)]
    assert follower.caught_up.is_set()


def test_bad_value_drops_the_key_and_is_reported() -> None:
    errors: list[str] = []

    def decode(raw: bytes) -> str:
        if raw == b"bad":
            raise ValueError("bad")
        return raw.decode()

    follower: CompactedFollower[str] = CompactedFollower(
        "unused:1", "t", decode, on_error=lambda key, exc: errors.append(key)
    )
    records = [Rec(0, b"a", b"1"), Rec(1, b"a", b"bad"), Rec(2, b"b", b"2")]
    follower._follow(FakeConsumer(records, follower, []))
    assert follower.table == {"b": "2"}
    assert errors == ["a"]
