"""The Faust app: the detector agent over probe-results, its streak table, and the case topic it feeds.

Thin wiring only; every decision is `streams.detector.observe`. One probe-results message is a ProbeBatch
bound for one partition (server ids hashed like Kafka's default partitioner), so each server's results and
its table row stay with one worker. Malformed envelopes and invalid results go to the dead-letter topic with
the reason; the rest of the batch is processed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import faust
from prometheus_client import Counter

from fleetcore.clock import Clock, SystemClock
from fleetcore.settings import Settings
from schemas.cases import CaseEvent
from schemas.deadletter import DeadLetter
from schemas.envelope import decode_probe_batch, item_payload
from schemas.topics import PROBE_RESULTS, Topics
from streams import codec
from streams.detector import INITIAL, ServerStreak, observe

log = logging.getLogger(__name__)

RESULTS = Counter("fleetwatch_stream_results_total", "Probe results seen by the detector", ["outcome"])
CASE_EVENTS = Counter("fleetwatch_stream_case_events_total", "Case events emitted", ["type"])
DEAD_LETTERS = Counter("fleetwatch_stream_dead_letters_total", "Messages or items dead-lettered")
TABLE_WRITES = Counter("fleetwatch_stream_table_writes_total", "Streak table writes")


@dataclass
class Outputs:
    """Where the agent's outputs go; tests replace the senders (agents' sends need a broker)."""

    case: Callable[[CaseEvent], Awaitable[Any]]
    dead_letter: Callable[[DeadLetter], Awaitable[Any]]


@dataclass
class StreamApp:
    """The app and the handles tests and the worker need."""

    app: faust.App
    topics: Topics
    streaks: Any
    agent: Any
    outputs: Outputs
    clock: Clock = field(default_factory=SystemClock)


def create_app(settings: Settings, clock: Clock | None = None) -> StreamApp:
    """Build the Faust app for these settings."""
    codec.register_codecs()
    clock = clock or SystemClock()
    names = Topics(settings.topic_prefix)
    data_dir = settings.data_dir / "stream" / f"{settings.topic_prefix}{settings.stream_app_id}"
    data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{settings.topic_prefix}{settings.stream_app_id}",
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")],
        store="memory://",
        datadir=str(data_dir),
        topic_partitions=PROBE_RESULTS.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        broker_commit_interval=1.0,
        producer_acks=-1,
        producer_linger=0.005,
        consumer_max_fetch_size=4 * 1024 * 1024,  # 1 MiB stalls catch-up on a 1.5 s long poll: bench/README
        web_enabled=settings.stream_web_port > 0,
        web_bind="127.0.0.1",
        web_port=settings.stream_web_port or 6066,
        web_host="127.0.0.1",
        table_standby_replicas=0,
        key_serializer="raw",
    )
    results_topic = app.topic(
        names.probe_results,
        value_type=bytes,
        value_serializer="raw",
        key_serializer="raw",
        partitions=PROBE_RESULTS.partitions,
        internal=False,
    )
    cases_topic = app.topic(names.cases, value_serializer=codec.CASE_EVENT, key_serializer="raw")
    dlq_topic = app.topic(names.dead_letter, value_serializer=codec.DEAD_LETTER, key_serializer="raw")
    streaks: Any = app.Table("streaks", default=None, partitions=PROBE_RESULTS.partitions, key_type=str)
    # The constructor rejects value_serializer and has already built its changelog topic with "json":
    # set the codec, then rebuild the changelog topic so restored rows decode as ServerStreak too.
    streaks.value_serializer = codec.SERVER_STREAK
    streaks.changelog_topic = streaks._new_changelog_topic()

    async def send_case(event: CaseEvent) -> Any:
        return await cases_topic.send(key=event.case_id.encode(), value=event)

    async def send_dead_letter(letter: DeadLetter) -> Any:
        key = f"{letter.source_topic}:{letter.partition}:{letter.offset}"
        return await dlq_topic.send(key=key.encode(), value=letter)

    outputs = Outputs(case=send_case, dead_letter=send_dead_letter)
    threshold = settings.failure_threshold
    ok_results, failed_results = RESULTS.labels("ok"), RESULTS.labels("failed")
    within_s = settings.stream_batch_within_ms / 1000

    async def dead_letter(event: Any, index: int | None, reason: str, now: datetime) -> None:
        message = event.message
        DEAD_LETTERS.inc()
        await outputs.dead_letter(
            DeadLetter(
                source_topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                item=index,
                consumer="stream",
                reason=reason,
                payload=item_payload(event.value, index),
                rejected_at=now,
            )
        )

    async def detect(stream: Any) -> AsyncIterator[None]:  # a faust Stream of raw envelopes
        # Takes up to stream_batch_max envelopes (or what came within stream_batch_within_ms) and writes each
        # server's changed streak once per take: one changelog message instead of one per changed result.
        # Faust acks the take's events only after this body, so offsets never run ahead of the writes.
        async for events in stream.take_events(settings.stream_batch_max, within=within_s):
            now = clock.now()
            changed: dict[str, tuple[int, ServerStreak]] = {}
            failed = total = 0
            for event in events:
                decoded = decode_probe_batch(event.value)
                for index, reason in decoded.rejected:
                    await dead_letter(event, index, reason, now)
                partition = event.message.partition
                for result in decoded.results:
                    failed += not result.ok
                    pending = changed.get(result.server_id)
                    before: ServerStreak = (
                        pending[1] if pending else (streaks.get(result.server_id) or INITIAL)
                    )
                    after, case_events = observe(before, result, now, threshold)
                    for case_event in case_events:
                        CASE_EVENTS.labels(case_event.type.value).inc()
                        await outputs.case(case_event)
                    if after is not before:
                        changed[result.server_id] = (partition, after)
                total += len(decoded.results)
            for server_id, (partition, streak) in changed.items():
                # the changelog partition is the source partition: a server's results all land on one
                streaks.data[server_id] = streak
                streaks.send_changelog(partition, server_id, streak)
            TABLE_WRITES.inc(len(changed))
            ok_results.inc(total - failed)
            failed_results.inc(failed)
            yield None

    agent = app.agent(results_topic, name="detector", concurrency=1)(detect)
    return StreamApp(app=app, topics=names, streaks=streaks, agent=agent, outputs=outputs, clock=clock)
