"""Compacted topics as key -> latest value maps: read one to its end, follow one, publish to one.

A compacted topic (maintenance windows, inventory, the notify ledger) is a table: the latest value per key
wins and a tombstone (null value) removes the key. Readers here take every partition from the beginning,
without a consumer group, so every reader sees the whole table.

A value that cannot be decoded is treated like a tombstone (and reported): after compaction only that
latest value would remain for the key, so this gives the same table before and after the cleaner ran.

kafka-python, like the sink: these run in plain threads (CLI, the sink's ingest side), not in asyncio.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from fleetcore.errors import BrokerError

log = logging.getLogger(__name__)

V = TypeVar("V")

Decode = Callable[[bytes], V]
"""Turns a record's value into the table's value type; raises on a bad value."""
OnError = Callable[[str, Exception], None]
"""Told about a key whose latest value could not be decoded (the key is dropped)."""


def _key(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="replace")


def _apply(
    table: dict[str, V], records: Iterable[Any], decode: Decode[V], on_error: OnError | None
) -> list[tuple[str, V | None]]:
    """Apply records to `table`; return the (key, value or None) changes in order. Keyless records skip."""
    changes: list[tuple[str, V | None]] = []
    for record in records:
        key = _key(record.key)
        if key is None:
            log.warning("compacted topic record without key at offset %s ignored", record.offset)
            continue
        value: V | None = None
        if record.value is not None:
            try:
                value = decode(record.value)
            except Exception as exc:
                log.warning("compacted topic: key %r has an undecodable value, dropped: %s", key, exc)
                if on_error is not None:
                    on_error(key, exc)
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
        changes.append((key, value))
    return changes


def _assign_all(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    """Assign every partition of `topic` from its beginning; BrokerError if the topic does not exist."""
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise BrokerError(f"topic {topic} does not exist (start a worker that creates topics, or `up`)")
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    return tps


def _consumer(bootstrap: str, client_id: str) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        allow_auto_create_topics=False,
    )


def read_latest(
    bootstrap: str,
    topic: str,
    decode: Decode[V],
    *,
    timeout_s: float = 30.0,
    on_error: OnError | None = None,
) -> dict[str, V]:
    """The table of a compacted topic: every partition read from the beginning up to the end offsets seen
    at the start. BrokerError if Kafka fails, the topic is missing, or reading takes over `timeout_s`."""
    consumer: KafkaConsumer | None = None
    try:
        consumer = _consumer(bootstrap, "fleetwatch-compacted-reader")
        tps = _assign_all(consumer, topic)
        end = consumer.end_offsets(tps)
        table: dict[str, V] = {}
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise BrokerError(f"reading {topic} to its end took longer than {timeout_s} s")
            for records in consumer.poll(timeout_ms=200).values():
                _apply(table, records, decode, on_error)
        return table
    except KafkaError as exc:
        raise BrokerError(f"cannot read {topic} from Kafka at {bootstrap}: {exc}") from exc
    finally:
        if consumer is not None:
            consumer.close(autocommit=False)


def publish(bootstrap: str, topic: str, key: str, value: bytes | None, *, timeout_s: float = 30.0) -> None:
    """Write one record (None: a tombstone) with acks=all and wait until the broker has it."""
    producer: KafkaProducer | None = None
    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            client_id="fleetwatch-compacted-writer",
            acks="all",
            enable_idempotence=True,
            max_block_ms=int(timeout_s * 1000),
        )
        producer.send(topic, key=key.encode(), value=value).get(timeout=timeout_s)
        producer.flush(timeout=timeout_s)
    except KafkaError as exc:
        raise BrokerError(f"cannot publish {key!r} to {topic} at {bootstrap}: {exc}") from exc
    finally:
        if producer is not None:
            producer.close(timeout=5)


class CompactedFollower(Generic[V]):
    """Keeps the table of a compacted topic current in a background thread.

    Each change is applied to `table` and passed to `on_update(key, value or None)` while `lock` is held,
    so a reader holding `lock` sees a consistent table (and whatever `on_update` maintains). `caught_up`
    is set once every partition was read up to the end offsets seen when following started. Kafka errors
    (including a topic that does not exist yet) are logged and retried with backoff; they never stop it.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        decode: Decode[V],
        *,
        on_update: Callable[[str, V | None], None] | None = None,
        on_error: OnError | None = None,
        poll_timeout_ms: int = 200,
        retry_s: float = 1.0,
        name: str = "compacted-follower",
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.decode = decode
        self.on_update = on_update
        self.on_error = on_error
        self.poll_timeout_ms = poll_timeout_ms
        self.retry_s = retry_s
        self.name = name
        self.table: dict[str, V] = {}
        """The current table; read it while holding `lock`."""
        self.lock = threading.Lock()
        self.caught_up = threading.Event()
        self.updates = 0
        """Records applied so far."""
        self._failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start following in a daemon thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wait_caught_up(self, timeout_s: float) -> bool:
        """Block until the topic was read to its end offsets at start; False if `timeout_s` passed first."""
        return self.caught_up.wait(timeout_s)

    def snapshot(self) -> dict[str, V]:
        """A copy of the current table."""
        with self.lock:
            return dict(self.table)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread and close its consumer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _apply(self, records: Iterable[Any], seen: set[str] | None) -> None:
        with self.lock:
            changes = _apply(self.table, records, self.decode, self.on_error)
            if self.on_update is not None:
                for key, value in changes:
                    self.on_update(key, value)
            if seen is not None:
                seen.update(key for key, _ in changes)
            self.updates += len(changes)

    def _drop_unseen(self, seen: set[str]) -> None:
        """After a re-read: remove keys the topic no longer has (their tombstones may be compacted away)."""
        with self.lock:
            for key in [k for k in self.table if k not in seen]:
                del self.table[key]
                if self.on_update is not None:
                    self.on_update(key, None)

    def _follow(self, consumer: KafkaConsumer) -> bool:
        """One pass: read from the beginning, then keep polling until stopped. True once caught up.

        Raises KafkaError/BrokerError. A pass after a failure re-reads while the old table stays in use,
        and drops the keys it did not see once it has caught up (no gap in which lookups miss).
        """
        tps = _assign_all(consumer, self.topic)
        end = consumer.end_offsets(tps)
        with self.lock:
            seen: set[str] | None = set() if self.table else None
        passed = False
        while not self._stop.is_set():
            for records in consumer.poll(timeout_ms=self.poll_timeout_ms).values():
                self._apply(records, seen)
            if not passed and all(consumer.position(tp) >= end[tp] for tp in tps):
                passed = True
                self._failures = 0
                if seen is not None:
                    self._drop_unseen(seen)
                    seen = None
                self.caught_up.set()
                log.info("%s: %s read to its end (%d keys)", self.name, self.topic, len(self.table))
        return passed

    def _run(self) -> None:
        while not self._stop.is_set():
            consumer: KafkaConsumer | None = None
            try:
                consumer = _consumer(self.bootstrap, f"fleetwatch-{self.name}")
                self._follow(consumer)
            except Exception as exc:  # never let the follower die: log, back off, read again
                self._failures += 1
                delay = min(30.0, self.retry_s * 2 ** min(self._failures - 1, 5))
                log.warning(
                    "%s: following %s failed (%s); retrying in %.1f s", self.name, self.topic, exc, delay
                )
                self._stop.wait(delay)
            finally:
                if consumer is not None:
                    try:
                        consumer.close(autocommit=False)
                    except Exception:
                        log.exception("%s: closing the consumer failed", self.name)
