"""The Kafka -> ClickHouse adapter: consume probe results and case events, insert deterministic chunks.

Exactly once in ClickHouse, at least once in Kafka terms:

1. a chunk (sinks.chunker) starts at the partition's committed offset and is cut deterministically;
2. it is inserted with ``insert_deduplication_token = {topic}-{partition}-{first}-{last}`` (the tables keep a
   non-replicated deduplication window), so a replayed chunk is dropped by ClickHouse, and with
   `history.ddl.DEDUP_SETTINGS` by the rollups the materialized views feed as well;
3. offset ``last + 1`` is committed only after the insert succeeded. A failed insert is retried with backoff,
   never committed past; a stop abandons the chunk uncommitted (it is replayed on restart).

Inserts overlap decoding (``overlap=True``, the default): one insert thread stores a closed chunk (dead
letters, insert, retries) while the consumer thread goes on polling and decoding. At most one chunk is in
flight; closed chunks queue behind it, at most one per partition read (then decoding waits). The consumer
thread alone touches the Kafka consumer: it commits a chunk, strictly in order, only once the chunk's
insert returned, and counts it in `stats` only then, so ``run(until=...)`` still means stored and
committed. On a rebalance touching the in-flight chunk's partition, on rewind() and on close() the
in-flight insert is awaited and NOT committed: the partition's owner replays it, rebuilds the same chunk
and token, and ClickHouse drops the repeat. chdb releases the GIL for part of an insert, so decoding runs
meanwhile.

Messages that cannot be stored (bad envelope, invalid result, unreadable case event) go to the dead-letter
topic with the reason before their chunk is committed. Nothing raised by one chunk stops the loop.

The add()/flush() split follows quix-streams sinks: `add` decodes a record into the pure chunk type,
`flush` writes closed chunks and commits them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from clickhouse_connect.driver.client import Client
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import IllegalStateError, KafkaError
from kafka.record import util as kafka_record_util
from kafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from casefile.checker import CaseChecker
from fleetcore.clock import Clock, SystemClock, to_epoch_ms
from fleetcore.errors import BrokerError, StoreError
from fleetcore.settings import Settings
from history.ddl import CASE_COLUMNS, CASE_EVENTS, DEDUP_SETTINGS, PROBE_COLUMNS, PROBE_RESULTS
from schemas.topics import CASES, Topics
from sinks.chunker import Chunk, Chunker, ChunkPolicy
from sinks.rows import (
    DecodedMessage,
    PlannedLookup,
    Rejected,
    columns,
    dead_letter,
    decode_case_message,
    decode_probe_message,
)

log = logging.getLogger(__name__)

CONSUMER_NAME = "sink"
"""How the sink names itself in dead letters."""


class Item(NamedTuple):
    """One consumed message as the chunk holds it."""

    offset: int
    decoded: DecodedMessage


@dataclass(frozen=True)
class Route:
    """Where one topic's messages go."""

    table: str
    column_names: tuple[str, ...]
    decode: Callable[[bytes | None, str, int, int], DecodedMessage]


@dataclass
class SinkStats:
    """Running totals, for run-until conditions and /healthz."""

    messages: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    """Rows inserted and committed per table (a replayed chunk ClickHouse dropped counts too)."""
    chunks: int = 0
    """Chunks stored and committed (or whose commit failed after the store: see commit_failures)."""
    dead_letters: int = 0
    insert_failures: int = 0
    commit_failures: int = 0
    last_message_at: float = field(default_factory=time.monotonic)
    """time.monotonic() of the last message consumed (or of the start)."""


class SinkMetrics:
    """Prometheus metrics of one sink, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.rows = Counter(
            "fleetwatch_sink_rows_inserted", "Rows sent to ClickHouse", ["table"], registry=self.registry
        )
        self.chunks = Counter(
            "fleetwatch_sink_chunks",
            "Chunks inserted and committed",
            ["table", "cut"],
            registry=self.registry,
        )
        self.insert_seconds = Histogram(
            "fleetwatch_sink_insert_seconds",
            "Time of one chunk insert",
            ["table"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.insert_failures = Counter(
            "fleetwatch_sink_insert_failures",
            "Failed chunk inserts (retried)",
            ["table"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "fleetwatch_sink_dead_letters",
            "Messages or items sent to the dead-letter topic",
            ["topic"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "fleetwatch_sink_consumer_lag",
            "High watermark minus consumed position",
            ["topic", "partition"],
            registry=self.registry,
        )


class ClickHouseWriter:
    """Inserts one chunk's rows with its dedup token. Thread-confined: the sink's insert thread uses it."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def insert(self, table: str, column_names: tuple[str, ...], rows: list[Any], token: str) -> None:
        """Column-oriented insert, deduplicated by `token`; StoreError (retriable) on failure."""
        try:
            self.client.insert(
                table,
                columns(rows, len(column_names)),
                column_names=list(column_names),
                column_oriented=True,
                settings={"insert_deduplication_token": token, **DEDUP_SETTINGS},
            )
        except Exception as exc:
            raise StoreError(
                f"insert of {len(rows)} rows into {table} (chunk {token}) failed: {exc}"
            ) from exc


class _Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    """Collects assignment changes for the ingest thread (listeners run on Kafka's IO loop, not ours)."""

    def __init__(self, before_revoke: Callable[[set[TopicPartition]], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._changed: list[TopicPartition] = []
        self.assigned: set[TopicPartition] = set()
        self._before_revoke = before_revoke

    def on_partitions_revoked(self, revoked: Any) -> None:
        if self._before_revoke is not None:  # the in-flight insert ends before the partition moves on
            self._before_revoke(set(revoked))
        with self._lock:
            self._changed.extend(revoked)
            self.assigned -= set(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        with self._lock:
            self._changed.extend(assigned)
            self.assigned |= set(assigned)

    def on_partitions_lost(self, lost: Any) -> None:
        self.on_partitions_revoked(lost)

    def take(self) -> list[TopicPartition]:
        with self._lock:
            changed, self._changed = self._changed, []
        return changed


def backoff_s(attempt: int, base_s: float, cap_s: float = 30.0) -> float:
    """Delay before retry number `attempt` (1, 2, ...): doubling from `base_s`, at most `cap_s`."""
    return float(min(cap_s, base_s * 2 ** min(attempt - 1, 16)))


class ClickHouseSink:
    """Consumes the probe-results and cases topics of one installation into the history tables."""

    def __init__(
        self,
        settings: Settings,
        client: Client,
        *,
        metrics: SinkMetrics | None = None,
        clock: Clock | None = None,
        grace_ms: int = 2000,
        max_poll_records: int = 500,
        session_timeout_ms: int = 10000,
        retry_base_s: float = 0.5,
        planned: PlannedLookup | None = None,
        overlap: bool = True,
    ) -> None:
        """`planned` marks probe rows with the maintenance window they ran in (None: never planned).
        `overlap`: insert on the insert thread while the next chunk is decoded (False: insert and commit
        within the poll that closed the chunk, one after the other)."""
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.writer = ClickHouseWriter(client)
        self.metrics = metrics or SinkMetrics()
        self.stats = SinkStats()
        self.clock: Clock = clock or SystemClock()  # broker timestamps are wall time: never a scaled clock
        self.policy = ChunkPolicy(
            max_rows=settings.sink_chunk_max_rows,
            bucket_ms=settings.sink_chunk_seconds * 1000,
            grace_ms=grace_ms,
        )
        self.chunker: Chunker[Item] = Chunker(self.policy)

        def decode_probes(raw: bytes | None, topic: str, partition: int, offset: int) -> DecodedMessage:
            return decode_probe_message(raw, topic, partition, offset, planned)

        self.case_check = CaseChecker(settings, self._case_partitions)

        def decode_cases(raw: bytes | None, topic: str, partition: int, offset: int) -> DecodedMessage:
            return decode_case_message(raw, topic, partition, offset, self.case_check)

        self.routes = {
            self.topics.probe_results: Route(PROBE_RESULTS, PROBE_COLUMNS, decode_probes),
            self.topics.cases: Route(CASE_EVENTS, CASE_COLUMNS, decode_cases),
        }
        self._ready: list[Chunk[Item]] = []
        self._overlap = overlap
        self._inserter: ThreadPoolExecutor | None = None
        self._inflight: tuple[Chunk[Item], Future[bool]] | None = None
        """The chunk the insert thread is storing (only the consumer thread sets or clears this)."""
        self._closing = threading.Event()
        """Set by close(): an insert retrying gives up (its chunk stays uncommitted)."""
        self._rebalances = _Rebalances(self._settle_revoked)
        self._max_poll_records = max_poll_records
        self._session_timeout_ms = session_timeout_ms
        self._retry_base_s = retry_base_s
        self._consumer: KafkaConsumer | None = None
        self._producer: KafkaProducer | None = None

    def _case_partitions(self) -> int:
        """Partitions of the cases topic (the broker's metadata; the registry's count until it is known)."""
        known = self._consumer.partitions_for_topic(self.topics.cases) if self._consumer else None
        return len(known) if known else CASES.partitions

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect to Kafka and join the sink's consumer group."""
        if getattr(kafka_record_util, "crc32c_c", None) is None:
            log.warning(
                "sink: the crc32c package is missing; kafka-python checks CRCs in pure Python (~3x slower)"
            )
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap,
                client_id=f"{self.settings.topic_prefix}sink-dlq",
                acks="all",
                enable_idempotence=True,
                linger_ms=20,
            )
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap,
                group_id=f"{self.settings.topic_prefix}sink",
                client_id=f"{self.settings.topic_prefix}sink",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                allow_auto_create_topics=False,
                max_poll_records=self._max_poll_records,
                session_timeout_ms=self._session_timeout_ms,
                heartbeat_interval_ms=min(3000, self._session_timeout_ms // 3),
            )
            self._consumer.subscribe(list(self.routes), listener=self._rebalances)
        except KafkaError as exc:
            self.close()
            raise BrokerError(
                f"sink cannot connect to Kafka at {self.settings.kafka_bootstrap}: {exc}"
            ) from exc

    def close(self) -> None:
        """Abandon open chunks (uncommitted: replayed next time) and close the Kafka clients."""
        self._closing.set()
        inflight = self._drop_inflight()
        if self._inserter is not None:
            self._inserter.shutdown(wait=True)
            self._inserter = None
        dropped = self.chunker.reset_all() + self._ready + ([inflight] if inflight else [])
        self._ready = []
        if dropped:
            log.info("sink: abandoned %d uncommitted chunk(s); they are replayed on restart", len(dropped))
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except Exception:
                log.exception("sink: closing the consumer failed")
            self._consumer = None
        if self._producer is not None:
            try:
                self._producer.close(timeout=5)
            except Exception:
                log.exception("sink: closing the dead-letter producer failed")
            self._producer = None

    # -- add / flush ---------------------------------------------------------------------------------

    def add(self, topic: str, partition: int, offset: int, timestamp_ms: int, value: bytes | None) -> None:
        """Decode one record into its partition's chunk; closed chunks wait for flush()."""
        route = self.routes.get(topic)
        if route is None:
            return
        try:
            decoded = route.decode(value, topic, partition, offset)
        except Exception as exc:  # a decoder bug must not lose the message: dead-letter it
            log.exception("sink: decoding %s:%d:%d failed", topic, partition, offset)
            payload = (value or b"").decode("utf-8", errors="replace")[:65536]
            decoded = DecodedMessage(rejected=[Rejected(None, f"cannot decode: {exc!r}", payload)])
        self.stats.messages += 1
        self.stats.last_message_at = time.monotonic()
        self._ready.extend(
            self.chunker.add(topic, partition, offset, timestamp_ms, len(decoded.rows), Item(offset, decoded))
        )

    def flush(self, stop: threading.Event, wait: bool = False) -> bool:
        """Store and commit closed chunks, in order; False if `stop` interrupted a retry.

        With overlap, commit the in-flight chunk once its insert returned and hand the next closed chunk to
        the insert thread; wait for the in-flight insert only if `wait` or once as many closed chunks wait
        behind it as partitions are read (their chunks tend to close together; the bound keeps memory
        within twice the open chunks'). Without overlap, store and commit every closed chunk here."""
        while True:
            if self._inflight is not None:
                chunk, future = self._inflight
                backlog = len(self._ready) >= max(1, len(self.chunker.positions()))
                if not future.done() and not (wait or backlog or not self._overlap):
                    return True
                try:
                    stored = future.result()
                finally:
                    self._inflight = None
                if not stored:  # stop interrupted its retries: not committed, kept for idle()/close()
                    self._ready.insert(0, chunk)
                    return False
                self._commit(chunk)
                self._account(chunk)
            if not self._ready or stop.is_set():
                return not self._ready
            chunk = self._ready.pop(0)
            if self._inserter is None:
                self._inserter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink-insert")
            self._inflight = (chunk, self._inserter.submit(self._store, chunk, stop))

    def _account(self, chunk: Chunk[Item]) -> None:
        """Count a stored and committed chunk (consumer thread)."""
        route = self.routes[chunk.topic]
        if chunk.rows:
            self.stats.rows[route.table] = self.stats.rows.get(route.table, 0) + chunk.rows
        self.stats.chunks += 1

    def _drop_inflight(self) -> Chunk[Item] | None:
        """Await the in-flight insert and forget it, uncommitted (its partition's owner replays it)."""
        if self._inflight is None:
            return None
        chunk, future = self._inflight
        self._inflight = None
        try:
            future.result()
        except Exception:
            log.exception("sink: the dropped in-flight insert of %s failed", chunk.token)
        return chunk

    def _settle_revoked(self, revoked: set[TopicPartition]) -> None:
        """Before partitions are revoked: let an in-flight insert of one of them finish (not committed),
        so the next owner's replay of the chunk starts after it (rebalance listener)."""
        inflight = self._inflight
        if inflight is not None and TopicPartition(inflight[0].topic, inflight[0].partition) in revoked:
            try:
                inflight[1].result()
            except Exception:
                log.exception("sink: the in-flight insert of %s failed", inflight[0].token)

    def _store(self, chunk: Chunk[Item], stop: threading.Event) -> bool:
        route = self.routes[chunk.topic]
        rows = [row for item in chunk.items for row in item.decoded.rows]
        letters_sent = False
        attempt = 0
        while True:
            try:
                if not letters_sent:
                    self._send_dead_letters(chunk)
                    letters_sent = True
                if rows:
                    started = time.perf_counter()
                    self.writer.insert(route.table, route.column_names, rows, chunk.token)
                    self.metrics.insert_seconds.labels(route.table).observe(time.perf_counter() - started)
                    self.metrics.rows.labels(route.table).inc(len(rows))
                self.metrics.chunks.labels(route.table, str(chunk.cut)).inc()
                return True
            except Exception as exc:
                attempt += 1
                self.stats.insert_failures += 1
                self.metrics.insert_failures.labels(route.table).inc()
                delay = backoff_s(attempt, self._retry_base_s)
                log.error(
                    "sink: chunk %s not stored (attempt %d), retrying in %.1f s: %s",
                    chunk.token,
                    attempt,
                    delay,
                    exc,
                )
                if self._backoff(stop, delay):
                    return False

    def _backoff(self, stop: threading.Event, delay: float) -> bool:
        """Wait `delay` seconds; True (give up) as soon as `stop` is set or the sink is closing."""
        deadline = time.monotonic() + delay
        while not self._closing.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if stop.wait(min(left, 0.1)):
                return True
        return True

    def _send_dead_letters(self, chunk: Chunk[Item]) -> None:
        letters = [(item.offset, rejected) for item in chunk.items for rejected in item.decoded.rejected]
        if not letters:
            return
        if self._producer is None:
            raise BrokerError("sink is not started")
        now = self.clock.now()
        futures = []
        for offset, rejected in letters:
            letter = dead_letter(rejected, chunk.topic, chunk.partition, offset, CONSUMER_NAME, now)
            key = f"{chunk.topic}:{chunk.partition}:{offset}".encode()
            futures.append(
                self._producer.send(self.topics.dead_letter, key=key, value=letter.model_dump_json().encode())
            )
        try:
            for future in futures:
                future.get(timeout=30)
        except KafkaError as exc:
            raise BrokerError(f"dead letters of chunk {chunk.token} not delivered: {exc}") from exc
        self.stats.dead_letters += len(letters)
        self.metrics.dead_letters.labels(chunk.topic).inc(len(letters))
        for offset, rejected in letters:
            log.warning(
                "sink: dead-lettered %s:%d:%d item %s: %s",
                chunk.topic,
                chunk.partition,
                offset,
                rejected.item,
                rejected.reason,
            )

    def _commit(self, chunk: Chunk[Item]) -> None:
        if self._consumer is None:
            return
        tp = TopicPartition(chunk.topic, chunk.partition)
        try:
            self._consumer.commit({tp: OffsetAndMetadata(chunk.next_offset, "", -1)}, timeout_ms=30_000)
        except KafkaError as exc:
            # The rows are stored (and deduplicated on replay); a later commit, or the partition's next
            # owner replaying from the last commit, covers this chunk.
            self.stats.commit_failures += 1
            log.warning("sink: commit of %s at %d failed: %s", tp, chunk.next_offset, exc)

    # -- the loop ------------------------------------------------------------------------------------

    def _caught_up(self, topic: str, partition: int, next_offset: int) -> bool:
        assert self._consumer is not None
        try:
            highwater = self._consumer.highwater(TopicPartition(topic, partition))
        except IllegalStateError:
            return False
        return highwater is not None and next_offset >= highwater

    def poll_once(self, stop: threading.Event, timeout_ms: int = 200) -> int:
        """One poll: apply rebalances, add records (handing each closed chunk to the insert thread), cut
        idle chunks, flush. Returns records consumed."""
        consumer = self._consumer
        if consumer is None:
            raise BrokerError("sink is not started")
        try:  # an insert in flight: take what is fetched, to decode it meanwhile, but do not wait for more
            batches = consumer.poll(timeout_ms=0 if self._inflight is not None else timeout_ms)
        except KafkaError as exc:
            log.warning("sink: poll failed: %s", exc)
            stop.wait(2 * self._retry_base_s)
            return 0
        for tp in self._rebalances.take():
            self.stats.last_message_at = time.monotonic()  # burst idleness counts from (re)assignment
            inflight = self._inflight
            if inflight is not None and (inflight[0].topic, inflight[0].partition) == (
                tp.topic,
                tp.partition,
            ):
                self._drop_inflight()
                log.info("sink: %s reassigned; its in-flight chunk stays uncommitted (replayed)", tp)
            dropped = self.chunker.reset(tp.topic, tp.partition)
            self._ready = [c for c in self._ready if (c.topic, c.partition) != (tp.topic, tp.partition)]
            if dropped is not None:
                log.info("sink: %s reassigned; dropped its open chunk (replayed by its owner)", tp)
        count = 0
        for tp, records in batches.items():
            for record in records:
                self.add(tp.topic, tp.partition, record.offset, record.timestamp, record.value)
                count += 1
                if self._ready:  # a chunk closed: to the insert thread, while the next one is decoded
                    self.flush(stop)
        self._ready.extend(self.chunker.due(to_epoch_ms(self.clock.now()), self._caught_up))
        self.flush(stop, wait=count == 0)  # nothing new to decode: let the in-flight insert finish
        self._update_lag()
        return count

    def _update_lag(self) -> None:
        if self._consumer is None:
            return
        for (topic, partition), position in self.chunker.positions().items():
            try:
                highwater = self._consumer.highwater(TopicPartition(topic, partition))
            except IllegalStateError:
                continue
            if highwater is not None:
                self.metrics.lag.labels(topic, str(partition)).set(max(0, highwater - position))

    def rewind(self) -> None:
        """Drop everything uncommitted and reposition every assigned partition at its committed offset.

        After an unexpected error part of a poll may be unprocessed; re-reading from the last commit
        rebuilds the same chunks, so nothing is lost and nothing is stored twice.
        """
        inflight = self._drop_inflight()
        dropped = self.chunker.reset_all() + self._ready + ([inflight] if inflight else [])
        self._ready = []
        consumer = self._consumer
        if consumer is None:
            return
        try:
            for tp in consumer.assignment():
                committed = consumer.committed(tp)
                if committed is None:
                    consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, committed)
        except KafkaError as exc:
            log.error(
                "sink: rewind failed (%s); leaving the group so the partitions restart from commits", exc
            )
            consumer.unsubscribe()
            consumer.subscribe(list(self.routes), listener=self._rebalances)
        if dropped:
            log.info("sink: rewound; %d uncommitted chunk(s) will be rebuilt", len(dropped))

    def idle(self) -> bool:
        """Nothing buffered: every consumed message is stored and committed."""
        return self._inflight is None and not self._ready and not self.chunker.open_chunks()

    def run(
        self,
        stop: threading.Event,
        until: Callable[[SinkStats], bool] | None = None,
        max_idle_s: float | None = None,
    ) -> SinkStats:
        """Poll until `stop` is set, `until(stats)` holds, or (burst) nothing arrived for `max_idle_s`
        and every chunk is stored. Never raises for a bad message or a failed insert."""
        while not stop.is_set():
            try:
                self.poll_once(stop)
            except Exception:
                log.exception("sink: unexpected error in the ingest loop; rewinding to the committed offsets")
                self.rewind()
                stop.wait(2 * self._retry_base_s)
            if until is not None and until(self.stats):
                break
            if (
                max_idle_s is not None
                and (self._rebalances.assigned or self.stats.messages)
                and time.monotonic() - self.stats.last_message_at >= max_idle_s
                and self.idle()
            ):
                break
        return self.stats
