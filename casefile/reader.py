"""Read case events from the case topic (kafka-python): one read path, every partition.

The case engine keys every event by its case id and the producer partitions with Kafka's default
partitioner (murmur2 of the key), so one case's events all sit in one partition, in chain order: the case's
"home" partition. But anyone who can write to the topic can put a copy of an event anywhere (kcat's default
partitioner is not murmur2), so a lookup by case id and a lookup by ticket read the same thing: every
partition (`read_log`). An event of a case found outside its home partition is a verification failure
(`casefile.audit.verify_located`), never part of the case's view.

A read goes up to the end offsets taken when it starts: it is a snapshot, and it ends. Messages that do
not decode are reported in `ReadResult.problems` (partition, offset, why), never fatal; `CaseLog` files
each under the case its key names, so it fails that case's audit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2
from pydantic import ValidationError

from casefile.audit import Located
from fleetcore.errors import BrokerError
from schemas.cases import CaseEvent

READ_TIMEOUT_S = 30.0
BOOTSTRAP_TIMEOUT_MS = 10_000
"""How long a CLI client tries to reach the broker before it says so (kafka-python's default is 30 s)."""


class CaseTopicError(BrokerError):
    """The case topic could not be read (missing, unreachable, or too slow)."""


@dataclass
class ReadResult:
    """Events read (log order per partition), what could not be decoded, and where the read ended."""

    events: list[CaseEvent] = field(default_factory=list)
    located: list[Located] = field(default_factory=list)
    """The same events with their partition, offset and whether that is their case's partition."""
    problems: list[str] = field(default_factory=list)
    """One line per message that was skipped: partition, offset and the reason."""
    problem_keys: list[str | None] = field(default_factory=list)
    """The key (as text) of each skipped message, in the order of `problems` (None: no key)."""
    end_offsets: dict[int, int] = field(default_factory=dict)
    """Partition -> the offset the read stopped at (the end offset when it started)."""
    partition_count: int = 0
    """How many partitions the topic has."""


def partition_for_case(case_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives the key `case_id` (UTF-8) among `partitions`."""
    hashed: int = murmur2(case_id.encode("utf-8"))
    return (hashed & 0x7FFFFFFF) % partitions


def decode(partition: int, offset: int, key: bytes | None, value: bytes | None) -> CaseEvent | str:
    """One case-topic message as an event, or a line saying why it is not one."""
    where = f"partition {partition} offset {offset}"
    if value is None:
        return f"{where}: empty value"
    try:
        event = CaseEvent.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"]) or "value"
        return f"{where}: not a case event ({loc}: {first['msg']})"
    if key is not None and key != event.case_id.encode("utf-8"):
        return f"{where}: key {key.decode('utf-8', errors='replace')!r} but case_id {event.case_id!r}"
    return event


def consumer(bootstrap: str) -> KafkaConsumer:
    """A group-less consumer that never commits (the CLI reads snapshots)."""
    try:
        return KafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id="fleetwatch-case-reader",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        )
    except KafkaError as exc:
        raise CaseTopicError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc


def partitions_of(client: KafkaConsumer, topic: str) -> list[int]:
    """The topic's partitions; CaseTopicError when the topic does not exist."""
    parts = sorted(client.partitions_for_topic(topic) or ())
    if not parts:
        raise CaseTopicError(f"topic {topic} does not exist (is the topic prefix right?)")
    return parts


def read_events(
    bootstrap: str, topic: str, case_id: str | None = None, timeout_s: float = READ_TIMEOUT_S
) -> ReadResult:
    """Every event on `topic` up to its current end (every partition); with `case_id`, only the messages
    whose key or `case_id` is that case, wherever they are."""
    client = consumer(bootstrap)
    try:
        parts = partitions_of(client, topic)
        count = len(parts)
        result = _read(client, topic, parts, count, case_id, timeout_s)
        result.partition_count = count
        return result
    except KafkaError as exc:
        raise CaseTopicError(f"reading {topic} failed: {exc}") from exc
    finally:
        client.close(autocommit=False)


def _read(
    client: KafkaConsumer, topic: str, parts: list[int], count: int, case_id: str | None, timeout_s: float
) -> ReadResult:
    tps = [TopicPartition(topic, p) for p in parts]
    client.assign(tps)
    client.seek_to_beginning(*tps)
    end = client.end_offsets(tps, timeout_ms=int(timeout_s * 1000))
    out = ReadResult(end_offsets={tp.partition: end[tp] for tp in tps})
    wanted = case_id.encode("utf-8") if case_id is not None else None
    deadline = time.monotonic() + timeout_s
    pending = [tp for tp in tps if client.position(tp) < end[tp]]
    while pending:
        if time.monotonic() > deadline:
            raise CaseTopicError(f"reading {topic} took longer than {timeout_s} s")
        for tp, records in client.poll(timeout_ms=200).items():
            for record in records:
                if record.offset >= end[tp]:
                    continue
                decoded = decode(tp.partition, record.offset, record.key, record.value)
                if isinstance(decoded, str):
                    if wanted is None or record.key == wanted:
                        out.problems.append(decoded)
                        key = record.key
                        out.problem_keys.append(key.decode("utf-8", "replace") if key is not None else None)
                elif wanted is None or record.key == wanted or decoded.case_id == case_id:
                    home = partition_for_case(decoded.case_id, count) == tp.partition
                    out.events.append(decoded)
                    out.located.append(Located(decoded, tp.partition, record.offset, home))
        pending = [tp for tp in pending if client.position(tp) < end[tp]]
    return out


@dataclass
class CaseLog:
    """The case topic filed by case: each case's events with where they sit, and its unreadable messages."""

    cases: dict[str, list[Located]] = field(default_factory=dict)
    """Case id -> its events in log order (home partition first, then other partitions in order)."""
    problems: dict[str, list[str]] = field(default_factory=dict)
    """Case id (the message key) -> messages with that key that could not be read as its events."""
    unkeyed: list[str] = field(default_factory=list)
    """Unreadable messages without a key (no case to file them under)."""
    end_offsets: dict[int, int] = field(default_factory=dict)
    partition_count: int = 0

    def home_events(self, case_id: str) -> list[CaseEvent]:
        """The case's events in its own partition, in log order (what its view is folded from)."""
        return [item.event for item in self.cases.get(case_id, []) if item.home]

    def end_offset(self, case_id: str) -> int | None:
        """The end offset the case's partition had when the read started."""
        if not self.partition_count:
            return None
        return self.end_offsets.get(partition_for_case(case_id, self.partition_count))


def case_log(result: ReadResult) -> CaseLog:
    """`result` filed by case (pure)."""
    log = CaseLog(end_offsets=dict(result.end_offsets), partition_count=result.partition_count)
    ordered = sorted(result.located, key=lambda item: (not item.home, item.partition, item.offset))
    for item in ordered:
        log.cases.setdefault(item.event.case_id, []).append(item)
    for problem, key in zip(result.problems, result.problem_keys, strict=True):
        if key is None:
            log.unkeyed.append(problem)
        else:
            log.problems.setdefault(key, []).append(problem)
    return log


def read_log(bootstrap: str, topic: str, timeout_s: float = READ_TIMEOUT_S) -> CaseLog:
    """The whole case topic (every partition, up to its current end), filed by case."""
    return case_log(read_events(bootstrap, topic, timeout_s=timeout_s))
