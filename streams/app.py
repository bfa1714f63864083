"""The Faust app of the stream worker: the detector agent and the case engine, with their tables and topics.

Thin wiring only; every decision is pure code (`streams.redundancy.Detector`, `streams.cases.apply`,
`policy.sla`). Two agents share one app (one consumer group):

* detector (`streams.detection`): probe-results → streak table → CaseCommands (open, recovered, severity).
* case engine (`streams.engine`): case-commands → case table (+ per-partition ticket counters) → CaseEvents on
  the case topic (the audit log) and Notifications; a timer scans the worker's active case partitions for due
  deadlines and sends TICK commands back to the engine.

Outputs go through `Outputs`, whose senders return an awaitable that completes once Kafka acknowledged
the message; agents await them before writing their tables, so a crash can repeat an output (deterministic
ids, the engine's command-id check and consumers' dedupe absorb that) but never lose one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import faust

from fleetcore.clock import Clock, clock_for
from fleetcore.settings import Settings
from schemas.cases import CaseEvent
from schemas.commands import CaseCommand
from schemas.deadletter import DeadLetter
from schemas.envelope import item_payload
from schemas.notifications import Notification
from schemas.topics import CASE_COMMANDS, PROBE_RESULTS, Topics
from streams import codec, idempotent
from streams.cases import Case
from streams.detector import ServerStreak
from streams.tables import TableStore, new_table

log = logging.getLogger(__name__)

Send = Callable[[Any], Awaitable[Awaitable[Any] | None]]
"""Queue one message; the returned awaitable (if any) completes when the broker acknowledged it."""


@dataclass
class Outputs:
    """Where the agents' outputs go; unit tests replace the senders (agents' sends need a broker)."""

    case: Callable[[CaseEvent], Awaitable[Awaitable[Any] | None]]
    command: Callable[[CaseCommand], Awaitable[Awaitable[Any] | None]]
    notification: Callable[[Notification], Awaitable[Awaitable[Any] | None]]
    dead_letter: Callable[[DeadLetter], Awaitable[Awaitable[Any] | None]]


@dataclass
class StreamApp:
    """The app and the handles tests and the worker need."""

    app: faust.App
    topics: Topics
    settings: Settings
    streaks: TableStore[ServerStreak]
    """Server id → detector state (`streams.detection`)."""
    cases: TableStore[Case]
    """Case id → case (`streams.engine`)."""
    tickets: TableStore[int]
    """Partition → ticket numbers that partition has assigned (`streams.engine`)."""
    outputs: Outputs
    clock: Clock
    agent: Any = None
    """The detector agent."""
    engine: Any = None
    """The case-engine agent."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Wiring parts tests may poke (the maintenance book, the timer function)."""


def dead_letter_of(
    event: Any, consumer: str, reason: str, now: datetime, index: int | None = None
) -> DeadLetter:
    """The dead letter of a Faust event (or of item `index` of its batch) that `consumer` rejected."""
    message = event.message
    return DeadLetter(
        source_topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        item=index,
        consumer=consumer,
        reason=reason,
        payload=item_payload(event.value, index),
        rejected_at=now,
    )


def create_app(settings: Settings, clock: Clock | None = None) -> StreamApp:
    """Build the Faust app (both agents, tables, the deadline timer) for these settings."""
    from streams.detection import install_detector
    from streams.engine import install_engine

    codec.register_codecs()
    clock = clock or clock_for(settings.clock_scale, settings.clock_origin_ms)
    names = Topics(settings.topic_prefix)
    data_dir = settings.data_dir / "stream" / f"{settings.topic_prefix}{settings.stream_app_id}"
    data_dir.mkdir(parents=True, exist_ok=True)
    idempotent.register()
    app = faust.App(
        f"{settings.topic_prefix}{settings.stream_app_id}",
        # fwkafka: Faust's aiokafka transport with an idempotent producer (streams/idempotent.py)
        broker=[f"{idempotent.SCHEME}://{h.strip()}" for h in settings.kafka_bootstrap.split(",")],
        store="memory://",
        datadir=str(data_dir),
        topic_partitions=PROBE_RESULTS.partitions,
        topic_replication_factor=settings.topic_replication_factor or 1,  # the worker resolves 0
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
    cases_topic = app.topic(names.cases, value_serializer=codec.CASE_EVENT, key_serializer="raw")
    commands_out = app.topic(names.case_commands, value_serializer=codec.CASE_COMMAND, key_serializer="raw")
    notify_topic = app.topic(names.notifications, value_serializer=codec.NOTIFICATION, key_serializer="raw")
    dlq_topic = app.topic(names.dead_letter, value_serializer=codec.DEAD_LETTER, key_serializer="raw")

    async def send_case(event: CaseEvent) -> Awaitable[Any]:
        return await cases_topic.send(key=event.case_id.encode(), value=event)

    async def send_command(command: CaseCommand) -> Awaitable[Any]:
        return await commands_out.send(key=command.case_id.encode(), value=command)

    async def send_notification(note: Notification) -> Awaitable[Any]:
        return await notify_topic.send(key=note.key.encode(), value=note)

    async def send_dead_letter(letter: DeadLetter) -> Awaitable[Any]:
        key = f"{letter.source_topic}:{letter.partition}:{letter.offset}"
        return await dlq_topic.send(key=key.encode(), value=letter)

    stream = StreamApp(
        app=app,
        topics=names,
        settings=settings,
        streaks=TableStore(new_table(app, "streaks", PROBE_RESULTS.partitions, codec.SERVER_STREAK)),
        cases=TableStore(new_table(app, "cases", CASE_COMMANDS.partitions, codec.CASE)),
        tickets=TableStore(new_table(app, "tickets", CASE_COMMANDS.partitions, None)),
        outputs=Outputs(
            case=send_case,
            command=send_command,
            notification=send_notification,
            dead_letter=send_dead_letter,
        ),
        clock=clock,
    )
    install_detector(stream)
    install_engine(stream)
    return stream
