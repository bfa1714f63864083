"""The chunker cuts the same chunks whatever the poll boundaries, and after a crash and replay."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from sinks.chunker import Chunk, Chunker, ChunkPolicy, Cut, PartitionChunker

POLICY = ChunkPolicy(max_rows=10, bucket_ms=1000, grace_ms=200)


def signature(chunks: list[Chunk[int]]) -> list[tuple[str, int, int, int, int]]:
    return [(c.token, c.first_offset, c.last_offset, c.rows, c.items[0]) for c in chunks]


# -- the three cut rules ------------------------------------------------------------------------------


def test_rows_cut_includes_the_message_that_reaches_max_rows() -> None:
    part: PartitionChunker[int] = PartitionChunker("t", 0, POLICY)
    assert part.add(0, 100, 4, 0) == []
    assert part.add(1, 100, 4, 1) == []
    closed = part.add(2, 100, 4, 2)
    assert len(closed) == 1
    chunk = closed[0]
    assert (chunk.first_offset, chunk.last_offset, chunk.rows, chunk.cut) == (0, 2, 12, Cut.ROWS)
    assert chunk.items == [0, 1, 2]
    assert chunk.token == "t-0-0-2"
    assert chunk.next_offset == 3
    assert part.open_chunk is None
    assert part.next_offset == 3


def test_bucket_cut_when_next_message_is_in_another_bucket() -> None:
    part: PartitionChunker[int] = PartitionChunker("t", 3, POLICY)
    assert part.add(7, 1999, 1, 7) == []
    closed = part.add(8, 2000, 1, 8)
    assert [(c.first_offset, c.last_offset, c.cut) for c in closed] == [(7, 7, Cut.BUCKET)]
    assert closed[0].bucket == 1
    open_chunk = part.open_chunk
    assert open_chunk is not None
    assert (open_chunk.first_offset, open_chunk.bucket) == (8, 2)


def test_bucket_then_rows_cut_in_one_add() -> None:
    part: PartitionChunker[int] = PartitionChunker("t", 0, POLICY)
    part.add(0, 0, 3, 0)
    closed = part.add(1, 5000, 50, 1)
    assert [(c.first_offset, c.last_offset, c.cut) for c in closed] == [(0, 0, Cut.BUCKET), (1, 1, Cut.ROWS)]


def test_single_message_over_max_rows_is_its_own_chunk() -> None:
    part: PartitionChunker[int] = PartitionChunker("t", 0, POLICY)
    closed = part.add(0, 0, 500, 0)
    assert [(c.first_offset, c.last_offset, c.rows) for c in closed] == [(0, 0, 500)]


def test_zero_row_messages_still_form_chunks() -> None:
    part: PartitionChunker[int] = PartitionChunker("t", 0, POLICY)
    part.add(0, 0, 0, 0)
    part.add(1, 10, 0, 1)
    chunk = part.cut_if_idle(now_ms=1200, caught_up=True)
    assert chunk is not None
    assert (chunk.rows, chunk.messages, chunk.cut) == (0, 2, Cut.IDLE)


def test_idle_cut_needs_caught_up_and_bucket_end_plus_grace() -> None:
    part: PartitionChunker[int] = PartitionChunker("t", 0, POLICY)
    part.add(0, 1500, 1, 0)
    assert part.cut_if_idle(now_ms=1900, caught_up=True) is None  # bucket not over
    assert part.cut_if_idle(now_ms=2199, caught_up=True) is None  # within grace
    assert part.cut_if_idle(now_ms=9000, caught_up=False) is None  # more messages to read
    chunk = part.cut_if_idle(now_ms=2200, caught_up=True)
    assert chunk is not None
    assert chunk.cut is Cut.IDLE
    assert part.cut_if_idle(now_ms=9000, caught_up=True) is None  # nothing open


def test_empty_chunker_is_never_idle_cut() -> None:
    part: PartitionChunker[int] = PartitionChunker("t", 0, POLICY)
    assert part.cut_if_idle(now_ms=10**12, caught_up=True) is None


def test_rewind_drops_open_chunk_and_restarts_at_the_offset() -> None:
    part: PartitionChunker[int] = PartitionChunker("t", 0, POLICY)
    part.add(10, 0, 1, 10)
    part.add(11, 0, 1, 11)
    assert part.add(10, 0, 1, 10) == []  # repositioned to the committed offset 10
    chunk = part.open_chunk
    assert chunk is not None
    assert (chunk.first_offset, chunk.last_offset, chunk.items) == (10, 10, [10])


def test_offset_gap_keeps_the_chunk() -> None:
    part: PartitionChunker[int] = PartitionChunker("t", 0, POLICY)
    part.add(10, 0, 1, 10)
    part.add(13, 0, 1, 13)  # e.g. transaction markers in between
    chunk = part.cut_if_idle(now_ms=5000, caught_up=True)
    assert chunk is not None
    assert chunk.token == "t-0-10-13"


def test_reset_returns_the_dropped_chunk_and_forgets_the_position() -> None:
    part: PartitionChunker[int] = PartitionChunker("t", 0, POLICY)
    part.add(5, 0, 1, 5)
    dropped = part.reset()
    assert dropped is not None
    assert dropped.first_offset == 5
    assert part.next_offset is None
    assert part.open_chunk is None
    assert part.reset() is None


def test_negative_rows_rejected() -> None:
    part: PartitionChunker[int] = PartitionChunker("t", 0, POLICY)
    with pytest.raises(ValueError, match="rows"):
        part.add(0, 0, -1, 0)


@pytest.mark.parametrize(("max_rows", "bucket_ms", "grace_ms"), [(0, 1000, 0), (1, 0, 0), (1, 1000, -1)])
def test_policy_validation(max_rows: int, bucket_ms: int, grace_ms: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        ChunkPolicy(max_rows=max_rows, bucket_ms=bucket_ms, grace_ms=grace_ms)


def test_negative_timestamps_bucket_consistently() -> None:
    assert POLICY.bucket(-1) == -1
    assert POLICY.bucket(0) == 0
    assert POLICY.bucket(999) == 0
    assert POLICY.bucket(1000) == 1


# -- the multi-partition chunker ---------------------------------------------------------------------


def test_partitions_are_independent() -> None:
    chunker: Chunker[int] = Chunker(POLICY)
    assert chunker.add("a", 0, 0, 0, 6, 0) == []
    assert chunker.add("a", 1, 0, 0, 6, 0) == []
    assert chunker.add("b", 0, 0, 0, 6, 0) == []
    closed = chunker.add("a", 0, 1, 0, 6, 1)
    assert [c.token for c in closed] == ["a-0-0-1"]
    assert sorted(c.token for c in chunker.open_chunks()) == ["a-1-0-0", "b-0-0-0"]
    assert chunker.positions() == {("a", 0): 2, ("a", 1): 1, ("b", 0): 1}


def test_due_asks_caught_up_per_partition() -> None:
    chunker: Chunker[int] = Chunker(POLICY)
    chunker.add("a", 0, 0, 0, 1, 0)
    chunker.add("a", 1, 4, 0, 1, 4)
    asked: list[tuple[str, int, int]] = []

    def caught_up(topic: str, partition: int, next_offset: int) -> bool:
        asked.append((topic, partition, next_offset))
        return partition == 1

    due = chunker.due(now_ms=5000, caught_up=caught_up)
    assert [c.token for c in due] == ["a-1-4-4"]
    assert sorted(asked) == [("a", 0, 1), ("a", 1, 5)]
    assert chunker.due(now_ms=5000, caught_up=lambda *_: True)[0].token == "a-0-0-0"
    assert chunker.due(now_ms=5000, caught_up=lambda *_: True) == []


def test_reset_partition_and_reset_all() -> None:
    chunker: Chunker[int] = Chunker(POLICY)
    chunker.add("a", 0, 0, 0, 1, 0)
    chunker.add("a", 1, 0, 0, 1, 0)
    dropped = chunker.reset("a", 0)
    assert dropped is not None
    assert dropped.token == "a-0-0-0"
    assert chunker.reset("a", 0) is None
    assert [c.token for c in chunker.reset_all()] == ["a-1-0-0"]
    assert chunker.open_chunks() == []
    assert chunker.positions() == {}


# -- determinism under different poll boundaries, and across a crash -----------------------------------


@dataclass(frozen=True)
class Msg:
    offset: int
    append_ms: int
    rows: int


def make_log(rng: random.Random, count: int) -> list[Msg]:
    """A partition log: LogAppendTime timestamps (non-decreasing), bursts and quiet gaps."""
    out: list[Msg] = []
    now = 1_700_000_000_000
    for offset in range(count):
        now += rng.choice([0, 0, 1, 5, 50, 300, 999, 1000, 2500])
        out.append(Msg(offset, now, rng.choice([0, 1, 3, 4, 7, 10, 25])))
    return out


def consume(
    log: list[Msg], rng: random.Random, policy: ChunkPolicy, start: int = 0, stop_after: int | None = None
) -> tuple[list[Chunk[int]], int]:
    """Consume `log` from `start` with random poll sizes and poll times; return (chunks, committed offset).

    Poll times advance with the broker: at each poll the consumer sees what was appended by then
    (the high watermark), at most `max_records` of it. `stop_after` crashes after that many chunks
    (the open chunk is lost; the last closed one is stored but maybe not committed).
    """
    part: PartitionChunker[int] = PartitionChunker("p", 0, policy)
    chunks: list[Chunk[int]] = []
    committed = start
    position = start
    clock = log[start].append_ms if start < len(log) else 0
    while position < len(log) or part.open_chunk is not None:
        clock += rng.choice([0, 1, 10, 100, 400, 1000, 3000])
        highwater = sum(1 for m in log if m.append_ms <= clock)
        take = min(rng.choice([1, 2, 3, 5, 50, 500]), highwater - position)
        for m in log[position : position + take]:
            for chunk in part.add(m.offset, m.append_ms, m.rows, m.offset):
                chunks.append(chunk)
                if stop_after is not None and len(chunks) >= stop_after:
                    return chunks, committed if rng.random() < 0.5 else chunk.next_offset
                committed = chunk.next_offset
        position += take
        chunk = part.cut_if_idle(clock, caught_up=position >= highwater)
        if chunk is not None:
            chunks.append(chunk)
            committed = chunk.next_offset
    return chunks, committed


@pytest.mark.parametrize("seed", range(40))
def test_same_messages_different_poll_boundaries_same_chunks(seed: int) -> None:
    log = make_log(random.Random(seed), 300)
    reference, _ = consume(log, random.Random(1000 + seed), POLICY)
    for trial in range(5):
        again, _ = consume(log, random.Random(seed * 100 + trial), POLICY)
        assert signature(again) == signature(reference)
    # every message in exactly one chunk, in order
    offsets = [o for c in reference for o in range(c.first_offset, c.last_offset + 1)]
    assert offsets == list(range(len(log)))
    for c in reference:
        assert len({POLICY.bucket(log[o].append_ms) for o in range(c.first_offset, c.last_offset + 1)}) == 1
        assert c.rows - log[c.last_offset].rows < POLICY.max_rows


@pytest.mark.parametrize("seed", range(40))
def test_crash_and_replay_from_committed_offset_rebuilds_the_same_chunks(seed: int) -> None:
    rng = random.Random(seed)
    log = make_log(rng, 300)
    reference, _ = consume(log, random.Random(seed + 1), POLICY)
    stored: list[Chunk[int]] = []
    start = 0
    restarts = 0
    while start < len(log):
        chunks, committed = consume(log, rng, POLICY, start=start, stop_after=rng.randint(1, 6))
        stored.extend(chunks)
        start = committed
        restarts += 1
        assert restarts < 1000
    by_token = {c.token: c for c in stored}
    # replays repeat chunks, but each repeat has the same token (so ClickHouse drops it) ...
    assert sorted(by_token) == sorted(c.token for c in reference)
    for c in stored:
        assert signature([c]) == signature([by_token[c.token]])
    # ... and distinct tokens never overlap: every offset lands exactly once
    offsets = sorted(o for c in by_token.values() for o in range(c.first_offset, c.last_offset + 1))
    assert offsets == list(range(len(log)))


def test_without_the_caught_up_guard_an_idle_cut_would_split_a_bucket() -> None:
    """Why rule (c) needs the high watermark: messages of the bucket may still be unread."""
    log = [Msg(0, 1000, 1), Msg(1, 1500, 1)]
    part: PartitionChunker[int] = PartitionChunker("p", 0, POLICY)
    part.add(0, log[0].append_ms, 1, 0)
    # the wall clock is past the bucket, but offset 1 (same bucket) is not read yet: no cut
    assert part.cut_if_idle(now_ms=5000, caught_up=False) is None
    part.add(1, log[1].append_ms, 1, 1)
    chunk = part.cut_if_idle(now_ms=5000, caught_up=True)
    assert chunk is not None
    assert chunk.token == "p-0-0-1"
