"""Compacted topics against a real broker: latest value per key, tombstones, bad values, a live follower."""

from __future__ import annotations

import threading

import pytest

from fleetcore.compacted import CompactedFollower, publish, read_latest
from fleetcore.errors import BrokerError
from schemas.topics import Topics
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


def decode(raw: bytes) -> str:
    text = raw.decode()
    if text.startswith("bad"):
        raise ValueError("not a value")
    return text


def test_read_latest_across_partitions_with_tombstones_and_bad_values(
    kafka_bootstrap: str, topics: Topics
) -> None:
    topic = topics.inventory  # compacted, 12 partitions: keys spread over many of them
    for n in range(30):
        publish(kafka_bootstrap, topic, f"k{n}", f"v{n}-1".encode())
    for n in range(0, 30, 3):
        publish(kafka_bootstrap, topic, f"k{n}", f"v{n}-2".encode())
    publish(kafka_bootstrap, topic, "k1", None)  # tombstone
    publish(kafka_bootstrap, topic, "k2", b"bad value")  # undecodable: the key is dropped
    errors: list[str] = []
    table = read_latest(kafka_bootstrap, topic, decode, on_error=lambda key, exc: errors.append(key))
    expected = {f"k{n}": f"v{n}-{2 if n % 3 == 0 else 1}" for n in range(30)}
    del expected["k1"], expected["k2"]
    assert table == expected
    assert errors == ["k2"]


def test_read_latest_of_an_empty_topic_is_empty(kafka_bootstrap: str, topics: Topics) -> None:
    assert read_latest(kafka_bootstrap, topics.maintenance, decode) == {}


def test_a_missing_topic_is_a_broker_error(kafka_bootstrap: str, topics: Topics) -> None:
    with pytest.raises(BrokerError, match="does not exist"):
        read_latest(kafka_bootstrap, topics.prefix + "no-such-topic", decode, timeout_s=5)


def test_follower_catches_up_then_follows_updates_and_tombstones(
    kafka_bootstrap: str, topics: Topics
) -> None:
    topic = topics.maintenance
    publish(kafka_bootstrap, topic, "a", b"1")
    publish(kafka_bootstrap, topic, "b", b"2")
    seen: list[tuple[str, str | None]] = []
    applied = threading.Event()

    def on_update(key: str, value: str | None) -> None:
        seen.append((key, value))
        applied.set()

    follower = CompactedFollower(kafka_bootstrap, topic, decode, on_update=on_update, poll_timeout_ms=50)
    follower.start()
    try:
        assert follower.wait_caught_up(30)
        assert follower.snapshot() == {"a": "1", "b": "2"}
        publish(kafka_bootstrap, topic, "a", b"3")
        publish(kafka_bootstrap, topic, "b", None)
        wait_for(lambda: follower.snapshot() == {"a": "3"}, 30, "the update and the tombstone")
        assert seen == [("a", "1"), ("b", "2"), ("a", "3"), ("b", None)]
    finally:
        follower.stop()


def test_follower_of_a_missing_topic_retries_without_dying(kafka_bootstrap: str, topics: Topics) -> None:
    follower = CompactedFollower(kafka_bootstrap, topics.prefix + "later", decode, retry_s=0.05)
    follower.start()
    try:
        assert not follower.wait_caught_up(1.0)
        assert follower._thread is not None
        assert follower._thread.is_alive()
    finally:
        follower.stop()
    assert follower._thread is None
