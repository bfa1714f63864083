"""Deterministic per-partition chunks: the unit of one ClickHouse insert and one offset commit.

A chunk starts at the partition's committed offset and takes consecutive messages. It is cut when

(a) ``rows`` reaches ``max_rows`` (the message that reaches it is the chunk's last), or
(b) the next message's broker timestamp falls in another time bucket (``bucket_ms``) than the chunk's
    first message, or
(c) the consumer has read everything the broker has (high watermark) and the wall clock is past the chunk's
    bucket end plus ``grace_ms``.

(a) and (b) depend only on the messages. (c) cuts exactly where (b) would: with LogAppendTime, a message
appended after the bucket ended carries a later bucket, so it cannot join the chunk anyway. Hence a replay
after a crash (from the same committed offset, with any poll sizes) rebuilds the same chunks, and the
insert dedup token ``{topic}-{partition}-{first_offset}-{last_offset}`` makes a repeated insert a no-op.
(c) assumes the broker's and the sink's clocks agree within ``grace_ms``.

Pure: no Kafka import; time is passed in as epoch milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class Cut(StrEnum):
    """Why a chunk was closed."""

    ROWS = "rows"
    """It reached max_rows."""
    BUCKET = "bucket"
    """The next message belongs to a later (or earlier) time bucket."""
    IDLE = "idle"
    """Caught up with the partition and its bucket is over."""


@dataclass(frozen=True)
class ChunkPolicy:
    """How chunks are cut."""

    max_rows: int
    """Rows at which a chunk is closed (a chunk may exceed it by one message's rows)."""
    bucket_ms: int
    """Width of the broker-time buckets a chunk may not span."""
    grace_ms: int = 2000
    """How long after its bucket ends an idle chunk waits for stragglers (covers clock skew)."""

    def __post_init__(self) -> None:
        if self.max_rows < 1 or self.bucket_ms < 1 or self.grace_ms < 0:
            raise ValueError("max_rows and bucket_ms must be positive, grace_ms not negative")

    def bucket(self, timestamp_ms: int) -> int:
        """The bucket number of a broker timestamp."""
        return timestamp_ms // self.bucket_ms


@dataclass
class Chunk(Generic[T]):
    """Consecutive messages of one partition, inserted (and committed) as one unit."""

    topic: str
    partition: int
    bucket: int
    """Time bucket of the first message."""
    first_offset: int
    last_offset: int
    rows: int = 0
    """Rows the items carry (what max_rows counts)."""
    items: list[T] = field(default_factory=list)
    """One item per message, in offset order."""
    cut: Cut | None = None
    """Why it was closed; None while open."""

    @property
    def token(self) -> str:
        """The insert deduplication token: identical for the same chunk rebuilt after a crash."""
        return f"{self.topic}-{self.partition}-{self.first_offset}-{self.last_offset}"

    @property
    def next_offset(self) -> int:
        """The offset to commit once the chunk is stored."""
        return self.last_offset + 1

    @property
    def messages(self) -> int:
        """Messages in the chunk."""
        return len(self.items)

    def bucket_end_ms(self, policy: ChunkPolicy) -> int:
        """Broker time at which this chunk's bucket ends."""
        return (self.bucket + 1) * policy.bucket_ms


class PartitionChunker(Generic[T]):
    """Cuts the message stream of one partition into chunks."""

    def __init__(self, topic: str, partition: int, policy: ChunkPolicy) -> None:
        self.topic = topic
        self.partition = partition
        self.policy = policy
        self._open: Chunk[T] | None = None
        self.next_offset: int | None = None
        """The offset expected next (None before the first message)."""

    @property
    def open_chunk(self) -> Chunk[T] | None:
        """The chunk being filled, if any."""
        return self._open

    def _close(self, cut: Cut) -> Chunk[T]:
        chunk = self._open
        assert chunk is not None
        chunk.cut = cut
        self._open = None
        return chunk

    def add(self, offset: int, timestamp_ms: int, rows: int, item: T) -> list[Chunk[T]]:
        """Add the next message; return the chunks this closed (zero, one or two), oldest first.

        An offset below the expected one means the consumer was repositioned (to the committed offset,
        after a rebalance): the open chunk is dropped and a new one starts at `offset`.
        """
        if rows < 0:
            raise ValueError("rows must not be negative")
        closed: list[Chunk[T]] = []
        if self.next_offset is not None and offset < self.next_offset:
            self._open = None
        bucket = self.policy.bucket(timestamp_ms)
        if self._open is not None and bucket != self._open.bucket:
            closed.append(self._close(Cut.BUCKET))
        if self._open is None:
            self._open = Chunk(self.topic, self.partition, bucket, offset, offset)
        chunk = self._open
        chunk.items.append(item)
        chunk.rows += rows
        chunk.last_offset = offset
        self.next_offset = offset + 1
        if chunk.rows >= self.policy.max_rows:
            closed.append(self._close(Cut.ROWS))
        return closed

    def cut_if_idle(self, now_ms: int, caught_up: bool) -> Chunk[T] | None:
        """Close the open chunk if the partition is read to its end and the chunk's bucket is over."""
        chunk = self._open
        if chunk is None or not caught_up:
            return None
        if now_ms < chunk.bucket_end_ms(self.policy) + self.policy.grace_ms:
            return None
        return self._close(Cut.IDLE)

    def reset(self) -> Chunk[T] | None:
        """Forget the position and drop the open chunk (returned, never to be stored)."""
        dropped, self._open, self.next_offset = self._open, None, None
        return dropped


CaughtUp = Callable[[str, int, int], bool]
"""caught_up(topic, partition, next_offset): has the consumer read everything the broker has?"""


class Chunker(Generic[T]):
    """Chunkers of every partition this consumer reads."""

    def __init__(self, policy: ChunkPolicy) -> None:
        self.policy = policy
        self._parts: dict[tuple[str, int], PartitionChunker[T]] = {}

    def add(
        self, topic: str, partition: int, offset: int, timestamp_ms: int, rows: int, item: T
    ) -> list[Chunk[T]]:
        """Add one message; return the chunks it closed."""
        part = self._parts.get((topic, partition))
        if part is None:
            part = self._parts[(topic, partition)] = PartitionChunker(topic, partition, self.policy)
        return part.add(offset, timestamp_ms, rows, item)

    def due(self, now_ms: int, caught_up: CaughtUp) -> list[Chunk[T]]:
        """Close and return idle chunks (rule c)."""
        out: list[Chunk[T]] = []
        for part in self._parts.values():
            if part.open_chunk is None or part.next_offset is None:
                continue
            chunk = part.cut_if_idle(now_ms, caught_up(part.topic, part.partition, part.next_offset))
            if chunk is not None:
                out.append(chunk)
        return out

    def reset(self, topic: str, partition: int) -> Chunk[T] | None:
        """Forget a partition (revoked, or reassigned: it restarts at the committed offset)."""
        part = self._parts.pop((topic, partition), None)
        return part.reset() if part is not None else None

    def reset_all(self) -> list[Chunk[T]]:
        """Forget every partition; return the open chunks dropped."""
        dropped = [c for c in (p.reset() for p in self._parts.values()) if c is not None]
        self._parts.clear()
        return dropped

    def open_chunks(self) -> list[Chunk[T]]:
        """Chunks being filled."""
        return [p.open_chunk for p in self._parts.values() if p.open_chunk is not None]

    def positions(self) -> dict[tuple[str, int], int]:
        """Next expected offset per partition (for lag)."""
        return {key: p.next_offset for key, p in self._parts.items() if p.next_offset is not None}
