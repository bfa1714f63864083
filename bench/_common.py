"""Shared pieces of the benchmarks: a private Kafka broker, a synthetic fleet, producers, polling, tables.

Nothing here is imported by fleetwatch itself. The fleet is deterministic (no randomness), so every tool in
one run sees exactly the same results and the expected case count can be computed from the pattern.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from probes.partitioner import partition_for
from schemas.probes import ProbeBatch
from schemas.topics import PROBE_RESULTS

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = PROBE_RESULTS.partitions
T0 = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
PROBE_EVERY = timedelta(seconds=60)


# -- output ------------------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain text table, numbers right-aligned."""
    cells = [[str(c) for c in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str], is_header: bool = False) -> str:
        out = []
        for i, cell in enumerate(row):
            numeric = not is_header and re.fullmatch(r"[-+0-9.,x% ]+", cell or "-") is not None
            out.append(cell.rjust(widths[i]) if numeric else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0], True), sep, *(line(r) for r in cells[1:])])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def log(message: str) -> None:
    """Progress line on stderr (the tables go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- processes, ports, polling -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `predicate` until truthy, or raise TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM one child we started (by its PID), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def python_child(args: list[str], env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    """Start `python <args>` from the repo root with output to a log file."""
    env = {**env, "PYTHONPATH": f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep)}
    with log_file.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


@dataclass
class Span:
    """When a measured process's progress counter started moving and when it reached the target."""

    first: float
    """time.monotonic() of the first non-zero reading (system-wide clock, comparable across processes)."""
    done: float
    """time.monotonic() of the reading at the target."""
    cpu: float
    """CPU seconds the measured process used (all its threads) from first to done."""
    timeline: list[tuple[float, float]]
    """(seconds since first, counter) about every 0.1 s."""

    @property
    def seconds(self) -> float:
        return self.done - self.first


def progress_env(path: Path, target: int) -> dict[str, str]:
    """Environment that arms bench/_progress.py in a child."""
    from _progress import ENV_FILE, ENV_TARGET

    return {ENV_TARGET: str(target), ENV_FILE: str(path)}


def wait_progress(path: Path, timeout: float, alive: Callable[[], bool]) -> Span:
    """Wait for a child's progress file (see bench/_progress.py)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if not alive():
            raise RuntimeError("the measured process exited before processing everything")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no progress file {path} after {timeout:.0f} s")
        time.sleep(0.05)
    data = orjson.loads(path.read_bytes())
    return Span(data["first"], data["done"], data["cpu"], [tuple(x) for x in data["timeline"]])


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_percent(seconds: float = 0.5) -> float:
    """Share of all CPUs busy over the next `seconds` (other work on the machine, between measurements)."""
    busy0, total0 = _cpu_times()
    time.sleep(seconds)
    busy1, total1 = _cpu_times()
    return 100.0 * (busy1 - busy0) / max(1, total1 - total0)


class QuietGate:
    """Before each measurement, wait for other work on the machine to settle: until its CPUs are less than
    `threshold`% busy, at most `per_run` s each time and `total` s over the whole benchmark (so a busy machine
    delays the run a bounded time). Other processes (tests of other sessions, builds) skew wall-clock rates;
    the busy share seen just before each run is reported beside its figures."""

    def __init__(self, per_run: float, total: float, threshold: float = 15.0) -> None:
        self.per_run = per_run
        self.left = total
        self.threshold = threshold

    def wait(self) -> float:
        """Wait as allowed; return the last reading of the machine's busy share (%)."""
        started = time.monotonic()
        deadline = started + min(self.per_run, self.left)
        busy = busy_percent()
        if busy >= self.threshold and time.monotonic() < deadline:
            log(
                f"machine {busy:.0f}% busy with other work: waiting up to "
                f"{deadline - time.monotonic():.0f} s for it to settle"
            )
            while busy >= self.threshold and time.monotonic() < deadline:
                busy = busy_percent(1.0)
        self.left = max(0.0, self.left - (time.monotonic() - started))
        return busy


# -- broker ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A temporary directory removed at the end (kept when BENCH_KEEP=1, for the logs)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if os.environ.get("BENCH_KEEP") == "1":
            log(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def local_broker(tmp: Path) -> Iterator[str]:
    """A private Kafka 4.4 broker on free ports; stopped by its own PID at the end."""
    from fleetwatch.kafka_local import LocalKafka

    broker = LocalKafka(tmp / "kafka", heap="768m")
    started = time.monotonic()
    broker.start()
    log(f"broker {broker.bootstrap} (pid {broker.pid}) ready in {time.monotonic() - started:.1f} s")
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@contextlib.contextmanager
def broker(tmp: Path, bootstrap: str | None, prefix: str = "bench-") -> Iterator[str]:
    """The private broker of `local_broker`, or an existing one at `bootstrap` (e.g. a development broker).

    On an existing broker, the topics and consumer groups this run created (names starting with `prefix`
    that were not there before) are deleted at the end; nothing else on it is touched.
    """
    if bootstrap is None:
        with local_broker(tmp) as own:
            yield own
        return
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")

    def groups() -> set[str]:
        return {str(g["group_id"]) for g in admin.list_groups()}

    try:
        topics_before, groups_before = set(admin.list_topics()), groups()
        log(f"using the broker at {bootstrap} ({len(topics_before)} topics)")
        yield bootstrap
    finally:
        topics = sorted(t for t in set(admin.list_topics()) - topics_before if t.startswith(prefix))
        made = sorted(g for g in groups() - groups_before if g.startswith(prefix))
        try:  # cleanup only: report a failure, never mask the run's own error
            if made:
                admin.delete_groups(made)
            if topics:
                admin.delete_topics(topics, timeout_ms=30_000)
            log(f"deleted the {len(topics)} topics and {len(made)} consumer groups this run created")
        except Exception as exc:
            log(f"could not delete this run's topics {topics} or groups {made}: {exc}")
        admin.close()


def create_topic(bootstrap: str, name: str, partitions: int, config: dict[str, str] | None = None) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-admin")
    try:
        admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config or {})])
        wait_for(
            lambda: all(
                t.get("error_code", 0) == 0 and t.get("partitions") for t in admin.describe_topics([name])
            ),
            30,
            f"topic {name}",
        )
    finally:
        admin.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = wait_for(lambda: consumer.partitions_for_topic(topic), 30, f"topic {topic}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def read_records(
    bootstrap: str, topic: str, expect: int | None = None, timeout: float = 60.0
) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every record (partition, key, value) of a topic, waiting until at least `expect` when given."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = wait_for(lambda: consumer.partitions_for_topic(topic), 30, f"topic {topic}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[tuple[int, bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout
        while True:
            ends = consumer.end_offsets(tps)
            drained = all(consumer.position(tp) >= ends[tp] for tp in tps)
            if (drained and (expect is None or len(out) >= expect)) or time.monotonic() > deadline:
                return out
            for tp, records in consumer.poll(timeout_ms=200).items():
                out.extend((tp.partition, r.key, r.value) for r in records)
    finally:
        consumer.close()


def count_types(
    bootstrap: str, topic: str, expected: dict[str, int], timeout: float = 60.0
) -> tuple[dict[str, int], dict[str, int]]:
    """Read a topic of JSON values with a "type" (case events, case commands) from its beginning until every
    type in `expected` has at least that many messages and the reader is at the end, or `timeout` passed.

    Returns (messages per type, distinct `event_id`/`command_id` per type). Waiting for the counts (not for
    a number of messages) matters when a topic holds more than the counted types: the case engine writes
    notification events beside `case.opened` and may still be catching up when the detector is done.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    counts: dict[str, int] = {}
    ids: dict[str, set[str]] = {}
    try:
        parts = wait_for(lambda: consumer.partitions_for_topic(topic), 30, f"topic {topic}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while True:
            ends = consumer.end_offsets(tps)
            drained = all(consumer.position(tp) >= ends[tp] for tp in tps)
            enough = all(counts.get(t, 0) >= n for t, n in expected.items())
            if (drained and enough) or time.monotonic() > deadline:
                break
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    value = orjson.loads(record.value or b"{}")
                    kind = str(value.get("type"))
                    counts[kind] = counts.get(kind, 0) + 1
                    ids.setdefault(kind, set()).add(str(value.get("event_id") or value.get("command_id")))
    finally:
        consumer.close()
    return counts, {kind: len(found) for kind, found in ids.items()}


def read_topic(bootstrap: str, topic: str, expect: int | None = None, timeout: float = 60.0) -> list[bytes]:
    """Every message value of a topic (waiting until at least `expect` when given)."""
    return [v for _, _, v in read_records(bootstrap, topic, expect, timeout) if v is not None]


# -- the synthetic fleet -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    """`servers` servers probed `rounds` times each, one minute apart.

    Every `failing_every`-th server (0 = none) is failing: it cycles `fail_run` failures then `ok_run`
    passes, its phase shifted by its index so outages start at different rounds. With fail_run >=
    threshold every full cycle opens one case (and its first pass recovers it).
    """

    servers: int
    rounds: int
    failing_every: int = 0
    fail_run: int = 12
    ok_run: int = 3
    threshold: int = 10
    worker_id: str = "bench-probe-1"
    id_prefix: str = "srv"

    @property
    def results(self) -> int:
        return self.servers * self.rounds

    def server_id(self, i: int) -> str:
        return f"{self.id_prefix}-{i:06d}"

    def customer_id(self, i: int) -> str:
        return f"cust-{i % 97:03d}"

    def failing(self, i: int) -> bool:
        return self.failing_every > 0 and i % self.failing_every == 0

    def ok(self, i: int, r: int) -> bool:
        if not self.failing(i):
            return True
        return (r + i) % (self.fail_run + self.ok_run) >= self.fail_run

    def result(self, i: int, r: int) -> dict[str, Any]:
        """The r-th result of server i, as the JSON object a probe worker sends."""
        sid = self.server_id(i)
        at = T0 + r * PROBE_EVERY + timedelta(milliseconds=i)
        ok = self.ok(i, r)
        return {
            "server_id": sid,
            "customer_id": self.customer_id(i),
            "probe_id": f"{sid}@{int(at.timestamp() * 1000)}",
            "started_at": at,
            "latency_ms": 20 + (i * 7 + r) % 180 if ok else 10000,
            "ok": ok,
            "status_code": 200 if ok else None,
            "error_class": None if ok else "timeout",
            "error_message": None if ok else "no answer within 10 s",
            "worker_id": self.worker_id,
            "health": {
                "load1": round(0.1 + (i + r) % 40 / 10, 1),
                "connections": 100 + (i + r) % 900,
                "users": 10 + i % 90,
                "cpu_percent": float((i * 3 + r) % 100),
                "memory_percent": float((i + 3 * r) % 100),
                "disk_percent": 42.0,
            }
            if ok
            else None,
        }

    def round_major(self) -> Iterator[dict[str, Any]]:
        """Every result, round by round (so each server's results are in time order)."""
        for r in range(self.rounds):
            for i in range(self.servers):
                yield self.result(i, r)

    def expected_events(self) -> tuple[int, int]:
        """(case.opened, server.recovered) the detector must emit for this fleet, from the pattern."""
        opened = recovered = 0
        for i in range(self.servers):
            if not self.failing(i):
                continue
            run = 0
            is_open = False
            for r in range(self.rounds):
                if self.ok(i, r):
                    recovered += is_open
                    run, is_open = 0, False
                else:
                    run += 1
                    if run == self.threshold:
                        opened += 1
                        is_open = True
        return opened, recovered


def envelopes(fleet: Fleet, per_batch: int = 500, partitions: int = PARTITIONS) -> list[tuple[int, bytes]]:
    """The fleet's results as ProbeBatch messages (partition, JSON), cut at `per_batch` results per partition.

    Like probes.batcher.Batcher: each result goes to partition_for(server_id), results keep their order.
    """
    parts = {i: partition_for(fleet.server_id(i), partitions) for i in range(fleet.servers)}
    pending: dict[int, list[dict[str, Any]]] = {p: [] for p in range(partitions)}
    out: list[tuple[int, bytes]] = []
    seq = 0

    def cut(p: int) -> None:
        nonlocal seq
        batch = {
            "batch_id": f"{fleet.worker_id}:{seq}",
            "worker_id": fleet.worker_id,
            "partition": p,
            "results": pending[p],
        }
        out.append((p, orjson.dumps(batch)))
        pending[p] = []
        seq += 1

    for r in range(fleet.rounds):
        for i in range(fleet.servers):
            p = parts[i]
            pending[p].append(fleet.result(i, r))
            if len(pending[p]) >= per_batch:
                cut(p)
    for p in range(partitions):
        if pending[p]:
            cut(p)
    ProbeBatch.model_validate_json(out[0][1])  # the contract holds (the consumers validate every result)
    return out


def produce_envelopes(bootstrap: str, topic: str, messages: list[tuple[int, bytes]]) -> float:
    """Send (partition, value) messages like a probe worker (acks=all, idempotent, lz4); return seconds."""
    from kafka import KafkaProducer

    from probes.producer import MAX_MESSAGE_BYTES, compression

    started = time.monotonic()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        compression_type=compression(),
        batch_size=MAX_MESSAGE_BYTES,
        max_request_size=MAX_MESSAGE_BYTES,
    )
    try:
        for partition, value in messages:
            producer.send(topic, value=value, partition=partition)
        producer.flush(timeout=120)
    finally:
        producer.close(timeout=10)
    return time.monotonic() - started


def fleet_env(**settings: Any) -> dict[str, str]:
    """This environment plus FLEETWATCH_<NAME> settings."""
    env = dict(os.environ)
    for key, value in settings.items():
        env[f"FLEETWATCH_{key.upper()}"] = str(value)
    return env
