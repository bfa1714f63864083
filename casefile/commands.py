"""Send a case command to the case engine and wait for its answer on the case topic (kafka-python).

The engine answers every command with one or more events carrying the command's `command_id` (a rejected
command: one `command.rejected` event whose reason says why). The answer lands in the case's partition of
the case topic; `await_answer` reads that partition only, from the offset the caller noted before sending
(so an answer written before the wait starts is not missed), and returns once the answer has arrived and
nothing more for the command follows within a short settle time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from casefile.reader import (
    BOOTSTRAP_TIMEOUT_MS,
    CaseTopicError,
    consumer,
    decode,
    partition_for_case,
    partitions_of,
)
from fleetcore.errors import BrokerError
from schemas.cases import CaseEvent, CaseEventType
from schemas.commands import CaseCommand

SEND_TIMEOUT_S = 30.0
SETTLE_S = 0.3
"""After the first answering event, how long to keep reading for more events of the same command."""


class CommandSendError(BrokerError):
    """The command could not be written to the case-commands topic."""


@dataclass
class Answer:
    """The engine's events for one command (empty: no answer within the time allowed)."""

    events: list[CaseEvent] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        return bool(self.events)

    @property
    def rejected(self) -> CaseEvent | None:
        """The `command.rejected` event, if the engine rejected the command."""
        return next((e for e in self.events if e.type is CaseEventType.COMMAND_REJECTED), None)


def send_command(
    bootstrap: str, topic: str, command: CaseCommand, timeout_s: float = SEND_TIMEOUT_S
) -> tuple[int, int]:
    """Write `command` (key: case id, acks=all); returns its (partition, offset)."""
    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            client_id="fleetwatch-case-cli",
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        )
    except KafkaError as exc:
        raise CommandSendError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        future = producer.send(
            topic, key=command.case_id.encode("utf-8"), value=command.model_dump_json().encode("utf-8")
        )
        meta = future.get(timeout=timeout_s)
    except KafkaError as exc:
        raise CommandSendError(f"could not send the command to {topic}: {exc}") from exc
    finally:
        producer.close(timeout=5)
    return int(meta.partition), int(meta.offset)


def answer_mark(bootstrap: str, cases_topic: str, case_id: str) -> int:
    """The end offset of the case's partition of the case topic now: where its answer will be after."""
    client = consumer(bootstrap)
    try:
        parts = partitions_of(client, cases_topic)
        tp = TopicPartition(cases_topic, partition_for_case(case_id, len(parts)))
        return int(client.end_offsets([tp])[tp])
    except KafkaError as exc:
        raise CaseTopicError(f"reading {cases_topic} failed: {exc}") from exc
    finally:
        client.close(autocommit=False)


def await_answer(
    bootstrap: str,
    cases_topic: str,
    command: CaseCommand,
    timeout: float,
    since: int | None = None,
    settle_s: float = SETTLE_S,
) -> Answer:
    """The events answering `command`, read from offset `since` (None: the partition's beginning).

    Waits at most `timeout` seconds for the first one; an empty Answer means none came in time.
    """
    client = consumer(bootstrap)
    answer = Answer()
    seen: set[tuple[str, str]] = set()
    wanted = command.case_id.encode("utf-8")
    try:
        parts = partitions_of(client, cases_topic)
        tp = TopicPartition(cases_topic, partition_for_case(command.case_id, len(parts)))
        client.assign([tp])
        if since is None:
            client.seek_to_beginning(tp)
        else:
            client.seek(tp, since)
        deadline = time.monotonic() + timeout
        quiet_until: float | None = None
        while True:
            now = time.monotonic()
            if quiet_until is not None and now >= quiet_until:
                return answer
            if quiet_until is None and now >= deadline:
                return answer
            limit = (quiet_until if quiet_until is not None else deadline) - now
            for records in client.poll(timeout_ms=max(1, int(min(limit, 0.2) * 1000))).values():
                for record in records:
                    if record.key != wanted:
                        continue
                    event = decode(tp.partition, record.offset, record.key, record.value)
                    if isinstance(event, str) or event.command_id != command.command_id:
                        continue
                    if (event.event_id, event.hash) not in seen:
                        seen.add((event.event_id, event.hash))
                        answer.events.append(event)
                        quiet_until = time.monotonic() + settle_s
    except KafkaError as exc:
        raise CaseTopicError(f"reading {cases_topic} failed: {exc}") from exc
    finally:
        client.close(autocommit=False)
