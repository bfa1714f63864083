"""The case engine agent: case-commands → case table → case events (the audit log) and notifications.

Every decision is `streams.cases.apply`; this module moves messages and keeps the tables:

* `cases`: case id → `Case` (state, clocks, chain head). Co-partitioned with case-commands (key = case id).
* `tickets`: partition → how many ticket numbers that partition has assigned (`streams.cases.ticket_number`
  turns partition and counter into a number no other partition can produce).

Order of effects per take: events and notifications are queued, the agent awaits the broker's acks, then
writes the tables; Faust commits the commands' offsets after that. A crash before the table write replays the
commands on the old state: `apply` is deterministic, so the replay re-emits byte-identical events (same ids,
same hashes) that readers dedupe; a crash after it finds the command ids in `Case.recent_commands` and emits
nothing.

Durable timers: deadlines live in the case rows (`streams.cases.next_due`). `due_scan` runs every
`timer_interval_s` on every worker, looks only at cases of the partitions this worker owns, and sends a TICK
command (deterministic id per deadline) for each due case; the engine re-checks the deadline when the TICK
arrives. After a restart the scan finds the same due rows (nothing missed); a repeated TICK has the same id
or finds nothing due (nothing fires twice).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from kafka.partitioner.default import murmur2
from prometheus_client import Counter
from pydantic import ValidationError

from casefile.signing import load_signer
from policy.sla import load_policy_book
from schemas.cases import CaseEventType
from schemas.commands import CaseCommand
from schemas.envelope import validation_reason
from schemas.topics import CASE_COMMANDS
from streams.app import StreamApp, dead_letter_of
from streams.cases import (
    TICKET_BASE,
    Case,
    EngineConfig,
    apply,
    next_due,
    tick_command,
    ticket_number,
)
from streams.tables import active_partitions

log = logging.getLogger(__name__)

COMMANDS = Counter("fleetwatch_engine_commands_total", "Case commands handled", ["type", "outcome"])
EVENTS = Counter("fleetwatch_engine_events_total", "Case events emitted", ["type"])
NOTIFICATIONS = Counter("fleetwatch_engine_notifications_total", "Notifications requested", ["channel"])
TICKS = Counter("fleetwatch_engine_ticks_sent_total", "TICK commands sent by the deadline timer")

REJECTED = CaseEventType.COMMAND_REJECTED

TICK_RESEND_S = 30.0
"""A TICK not answered within this many real seconds is sent again (same id: harmless if both arrive)."""


def engine_config(stream: StreamApp) -> EngineConfig:
    settings = stream.settings
    auto, keep = settings.auto_resolve_after_s, settings.closed_case_retention_days
    return EngineConfig(
        policies=load_policy_book(settings.sla_policy_file),
        auto_resolve_after=timedelta(seconds=auto) if auto else None,
        closed_retention=timedelta(days=keep) if keep else None,
    )


def ticket_counter(ticket: str, partition: int, partitions: int) -> int | None:
    """The partition counter a ticket number was drawn at (`streams.cases.ticket_number` inverted)."""
    try:
        n = int(ticket.removeprefix("FW-")) - TICKET_BASE - partition
    except ValueError:
        return None
    return n // partitions if n >= 0 and n % partitions == 0 else None


def case_partition(case_id: str, partitions: int = CASE_COMMANDS.partitions) -> int:
    """The case-commands partition of a case: Kafka's default partitioner on the key."""
    return int(murmur2(case_id.encode()) & 0x7FFFFFFF) % partitions


def install_engine(stream: StreamApp) -> None:
    """Register the case-engine agent and its deadline timer on the stream app."""
    CaseEngine(stream).install()


class CaseEngine:
    """The case-engine agent (`engine`) and its deadline timer (`timer`, `due_scan`) over one stream app's
    tables and outputs."""

    def __init__(self, stream: StreamApp) -> None:
        self.stream = stream
        self.cases, self.tickets, self.outputs = stream.cases, stream.tickets, stream.outputs
        self.config = engine_config(stream)
        self.signer = load_signer(stream.settings)
        self.floors: dict[int, int] = {}
        """partition → its ticket floor (`ticket_floor`), computed once per process."""
        self.sent: dict[str, tuple[datetime, float]] = {}
        """case id → (the deadline its last TICK was sent for, when: monotonic seconds)."""

    def install(self) -> None:
        """Register the agent and the timer on the stream's Faust app."""
        stream, app = self.stream, self.stream.app
        log.info("case engine: signing case events with key %s", self.signer.key_id)
        commands_topic = app.topic(
            stream.topics.case_commands, value_type=bytes, value_serializer="raw", key_serializer="raw"
        )
        stream.extras["ticket_floors"] = self.floors
        stream.engine = app.agent(commands_topic, name="engine", concurrency=1)(self.engine)
        stream.extras["due_scan"] = self.due_scan
        app.timer(interval=stream.settings.timer_interval_s)(self.timer)

    async def dead_letter(self, event: Any, reason: str, now: datetime) -> Any:
        COMMANDS.labels("invalid", "dead_letter").inc()
        return await self.outputs.dead_letter(dead_letter_of(event, "engine", reason, now))

    def ticket_floor(self, partition: int) -> int:
        """One past the highest ticket counter a case of this partition holds (computed once per process).

        The counter and the case rows are in two changelogs: a crash between the two writes could leave the
        counter behind the tickets already issued. Taking the max with this floor means no number is issued
        twice (a counter ahead of the rows only leaves a gap)."""
        floors = self.floors
        if partition not in floors:
            used = [  # a ticket drawn by another partition inverts to None
                ticket_counter(case.ticket, partition, CASE_COMMANDS.partitions)
                for case in self.cases.values()
                if case is not None and case.ticket
            ]
            floors[partition] = max((n + 1 for n in used if n is not None), default=0)
        return floors[partition]

    async def engine(self, stream_: Any) -> AsyncIterator[None]:  # a faust Stream of raw CaseCommand JSON
        """The agent: takes up to 100 commands at a time (`take`)."""
        async for events in stream_.take_events(100, within=0.01):
            await self.take(events)
            yield None

    async def take(self, events: list[Any]) -> None:
        """Apply one take of commands: send the events and notifications, await the acks, write the tables."""
        cases, tickets, outputs = self.cases, self.tickets, self.outputs
        now = self.stream.clock.now()
        changed: dict[str, tuple[int, Case | None]] = {}
        counters: dict[int, int] = {}
        acks: list[Any] = []
        for event in events:
            partition = event.message.partition
            try:
                command = CaseCommand.model_validate_json(event.value or b"")
            except ValidationError as exc:
                acks.append(
                    await self.dead_letter(event, f"invalid case command: {validation_reason(exc)}", now)
                )
                continue
            pending = changed.get(command.case_id)
            case: Case | None = pending[1] if pending else cases.get(command.case_id)
            counter = counters.get(partition)
            if counter is None:
                counter = max(tickets.get(str(partition)) or 0, self.ticket_floor(partition))
            decision = apply(
                case, command, self.config, ticket_number(partition, counter, CASE_COMMANDS.partitions)
            )
            if decision.dead_letter is not None:
                acks.append(await self.dead_letter(event, decision.dead_letter, now))
                continue
            outcome = "rejected" if any(e.type is REJECTED for e in decision.events) else "applied"
            COMMANDS.labels(command.type.value, outcome if decision.events else "noop").inc()
            for case_event in decision.events:
                EVENTS.labels(case_event.type.value).inc()
                acks.append(await outputs.case(self.signer.sign(case_event)))
            for note in decision.notifications:
                NOTIFICATIONS.labels(note.channel.value).inc()
                acks.append(await outputs.notification(note))
            if decision.ticket_used:
                counters[partition] = counter + 1
            if decision.purge:
                COMMANDS.labels(command.type.value, "purged").inc()
                changed[command.case_id] = (partition, None)
            elif decision.case is not None and decision.case is not case:
                changed[command.case_id] = (partition, decision.case)
        await asyncio.gather(*(a for a in acks if a is not None))
        for case_id, (partition, value) in changed.items():
            if value is None:  # purged: a tombstone
                cases.delete(partition, case_id)
            else:
                cases.put(partition, case_id, value)
        for partition, counter in counters.items():
            tickets.put(partition, str(partition), counter)

    async def due_scan(self, now: datetime, actives: set[int]) -> int:
        """Send a TICK for every due case of the `actives` partitions; returns how many were sent."""
        cases, sent = self.cases, self.sent
        count = 0
        for case_id, case in cases.items():
            if case_partition(case_id) not in actives:
                continue
            due = next_due(case, self.config)
            if due is None or due > now:
                sent.pop(case_id, None)
                continue
            last = sent.get(case_id)
            if last is not None and last[0] == due and time.monotonic() - last[1] < TICK_RESEND_S:
                continue
            sent[case_id] = (due, time.monotonic())
            await self.outputs.command(tick_command(case, now))
            TICKS.inc()
            count += 1
        for case_id in [k for k in sent if k not in cases]:
            del sent[case_id]
        return count

    async def timer(self) -> None:
        """The deadline timer: a `due_scan` of the partitions this worker owns."""
        actives = active_partitions(self.stream.app, self.stream.topics.case_commands)
        if actives:
            await self.due_scan(self.stream.clock.now(), actives)
