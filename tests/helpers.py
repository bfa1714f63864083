"""Test helpers: build probe results, send ProbeBatch messages, read topics, poll against a deadline."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.partitioner.default import murmur2

from schemas.cases import (
    CaseEvent,
    CaseEventType,
    CaseSource,
    DetailValue,
    Severity,
    event_id_for,
    monitor_case_id,
)
from schemas.commands import CaseCommand, CommandType
from schemas.probes import ProbeBatch, ProbeResult
from schemas.topics import PROBE_RESULTS

T = TypeVar("T")
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def result(server_id: str, n: int, ok: bool, customer_id: str = "acme", t0: datetime = T0) -> ProbeResult:
    """The n-th probe result of a server, one minute apart."""
    started = t0 + timedelta(minutes=n)
    return ProbeResult(
        server_id=server_id,
        customer_id=customer_id,
        probe_id=f"{server_id}@{int(started.timestamp() * 1000)}",
        started_at=started,
        latency_ms=12 if ok else 10000,
        ok=ok,
        status_code=200 if ok else None,
        error_class=None if ok else "timeout",
        error_message=None if ok else "no answer within 10 s",
        worker_id="test",
    )


def case_event(server_id: str, type_: CaseEventType, minute: int, **details: DetailValue) -> CaseEvent:
    """A monitor Sev1 event of the server's outage that started at T0, `minute` minutes after T0."""
    case_id = monitor_case_id(server_id, T0)
    return CaseEvent(
        event_id=event_id_for(case_id, type_),
        case_id=case_id,
        type=type_,
        severity=Severity.SEV1,
        source=CaseSource.MONITOR,
        server_id=server_id,
        customer_id="cust-1",
        at=T0 + timedelta(minutes=minute),
        details={"failures": 10, **details},
    )


def monitor_command(
    server_id: str,
    type_: CommandType,
    minute: int,
    severity: Severity | None = Severity.SEV1,
    **details: DetailValue,
) -> CaseCommand:
    """A monitor open / server_recovered command of the server's outage that started at T0 (detector ids)."""
    case_id = monitor_case_id(server_id, T0)
    opens = type_ is CommandType.OPEN
    title = f"{server_id} down: 10 consecutive failed status requests" if opens else ""
    return CaseCommand(
        command_id=f"{'open' if opens else 'recovered'}:{case_id}",
        case_id=case_id,
        type=type_,
        at=T0 + timedelta(minutes=minute),
        actor="monitor",
        source=CaseSource.MONITOR,
        customer_id="cust-1",
        server_id=server_id,
        severity=severity if opens else None,
        title=title,
        reason=title,
        details={"failures": 10, **details},
    )


def partition_of(
    server_id: str, partitions: int = PROBE_RESULTS.partitions, backup_of: str | None = None
) -> int:
    """The probe-results partition of a server's results: its primary's (`backup_of`) for a secondary."""
    return int(murmur2((backup_of or server_id).encode()) & 0x7FFFFFFF) % partitions


def send_results(bootstrap: str, topic: str, results: list[ProbeResult], tag: str = "b") -> None:
    """Send results as ProbeBatch messages, one per partition, like a probe worker does."""
    by_part: dict[int, list[ProbeResult]] = {}
    for r in results:
        by_part.setdefault(partition_of(r.server_id, backup_of=r.backup_of), []).append(r)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for part, items in sorted(by_part.items()):
        batch = ProbeBatch(
            batch_id=f"{tag}-{part}-{time.monotonic_ns()}", worker_id="test", partition=part, results=items
        )
        producer.send(topic, value=batch.model_dump_json().encode(), partition=part)
    producer.flush()
    producer.close()


def send_raw(bootstrap: str, topic: str, value: bytes, partition: int = 0) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer.send(topic, value=value, partition=partition).get(timeout=30)
    producer.close()


class TopicReader:
    """Reads every message of a topic from the beginning, incrementally."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        parts = wait_for(lambda: self.consumer.partitions_for_topic(topic), 60, f"topic {topic} to exist")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.messages: list[tuple[bytes | None, bytes | None]] = []

    def poll(self) -> list[tuple[bytes | None, bytes | None]]:
        for records in self.consumer.poll(timeout_ms=200).values():
            self.messages.extend((r.key, r.value) for r in records)
        return self.messages

    def close(self) -> None:
        self.consumer.close()


def wait_for(
    predicate: Callable[[], T | None], timeout: float = 60.0, what: str = "condition", interval: float = 0.05
) -> T:
    """Poll `predicate` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)  # poll interval of the deadline loop, not a wait for a result


async def eventually(
    condition: Callable[[], object | Awaitable[object]], timeout_s: float, what: str, interval: float = 0.05
) -> float:
    """Async deadline poll: await until `condition()` (sync or async) is truthy; the seconds it took."""
    start = time.monotonic()
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(interval)  # poll interval of the deadline loop, not a wait for a result


def fleetwatch_env(**settings: object) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in settings.items():
        env[f"FLEETWATCH_{key.upper()}"] = str(value)
    return env


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `fleetwatch <args>` as a child process, output to a log file."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "fleetwatch.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def stop(proc: subprocess.Popen[bytes], kill: bool = False) -> None:
    if proc.poll() is None:
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def iter_lines(path: Path) -> Iterator[str]:
    yield from path.read_text(errors="replace").splitlines()


class ManualClock:
    """A clock (fleetcore.clock.Clock) that moves only when the test says so."""

    def __init__(self) -> None:
        self.t = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.t

    def scale(self) -> float:
        return 1.0

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)
