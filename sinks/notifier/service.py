"""The notifier process: consume notifications, deliver each (key, contact) at most once, report outcomes.

Consumer group `<prefix>notify` on the notifications topic, manual commits. On assignment of partition p
the service first reads ledger partition p to its end (`ledger.LedgerReader`); only then does it handle
p's messages. Each message is handled in its own task, so a slow webhook or a retry backoff never holds up
the others (at most `max_pending` messages in flight, at most `concurrency` sends at once). For each
delivery of a message (`delivery.plan`):

  1. in the ledger already → skip;
  2. else send, retrying retriable failures after `backoff_s` up to `notify_max_attempts` attempts;
  3. after a success, write the ledger record (acks=all) and wait for its ack before anything else;
  4. report every outcome (sent / retrying with the attempt and error / failed with the reason) as a
     `notification_outcome` command on case-commands, deterministic command id.

A partition's offset is committed only past messages whose deliveries are all finished. Undecodable values
go to the dead-letter topic. Crash windows: a crash between a successful send and the ledger ack repeats
that one send on restart (the page has the same dedup_key, the email the same Message-ID); a crash between
the ledger ack and the `sent` command loses that command (the delivery itself is not repeated).

`run(settings)` is the blocking entry of `fleetwatch notify` / `python -m sinks.notifier` (SIGINT/SIGTERM
stop it). `NotifierService` adds run-until options for tests: `stop_event`, `until(stats)`, `max_idle_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import IllegalStateError, KafkaError
from pydantic import ValidationError

from fleetcore.clock import Clock, clock_for
from fleetcore.logs import setup_logging
from fleetcore.settings import Settings
from schemas.deadletter import DeadLetter
from schemas.envelope import validation_reason
from schemas.notifications import Notification
from schemas.topics import Topics
from sinks.notifier.delivery import Delivery, DeliveryConfig, backoff_s, plan
from sinks.notifier.directory import Directory, load_directory
from sinks.notifier.ledger import LedgerReader
from sinks.notifier.metrics import NotifierMetrics
from sinks.notifier.outcomes import Attempt, Outcome, next_outcome, outcome_command
from sinks.notifier.transports import Sender, Transports

log = logging.getLogger(__name__)

CONSUMER = "notifier"
PAYLOAD_MAX = 65536


@dataclass
class NotifierStats:
    """Counts of one run (for run-until conditions, tests and the stop log line)."""

    messages: int = 0
    """Notifications decoded."""
    sent: int = 0
    retries: int = 0
    failed: int = 0
    skipped: int = 0
    """Deliveries found in the ledger."""
    dead_letters: int = 0
    committed: int = 0
    """Messages whose offsets were committed."""


@dataclass
class _Partition:
    """One assigned notifications partition: its ledger keys and its offsets in flight."""

    ledger: set[str]
    order: deque[int] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)
    tasks: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    next_commit: int | None = None
    committed: int | None = None

    def advance(self) -> int:
        """Drop the finished prefix of the offsets in flight; how many messages that was."""
        count = 0
        while self.order and self.order[0] in self.done:
            offset = self.order.popleft()
            self.done.discard(offset)
            self.next_commit = offset + 1
            count += 1
        return count


class _KeyLocks:
    """One lock per ledger key, so two copies of a notification never deliver the same pair twice."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: NotifierService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.service._revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.service._assigned(assigned)


class NotifierService:
    """One notifier's worth of work, runnable in-process with stop conditions."""

    def __init__(
        self,
        settings: Settings,
        *,
        directory: Directory | None = None,
        clock: Clock | None = None,
        sender: Sender | None = None,
        group_id: str | None = None,
        stop_event: asyncio.Event | None = None,
        until: Callable[[NotifierStats], bool] | None = None,
        max_idle_s: float | None = None,
        concurrency: int = 32,
        max_pending: int = 256,
        drain_s: float = 5.0,
        send_timeout_s: float = 10.0,
        metrics: NotifierMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.directory = directory
        self.clock = clock or clock_for(settings.clock_scale, settings.clock_origin_ms)
        self.sender = sender
        self.group_id = group_id or f"{settings.topic_prefix}notify"
        self.stop_event = stop_event or asyncio.Event()
        self.until = until
        self.max_idle_s = max_idle_s
        self.max_pending = max_pending
        self.drain_s = drain_s
        self.send_timeout_s = send_timeout_s
        self.metrics = metrics or NotifierMetrics()
        self.stats = NotifierStats()
        self.config = DeliveryConfig.from_settings(settings)
        self._send_slots = asyncio.Semaphore(concurrency)
        self._locks = _KeyLocks()
        self._parts: dict[TopicPartition, _Partition] = {}
        self._pending = 0
        self._progress = asyncio.Event()
        self._assigned_once = False
        self._failure: BaseException | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._ledger: LedgerReader | None = None

    # -- run -----------------------------------------------------------------------------------------

    async def run(self) -> NotifierStats:
        """Consume and deliver until a stop condition holds; returns the run's counts."""
        if self.directory is None:
            self.directory = load_directory(self.settings.contacts_file)
            if not self.directory.contacts:
                log.warning("notify: the contacts directory is empty (FLEETWATCH_CONTACTS_FILE)")
        if self.settings.create_topics:
            from fleetcore.kafka_admin import ensure_topics

            await asyncio.to_thread(ensure_topics, self.settings.kafka_bootstrap, self.topics)
        bootstrap = self.settings.kafka_bootstrap
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, client_id="fleetwatch-notify"
        )
        self._ledger = LedgerReader(bootstrap, self.topics.notify_ledger)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="fleetwatch-notify",
        )
        await self._producer.start()
        try:
            await self._ledger.start()
            try:
                await self._consumer.start()
                try:
                    self._consumer.subscribe([self.topics.notifications], listener=_Listener(self))
                    await self._serve()
                finally:
                    await self._consumer.stop()
            finally:
                await self._ledger.stop()
        finally:
            await self._producer.stop()
        if self._failure is not None:
            raise self._failure
        return self.stats

    async def _serve(self) -> None:
        owned_sender = self.sender is None
        transports = Transports(self.settings.smtp_host, self.settings.smtp_port, self.send_timeout_s)
        if owned_sender:
            await transports.__aenter__()
            self.sender = transports
        try:
            await self._loop()
        finally:
            await self._drain(list(self._parts))
            if owned_sender:
                await transports.__aexit__(None, None, None)
                self.sender = None

    async def _loop(self) -> None:
        assert self._consumer is not None
        idle_since = time.monotonic()
        while not self.stop_event.is_set() and self._failure is None:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=200)
            for tp, records in batch.items():
                state = self._parts.get(tp)
                if state is None:  # fetched while its ledger is still loading (or revoked): fetch again
                    with contextlib.suppress(IllegalStateError):
                        self._consumer.seek(tp, records[0].offset)
                    continue
                for record in records:
                    if not await self._admit() or self._parts.get(tp) is not state:
                        break  # stopping, or revoked while waiting for room
                    self._start(tp, state, record)
            await self._commit()
            if self.until is not None and self.until(self.stats):
                return
            now = time.monotonic()
            busy = bool(batch) or self._pending > 0 or not self._assigned_once or self._uncommitted()
            if busy:
                idle_since = now
            elif self.max_idle_s is not None and now - idle_since >= self.max_idle_s:
                log.info("notify: idle for %.1f s, stopping (burst)", self.max_idle_s)
                return

    def _uncommitted(self) -> bool:
        return any(s.order or s.next_commit != s.committed for s in self._parts.values())

    async def _admit(self) -> bool:
        """Wait for room for one more message in flight; False when stopping."""
        while self._pending >= self.max_pending:
            if self.stop_event.is_set() or self._failure is not None:
                return False
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self._progress.wait()
        return not self.stop_event.is_set() and self._failure is None

    def _start(self, tp: TopicPartition, state: _Partition, record: ConsumerRecord[bytes, bytes]) -> None:
        offset = record.offset
        state.order.append(offset)
        self._pending += 1
        self.metrics.in_flight.inc()
        task = asyncio.create_task(self._handle(tp, state, record), name=f"notify {tp.partition}@{offset}")
        state.tasks[offset] = task

        def finished(task: asyncio.Task[None]) -> None:
            state.tasks.pop(offset, None)
            self._pending -= 1
            self.metrics.in_flight.dec()
            self._progress.set()
            if task.cancelled():
                return
            exc = task.exception()
            if exc is None:
                state.done.add(offset)
            elif self._failure is None:
                log.error("notify: handling %s@%d failed; stopping", tp, offset, exc_info=exc)
                self._failure = exc

        task.add_done_callback(finished)

    # -- partitions ----------------------------------------------------------------------------------

    async def _assigned(self, assigned: set[TopicPartition]) -> None:
        assert self._ledger is not None
        topic = self.topics.notifications
        ours = sorted((tp for tp in assigned if tp.topic == topic), key=lambda t: t.partition)
        try:
            ledgers = await self._ledger.load([tp.partition for tp in ours])
        except Exception as exc:  # a partition without its ledger must not be handled: stop loudly
            log.exception("notify: reading the ledger failed")
            self._failure = exc
            return
        for tp in ours:
            self._parts[tp] = _Partition(ledger=ledgers[tp.partition])
        self._assigned_once = True
        log.info(
            "notify: assigned partitions %s (%d delivered pairs in the ledger)",
            [tp.partition for tp in ours],
            sum(len(v) for v in ledgers.values()),
        )

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        ours = [tp for tp in revoked if tp in self._parts]
        if ours:
            await self._drain(ours)
            log.info("notify: revoked partitions %s", sorted(tp.partition for tp in ours))

    async def _drain(self, tps: list[TopicPartition]) -> None:
        """Let these partitions' messages finish (up to drain_s), cancel the rest, commit, forget them."""
        tasks = [task for tp in tps if tp in self._parts for task in self._parts[tp].tasks.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=self.drain_s)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._commit(tps)
        for tp in tps:
            self._parts.pop(tp, None)

    async def _commit(self, only: list[TopicPartition] | None = None) -> None:
        assert self._consumer is not None
        offsets: dict[TopicPartition, int] = {}
        advanced = 0
        for tp in only if only is not None else list(self._parts):
            state = self._parts.get(tp)
            if state is None:
                continue
            advanced += state.advance()
            if state.next_commit is not None and state.next_commit != state.committed:
                offsets[tp] = state.next_commit
        self.stats.committed += advanced
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:  # e.g. a rebalance in progress: the next commit carries the offsets
            log.warning("notify: commit of %s failed: %s", offsets, exc)
            return
        for tp, offset in offsets.items():
            if tp in self._parts:
                self._parts[tp].committed = offset

    # -- one message ---------------------------------------------------------------------------------

    async def _handle(
        self, tp: TopicPartition, state: _Partition, record: ConsumerRecord[bytes, bytes]
    ) -> None:
        assert self.directory is not None
        try:
            if record.value is None:
                raise ValueError("empty value (tombstone); a Notification was expected")
            notification = Notification.model_validate_json(record.value)
        except ValidationError as exc:
            await self._dead_letter(record, f"not a Notification: {validation_reason(exc)}")
            return
        except ValueError as exc:
            await self._dead_letter(record, str(exc))
            return
        self.stats.messages += 1
        self.metrics.notifications.inc()
        contacts = self.directory.resolve(notification)
        deliveries = plan(notification, contacts, self.config, self.directory.audience(notification))
        await asyncio.gather(*(self._deliver(tp, state, d) for d in deliveries))

    async def _deliver(self, tp: TopicPartition, state: _Partition, delivery: Delivery) -> None:
        n = delivery.notification
        if delivery.action is None:
            log.warning(
                "notify: %s %s to %s failed: %s",
                delivery.channel,
                n.key,
                delivery.contact_id,
                delivery.reason,
            )
            await self._report(delivery, Outcome.FAILED, 0, delivery.reason)
            return
        async with self._locks.hold(delivery.ledger_key):
            if delivery.ledger_key in state.ledger:
                self.stats.skipped += 1
                self.metrics.skipped.inc()
                log.info(
                    "notify: %s %s to %s already in the ledger", delivery.channel, n.key, delivery.contact_id
                )
                return
            attempt_no = 0
            while True:
                attempt_no += 1
                async with self._send_slots:
                    started = time.monotonic()
                    attempt = await self._send(delivery)
                    self.metrics.send_seconds.labels(delivery.channel).observe(time.monotonic() - started)
                outcome = next_outcome(attempt_no, attempt, self.settings.notify_max_attempts)
                if outcome is Outcome.SENT:
                    await self._produce(
                        self.topics.notify_ledger,
                        delivery.ledger_key,
                        n.model_dump_json().encode(),
                        partition=tp.partition,
                    )
                    state.ledger.add(delivery.ledger_key)
                log.log(
                    logging.INFO if outcome is Outcome.SENT else logging.WARNING,
                    "notify: %s %s to %s %s (attempt %d)%s",
                    delivery.channel,
                    n.key,
                    delivery.contact_id,
                    outcome.value,
                    attempt_no,
                    f": {attempt.error}" if attempt.error else "",
                )
                await self._report(delivery, outcome, attempt_no, attempt.error)
                if outcome is not Outcome.RETRYING:
                    return
                await asyncio.sleep(backoff_s(attempt_no, self.settings.notify_backoff_s))

    async def _send(self, delivery: Delivery) -> Attempt:
        assert self.sender is not None
        assert delivery.action is not None
        return await self.sender.send(delivery.action)

    async def _report(self, delivery: Delivery, outcome: Outcome, attempt_no: int, error: str) -> None:
        """The outcome to the case engine (case-commands, key case id), acknowledged."""
        command = outcome_command(delivery, outcome, attempt_no, error, self.clock.now())
        await self._produce(self.topics.case_commands, command.case_id, command.model_dump_json().encode())
        self.metrics.outcomes.labels(delivery.channel, outcome.value).inc()
        if outcome is Outcome.SENT:
            self.stats.sent += 1
        elif outcome is Outcome.RETRYING:
            self.stats.retries += 1
        else:
            self.stats.failed += 1

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        letter = DeadLetter(
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            consumer=CONSUMER,
            reason=reason,
            payload=(record.value or b"")[:PAYLOAD_MAX].decode(errors="replace"),
            rejected_at=self.clock.now(),
        )
        key = f"{record.topic}:{record.partition}:{record.offset}"
        await self._produce(self.topics.dead_letter, key, letter.model_dump_json().encode())
        self.stats.dead_letters += 1
        self.metrics.dead_letters.inc()
        log.warning("notify: %s dead-lettered: %s", key, reason)

    async def _produce(self, topic: str, key: str, value: bytes, partition: int | None = None) -> None:
        """Write one record and wait for its ack (acks=all); Kafka errors are retried until it lands."""
        assert self._producer is not None
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._producer.send_and_wait(topic, value=value, key=key.encode(), partition=partition)
                return
            except KafkaError as exc:
                log.warning("notify: writing to %s failed (attempt %d): %s", topic, attempt, exc)
                await asyncio.sleep(backoff_s(attempt, self.settings.notify_backoff_s))


async def _main(settings: Settings) -> NotifierStats:
    service = NotifierService(settings)
    metrics_server = None
    if settings.notify_metrics_port:
        metrics_server = service.metrics.serve(settings.notify_metrics_port, addr=settings.metrics_host)
        log.info("notify: metrics on %s:%d/metrics", settings.metrics_host, settings.notify_metrics_port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop_event.set)
    try:
        return await service.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if metrics_server is not None:
            metrics_server.shutdown()


def run(settings: Settings) -> None:
    """`fleetwatch notify`: deliver notifications until SIGINT/SIGTERM. Blocking."""
    setup_logging(settings.log_level)
    stats = asyncio.run(_main(settings))
    log.info(
        "notify: stopped after %d notifications: %d sent, %d retries, %d failed, %d skipped, %d dead letters",
        stats.messages,
        stats.sent,
        stats.retries,
        stats.failed,
        stats.skipped,
        stats.dead_letters,
    )
