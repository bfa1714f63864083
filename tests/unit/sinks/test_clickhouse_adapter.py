"""The adapter with fakes: commit only after a stored chunk, retry failures, never commit past them.

Inserts run on the sink's insert thread while the consumer thread decodes on; `settle` lets the in-flight
insert finish and be committed (a poll that brings nothing waits for it)."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError

from fleetcore.clock import from_epoch_ms
from fleetcore.errors import StoreError
from fleetcore.settings import Settings
from schemas.probes import ProbeBatch, ProbeResult
from schemas.topics import Topics
from sinks.clickhouse import ClickHouseSink, backoff_s

TOPICS = Topics("u.")
PR = TOPICS.probe_results
T0_MS = 1_800_000_000_000  # a bucket boundary for 1 s buckets


class Rec(NamedTuple):
    offset: int
    timestamp: int
    value: bytes | None


class FakeClock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def now(self) -> datetime:
        return from_epoch_ms(self.ms)

    def scale(self) -> float:
        return 1.0


class FakeConsumer:
    def __init__(self) -> None:
        self.batches: list[dict[TopicPartition, list[Rec]]] = []
        self.high: dict[TopicPartition, int] = {}
        self.commits: list[tuple[str, int, int]] = []
        self.fail_commit = False
        self.committed_offsets: dict[TopicPartition, int] = {}
        self.seeks: list[tuple[TopicPartition, int | None]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.high)

    def committed(self, tp: TopicPartition) -> int | None:
        return self.committed_offsets.get(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.seeks.append((tp, None))

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Rec]]:
        return self.batches.pop(0) if self.batches else {}

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.high.get(tp)

    def commit(self, offsets: dict[TopicPartition, Any], timeout_ms: int | None = None) -> None:
        if self.fail_commit:
            raise KafkaTimeoutError("coordinator away")
        for tp, meta in offsets.items():
            self.commits.append((tp.topic, tp.partition, meta.offset))

    def close(self, autocommit: bool = False) -> None:
        pass


class Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float | None = None) -> None:
        if self.error:
            raise self.error


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.failures = 0

    def send(self, topic: str, key: bytes, value: bytes) -> Future:
        if self.failures:
            self.failures -= 1
            return Future(KafkaTimeoutError("broker away"))
        self.sent.append((topic, key, value))
        return Future(None)

    def close(self, timeout: float | None = None) -> None:
        pass


class FakeWriter:
    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.inserts: list[tuple[str, int, str]] = []
        self.failures = 0

    def insert(self, table: str, column_names: tuple[str, ...], rows: list[Any], token: str) -> None:
        if self.failures:
            self.failures -= 1
            self.events.append(f"fail {token}")
            raise StoreError("clickhouse away")
        self.inserts.append((table, len(rows), token))
        self.events.append(f"insert {token}")


def make_sink(max_rows: int = 10) -> tuple[ClickHouseSink, FakeConsumer, FakeProducer, FakeWriter, FakeClock]:
    settings = Settings(topic_prefix=TOPICS.prefix, sink_chunk_max_rows=max_rows, sink_chunk_seconds=1)
    clock = FakeClock(T0_MS)
    sink = ClickHouseSink(settings, client=None, clock=clock, grace_ms=100, retry_base_s=0.001)  # type: ignore[arg-type]
    consumer, producer = FakeConsumer(), FakeProducer()
    events: list[str] = []
    writer = FakeWriter(events)
    real_commit = consumer.commit

    def commit(offsets: dict[TopicPartition, Any], timeout_ms: int | None = None) -> None:
        real_commit(offsets, timeout_ms)
        events.extend(f"commit {tp.partition}@{m.offset}" for tp, m in offsets.items())

    consumer.commit = commit  # type: ignore[method-assign]
    sink._consumer = consumer  # type: ignore[assignment]
    sink._producer = producer  # type: ignore[assignment]
    sink.writer = writer  # type: ignore[assignment]
    return sink, consumer, producer, writer, clock


def batch(n: int, partition: int = 0) -> bytes:
    results = [
        ProbeResult(
            server_id="srv-a",
            customer_id="c",
            probe_id=f"srv-a@{n}-{i}",
            started_at=datetime(2026, 11, 1, tzinfo=UTC),
            latency_ms=1,
            ok=True,
            worker_id="w",
        )
        for i in range(n)
    ]
    return (
        ProbeBatch(batch_id="b", worker_id="w", partition=partition, results=results)
        .model_dump_json()
        .encode()
    )


def tp(p: int = 0) -> TopicPartition:
    return TopicPartition(PR, p)


def settle(sink: ClickHouseSink, stop: threading.Event | None = None) -> None:
    """Poll (nothing more to read) until no insert is in flight."""
    deadline = time.monotonic() + 10
    while sink._inflight is not None:
        assert time.monotonic() < deadline, "the in-flight insert never finished"
        sink.poll_once(stop or threading.Event())


class BlockingWriter(FakeWriter):
    """An insert that does not return until `release` is set."""

    def __init__(self, events: list[str]) -> None:
        super().__init__(events)
        self.release = threading.Event()
        self.entered = threading.Event()

    def insert(self, table: str, column_names: tuple[str, ...], rows: list[Any], token: str) -> None:
        self.entered.set()
        assert self.release.wait(10), "never released"
        super().insert(table, column_names, rows, token)


def test_rows_cut_chunks_are_inserted_then_committed_in_order() -> None:
    sink, consumer, _, writer, _ = make_sink(max_rows=10)
    consumer.batches = [{tp(): [Rec(o, T0_MS + o, batch(4)) for o in range(6)]}]
    consumer.high = {tp(): 6}
    assert sink.poll_once(threading.Event()) == 6
    settle(sink)
    assert writer.events == [f"insert {PR}-0-0-2", "commit 0@3", f"insert {PR}-0-3-5", "commit 0@6"]
    assert writer.inserts[0] == ("probe_results", 12, f"{PR}-0-0-2")
    assert sink.idle()


def test_open_chunk_waits_for_bucket_end_and_high_watermark() -> None:
    sink, consumer, _, writer, clock = make_sink(max_rows=100)
    stop = threading.Event()
    consumer.batches = [{tp(): [Rec(0, T0_MS + 10, batch(1))]}]
    consumer.high = {tp(): 2}  # one more message the consumer has not read
    sink.poll_once(stop)
    clock.ms = T0_MS + 5000
    sink.poll_once(stop)
    assert writer.events == []  # not caught up
    consumer.high = {tp(): 1}
    clock.ms = T0_MS + 1099  # bucket end + grace not reached
    sink.poll_once(stop)
    assert writer.events == []
    clock.ms = T0_MS + 1100
    sink.poll_once(stop)
    assert writer.events == [f"insert {PR}-0-0-0", "commit 0@1"]


def test_failed_insert_is_retried_and_committed_only_after_success() -> None:
    sink, consumer, _, writer, _ = make_sink(max_rows=1)
    writer.failures = 3
    consumer.batches = [{tp(): [Rec(0, T0_MS, batch(1)), Rec(1, T0_MS, batch(1))]}]
    sink.poll_once(threading.Event())
    settle(sink)
    assert writer.events == [
        f"fail {PR}-0-0-0",
        f"fail {PR}-0-0-0",
        f"fail {PR}-0-0-0",
        f"insert {PR}-0-0-0",
        "commit 0@1",
        f"insert {PR}-0-1-1",
        "commit 0@2",
    ]
    assert sink.stats.insert_failures == 3


def test_stop_during_retries_abandons_the_chunk_uncommitted() -> None:
    sink, consumer, _, writer, _ = make_sink(max_rows=1)
    writer.failures = 10**6
    stop = threading.Event()
    original = writer.insert

    def insert_then_stop(*args: Any) -> None:
        stop.set()
        original(*args)

    writer.insert = insert_then_stop  # type: ignore[method-assign]
    consumer.batches = [{tp(): [Rec(0, T0_MS, batch(1))]}]
    sink.poll_once(stop)
    assert consumer.commits == []
    assert not sink.idle()
    sink.close()
    assert sink.idle()


def test_malformed_messages_are_dead_lettered_before_commit_and_empty_chunks_commit() -> None:
    sink, consumer, producer, writer, clock = make_sink(max_rows=100)
    consumer.batches = [{tp(2): [Rec(0, T0_MS, b"garbage"), Rec(1, T0_MS, None)]}]
    consumer.high = {tp(2): 2}
    clock.ms = T0_MS + 5000
    producer.failures = 1  # the first delivery fails: retried, commit waits
    sink.poll_once(threading.Event())
    settle(sink)
    assert writer.inserts == []  # no rows
    assert consumer.commits == [(PR, 2, 2)]
    keys = [k.decode() for _, k, _ in producer.sent]
    assert set(keys) == {f"{PR}:2:0", f"{PR}:2:1"}  # at least once: the failed round is sent again
    assert all(t == TOPICS.dead_letter for t, _, _ in producer.sent)
    assert sink.stats.dead_letters == 2


def test_commit_failure_is_logged_and_the_loop_goes_on() -> None:
    sink, consumer, _, writer, _ = make_sink(max_rows=1)
    consumer.fail_commit = True
    consumer.batches = [{tp(): [Rec(0, T0_MS, batch(1))]}, {tp(): [Rec(1, T0_MS, batch(1))]}]
    stop = threading.Event()
    sink.poll_once(stop)
    settle(sink, stop)
    consumer.fail_commit = False
    sink.poll_once(stop)
    settle(sink, stop)
    assert [e for e in writer.events if e.startswith("insert")] == [
        f"insert {PR}-0-0-0",
        f"insert {PR}-0-1-1",
    ]
    assert consumer.commits == [(PR, 0, 2)]
    assert sink.stats.commit_failures == 1


def test_reassigned_partition_drops_its_open_chunk() -> None:
    sink, consumer, _, writer, _ = make_sink(max_rows=100)
    stop = threading.Event()
    consumer.batches = [{tp(): [Rec(0, T0_MS, batch(1)), Rec(1, T0_MS, batch(1))]}]
    sink.poll_once(stop)
    sink._rebalances.on_partitions_revoked([tp()])
    sink._rebalances.on_partitions_assigned([tp()])
    consumer.batches = [{tp(): [Rec(0, T0_MS, batch(1))]}]  # re-read from the committed offset
    sink.poll_once(stop)
    chunks = sink.chunker.open_chunks()
    assert [(c.first_offset, c.last_offset) for c in chunks] == [(0, 0)]
    assert writer.events == []


def test_unknown_topics_are_ignored_and_until_stops_the_run() -> None:
    sink, consumer, _, _, _ = make_sink(max_rows=1)
    consumer.batches = [
        {TopicPartition("other", 0): [Rec(0, T0_MS, b"x")]},
        {tp(): [Rec(0, T0_MS, batch(1))]},
    ]
    stats = sink.run(threading.Event(), until=lambda s: s.rows.get("probe_results", 0) >= 1)
    assert stats.messages == 1
    assert stats.rows == {"probe_results": 1}


def test_burst_run_stops_when_idle_and_drained() -> None:
    sink, consumer, _, writer, clock = make_sink(max_rows=100)
    consumer.batches = [{tp(): [Rec(0, T0_MS, batch(1))]}]
    consumer.high = {tp(): 1}
    polls = 0

    def advance(timeout_ms: int = 0) -> dict[TopicPartition, list[Rec]]:
        nonlocal polls
        polls += 1
        clock.ms += 600
        return consumer.batches.pop(0) if consumer.batches else {}

    consumer.poll = advance  # type: ignore[method-assign]
    stats = sink.run(threading.Event(), max_idle_s=0)
    assert writer.events == [f"insert {PR}-0-0-0", "commit 0@1"]
    assert stats.chunks == 1
    assert polls >= 2


@pytest.mark.parametrize(("attempt", "expected"), [(1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (100, 30.0)])
def test_backoff_doubles_up_to_a_cap(attempt: int, expected: float) -> None:
    assert backoff_s(attempt, 0.5) == expected


def test_a_decoder_bug_dead_letters_the_message_instead_of_losing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    sink, consumer, producer, _, clock = make_sink(max_rows=1)

    def broken(*_: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setitem(sink.routes, PR, dataclasses.replace(sink.routes[PR], decode=broken))
    consumer.batches = [{tp(): [Rec(0, T0_MS, batch(1)), Rec(1, T0_MS, batch(1))]}]
    consumer.high = {tp(): 2}
    clock.ms = T0_MS + 5000
    sink.poll_once(threading.Event())
    settle(sink)
    assert sink.stats.dead_letters == 2
    assert "cannot decode" in producer.sent[0][2].decode()
    assert consumer.commits == [(PR, 0, 2)]


def test_unexpected_error_rewinds_to_the_committed_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    sink, consumer, _, writer, _ = make_sink(max_rows=100)
    consumer.high = {tp(0): 5, tp(1): 5}
    consumer.committed_offsets = {tp(0): 3}
    consumer.batches = [{tp(0): [Rec(3, T0_MS, batch(1))]}]
    calls = 0
    real_due = sink.chunker.due

    def due_fails_once(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("unexpected")
        return real_due(*args)

    monkeypatch.setattr(sink.chunker, "due", due_fails_once)
    stop = threading.Event()
    sink.run(stop, until=lambda s: calls >= 2)
    assert sorted(consumer.seeks) == [(tp(0), 3), (tp(1), None)]
    assert sink.chunker.open_chunks() == []
    assert writer.inserts == []


def blocking_sink(max_rows: int) -> tuple[ClickHouseSink, FakeConsumer, BlockingWriter]:
    sink, consumer, _, writer, _ = make_sink(max_rows=max_rows)
    blocking = BlockingWriter(writer.events)
    sink.writer = blocking  # type: ignore[assignment]
    return sink, consumer, blocking


def test_a_chunk_is_committed_only_after_its_insert_returned_while_decoding_goes_on() -> None:
    sink, consumer, writer = blocking_sink(max_rows=2)
    stop = threading.Event()
    consumer.batches = [
        {tp(): [Rec(0, T0_MS, batch(1)), Rec(1, T0_MS, batch(1))]},  # closes chunk 0-1
        {tp(): [Rec(2, T0_MS, batch(1))]},  # decoded while chunk 0-1 is being inserted
    ]
    sink.poll_once(stop)
    assert writer.entered.wait(10)
    sink.poll_once(stop)
    assert sink.stats.messages == 3
    assert consumer.commits == []  # the insert has not returned: nothing committed, nothing counted
    assert sink.stats.rows == {}
    assert sink.stats.chunks == 0
    assert not sink.idle()
    writer.release.set()
    settle(sink)
    assert writer.events == [f"insert {PR}-0-0-1", "commit 0@2"]
    assert sink.stats.rows == {"probe_results": 2}
    assert sink.stats.chunks == 1


def test_a_failing_insert_in_flight_is_retried_and_never_committed_before_it_succeeds() -> None:
    sink, consumer, writer = blocking_sink(max_rows=1)
    writer.failures = 2
    writer.release.set()
    consumer.batches = [{tp(): [Rec(0, T0_MS, batch(1)), Rec(1, T0_MS, batch(1))]}]
    sink.poll_once(threading.Event())
    settle(sink)
    assert writer.events == [
        f"fail {PR}-0-0-0",
        f"fail {PR}-0-0-0",
        f"insert {PR}-0-0-0",
        "commit 0@1",
        f"insert {PR}-0-1-1",
        "commit 0@2",
    ]


def test_rebalance_with_a_chunk_in_flight_awaits_it_and_does_not_commit_it() -> None:
    sink, consumer, writer = blocking_sink(max_rows=2)
    stop = threading.Event()
    consumer.batches = [{tp(): [Rec(0, T0_MS, batch(1)), Rec(1, T0_MS, batch(1))]}]
    sink.poll_once(stop)
    assert writer.entered.wait(10)
    revoking = threading.Thread(target=sink._rebalances.on_partitions_revoked, args=([tp()],))
    revoking.start()
    revoking.join(0.3)
    assert revoking.is_alive()  # the revoke waits for the in-flight insert before the partition moves on
    writer.release.set()
    revoking.join(10)
    assert not revoking.is_alive()
    sink._rebalances.on_partitions_assigned([tp()])
    consumer.batches = [{}]
    sink.poll_once(stop)  # applies the rebalance: the stored chunk stays uncommitted
    assert consumer.commits == []
    assert sink.stats.chunks == 0
    assert sink.idle()
    consumer.batches = [{tp(): [Rec(0, T0_MS, batch(1)), Rec(1, T0_MS, batch(1))]}]  # replay from the commit
    sink.poll_once(stop)
    settle(sink, stop)
    # the same chunk and token again (ClickHouse drops the repeat), committed once
    assert writer.events == [f"insert {PR}-0-0-1", f"insert {PR}-0-0-1", "commit 0@2"]
    assert sink.stats.rows == {"probe_results": 2}


def test_rewind_and_close_with_a_chunk_in_flight_commit_nothing() -> None:
    sink, consumer, writer = blocking_sink(max_rows=1)
    consumer.high = {tp(): 2}
    consumer.batches = [{tp(): [Rec(0, T0_MS, batch(1))]}]
    sink.poll_once(threading.Event())
    assert writer.entered.wait(10)
    writer.release.set()
    sink.rewind()
    assert consumer.commits == []
    assert sink.idle()
    assert consumer.seeks == [(tp(), None)]
    writer.release.clear()
    writer.entered.clear()
    consumer.batches = [{tp(): [Rec(0, T0_MS, batch(1))]}]
    sink.poll_once(threading.Event())
    assert writer.entered.wait(10)
    writer.release.set()
    sink.close()
    assert consumer.commits == []
    assert sink.idle()


def test_closed_chunks_of_other_partitions_queue_behind_the_insert_and_commit_in_order() -> None:
    sink, consumer, writer = blocking_sink(max_rows=1)
    stop = threading.Event()
    consumer.batches = [{tp(0): [Rec(0, T0_MS, batch(1))], tp(1): [Rec(0, T0_MS, batch(1))]}]
    sink.poll_once(stop)  # p0's chunk in flight, p1's queued: decoding did not wait for the insert
    assert writer.entered.wait(10)
    assert sink.stats.messages == 2
    assert consumer.commits == []
    writer.release.set()
    settle(sink, stop)
    assert writer.events == [f"insert {PR}-0-0-0", "commit 0@1", f"insert {PR}-1-0-0", "commit 1@1"]
