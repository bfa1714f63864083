"""Detection latency: 10th failed probe result produced -> case.opened readable on the case topic.

A private Kafka broker (or the one at --bootstrap) and the production stream worker (`fleetwatch stream`,
threshold 10) in a subprocess. A background thread keeps a healthy fleet flowing: ProbeBatch envelopes every
50 ms per partition (the probe worker's batch linger) at the given results/s. Then, one outage at a time,
for a server outside the healthy fleet:

1. its first 9 failed results go out in one envelope (acks=all), then a short pause;
2. t0; the envelope with the 10th failure is sent with acks=all (its own producer, no linger);
3. consumer threads tailing case-commands and the case topic note when that server's `open` command and its
   `case.opened` event arrive.

The case passes two agents of the worker: the detector (probe-results -> `open` on case-commands) and the case
engine (case-commands -> `case.opened` on the case topic, with the Sev1's notification requests). Latency =
case.opened arrival - t0, so it includes the produce round trip, the detector's fetch, decode and detection,
its command send, the engine's fetch and apply, its event send (producer_linger, acks=all) and the reader's
fetch. Also shown: the detector's share (t0 -> `open` command readable), the engine's (command readable ->
case.opened readable), and the acks=all round trip alone.

    .venv/bin/python bench/detection_latency.py [--quick] [--outages N] [--loads 1000,10000]
        [--bootstrap HOST:PORT]   (use a running broker; this run's bench-* topics are removed after)
"""

from __future__ import annotations

import argparse
import math
import statistics
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from _common import (
    PARTITIONS,
    T0,
    Fleet,
    QuietGate,
    broker,
    envelopes,
    fleet_env,
    free_port,
    log,
    python_child,
    stop_process,
    table,
    wait_for,
    workdir,
)
from _machine import load, print_machine
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from fleetcore.kafka_admin import ensure_topics
from probes.partitioner import partition_for
from probes.producer import MAX_MESSAGE_BYTES, compression
from schemas.topics import Topics

THRESHOLD = 10
TICK_S = 0.05


class Tail:
    """Tails a topic of JSON values from its end; records when each server's first value of `kind` (the
    "type" field: a case event or command type) arrives."""

    def __init__(self, bootstrap: str, topic: str, kind: str) -> None:
        self.kind = kind
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
        )
        parts = wait_for(lambda: self.consumer.partitions_for_topic(topic), 30, f"topic {topic}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        self.consumer.seek_to_end(*tps)
        for tp in tps:
            self.consumer.position(tp)
        self.arrived: dict[str, float] = {}
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"tail-{kind}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for records in self.consumer.poll(timeout_ms=100).values():
                now = time.monotonic()
                for record in records:
                    value = orjson.loads(record.value)
                    if value.get("type") == self.kind and value.get("server_id"):
                        with self.cond:
                            self.arrived.setdefault(value["server_id"], now)
                            self.cond.notify_all()
        self.consumer.close()

    def wait(self, server_id: str, timeout: float) -> float | None:
        with self.cond:
            self.cond.wait_for(lambda: server_id in self.arrived, timeout=timeout)
            return self.arrived.get(server_id)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


class Background:
    """Healthy envelopes at `rate` results/s: every TICK_S, one envelope per partition (pre-encoded, cycled).

    Healthy results of servers that never failed change no state, so re-sending the same envelopes costs
    the worker exactly what fresh ones would.
    """

    def __init__(self, bootstrap: str, topic: str, rate: int, servers: int = 2000) -> None:
        self.topic = topic
        self.rate = rate
        per_envelope = max(1, round(rate * TICK_S / PARTITIONS))
        fleet = Fleet(servers, max(1, 4 * per_envelope * PARTITIONS // servers + 1), id_prefix="bg")
        by_part: dict[int, list[bytes]] = {}
        for partition, value in envelopes(fleet, per_batch=per_envelope):
            by_part.setdefault(partition, []).append(value)
        self.pool = by_part
        self.per_envelope = per_envelope
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            linger_ms=5,
            compression_type=compression(),
            batch_size=MAX_MESSAGE_BYTES,
            max_request_size=MAX_MESSAGE_BYTES,
        )
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="background", daemon=True)

    def start(self) -> None:
        if self.rate > 0:
            self.thread.start()

    def _run(self) -> None:
        tick = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            for partition, pool in self.pool.items():
                value = pool[tick % len(pool)]
                self.producer.send(self.topic, value=value, partition=partition)
            self.sent += self.per_envelope * len(self.pool)
            tick += 1
            next_at += TICK_S
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        self.producer.close(timeout=10)


def failed(server_id: str, n: int) -> dict[str, Any]:
    at = T0 + timedelta(minutes=n)
    return {
        "server_id": server_id,
        "customer_id": "cust-latency",
        "probe_id": f"{server_id}@{n}",
        "started_at": at,
        "latency_ms": 10000,
        "ok": False,
        "status_code": None,
        "error_class": "timeout",
        "error_message": "no answer within 10 s",
        "worker_id": "bench-latency",
        "health": None,
    }


def envelope(server_id: str, ns: range, seq: str) -> tuple[int, bytes]:
    partition = partition_for(server_id, PARTITIONS)
    batch = {
        "batch_id": f"bench-latency:{seq}",
        "worker_id": "bench-latency",
        "partition": partition,
        "results": [failed(server_id, n) for n in ns],
    }
    return partition, orjson.dumps(batch)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p99 of 100 values is the 99th smallest)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def run_level(
    bootstrap: str, topics: Topics, rate: int, outages: int, tag: str, gap_s: float
) -> tuple[list[tuple[float, float]], list[float], int, int]:
    """Outages one after another under `rate` results/s of healthy background.

    Returns ([(t0 -> open command, t0 -> case.opened)] per outage seen, acks, missed, background sent).
    """
    background = Background(bootstrap, topics.probe_results, rate)
    commands = Tail(bootstrap, topics.case_commands, "open")
    tail = Tail(bootstrap, topics.cases, "case.opened")
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=0, compression_type=compression()
    )
    latencies: list[tuple[float, float]] = []
    acks: list[float] = []
    missed = 0
    try:
        background.start()
        time.sleep(1.0)  # let the background reach its rate before the first outage
        for k in range(outages):
            server = f"{tag}-out-{k:04d}"
            partition, value = envelope(server, range(THRESHOLD - 1), f"{server}-a")
            producer.send(topics.probe_results, value=value, partition=partition).get(timeout=30)
            time.sleep(gap_s)
            partition, value = envelope(server, range(THRESHOLD - 1, THRESHOLD), f"{server}-b")
            t0 = time.monotonic()
            producer.send(topics.probe_results, value=value, partition=partition).get(timeout=30)
            acks.append(time.monotonic() - t0)
            arrived = tail.wait(server, timeout=30)
            if arrived is None:
                missed += 1
                log(f"no case.opened for {server} within 30 s")
                continue
            command_at = commands.wait(server, timeout=1) or arrived
            latencies.append((command_at - t0, arrived - t0))
            time.sleep(gap_s)
    finally:
        sent = background.sent
        background.close()
        tail.close()
        commands.close()
        producer.close(timeout=10)
    return latencies, acks, missed, sent


def measure_worker(
    bootstrap: str,
    tmp: Path,
    worker_args: list[str],
    name: str,
    loads: list[int],
    outages: int,
    gap: float,
    quiet: QuietGate,
) -> list[list[object]]:
    """Start one stream worker on fresh topics, warm it up, run every load level; one table row each."""
    topics = Topics(f"bench-latency-{name}-{int(time.time())}.")
    ensure_topics(bootstrap, topics)
    env = fleet_env(
        kafka_bootstrap=bootstrap,
        topic_prefix=topics.prefix,
        data_dir=tmp / name,
        stream_web_port=free_port(),
        stream_metrics_port=free_port(),
        log_level="WARNING",
        failure_threshold=THRESHOLD,
    )
    log_file = tmp / f"{name}.log"
    worker = python_child(worker_args, env, log_file)
    rows: list[list[object]] = []
    try:
        # warm-up: the worker has joined its group and detects (its first case is not measured)
        warm, _, _, _ = run_level(bootstrap, topics, 0, 1, "warmup", gap)
        if not warm:
            raise RuntimeError(f"the stream worker opened no case; see {log_file}")
        log(f"{name}: worker ready (warm-up case after {warm[0][1] * 1000:.0f} ms)")
        for rate in loads:
            busy = quiet.wait()
            latencies, acks, missed, sent = run_level(bootstrap, topics, rate, outages, f"l{rate}", gap)
            if not latencies:
                raise RuntimeError(f"load {rate}/s: no case.opened seen; see {log_file}")
            ms = [total * 1000 for _, total in latencies]
            detector_ms = [command * 1000 for command, _ in latencies]
            engine_ms = [(total - command) * 1000 for command, total in latencies]
            rows.append(
                [
                    name,
                    f"{rate:,}",
                    len(ms),
                    missed,
                    percentile(ms, 50),
                    percentile(ms, 90),
                    percentile(ms, 99),
                    max(ms),
                    statistics.mean(ms),
                    percentile(detector_ms, 50),
                    percentile(engine_ms, 50),
                    percentile(engine_ms, 99),
                    percentile([a * 1000 for a in acks], 50),
                    f"{sent:,}",
                    f"{busy:.0f}",
                ]
            )
            log(f"{name}: load {rate}/s: p50 {percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms")
        if worker.poll() is not None:
            raise RuntimeError(f"the stream worker exited; see {log_file}")
    except BaseException:
        log(f"stream worker log {log_file}:\n{log_file.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        stop_process(worker)
    return rows


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--quick", action="store_true", help="small run (< 1 minute)")
    parser.add_argument("--outages", type=int, help="outages per load level (default 100; quick 30)")
    parser.add_argument(
        "--loads", help="background results/s, comma separated (default 1000,10000; quick 1000)"
    )
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between steps of an outage")
    parser.add_argument("--bootstrap", help="use this broker instead of starting a private one")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="max s to wait for other CPU load to settle before "
        "each measurement, at most 90 s in all (default 15; quick 0)",
    )
    args = parser.parse_args()
    outages = args.outages or (30 if args.quick else 100)
    loads = [int(x) for x in (args.loads or ("1000" if args.quick else "1000,10000")).split(",")]
    per_run = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.quick else 15.0)
    quiet = QuietGate(per_run, total=90.0)
    workers = {"fleetwatch stream": ["-m", "fleetwatch.cli", "stream"]}

    print_machine("detection latency: 10th failure produced -> case.opened readable (detector + case engine)")
    rows: list[list[object]] = []
    started = time.monotonic()
    with workdir("fw-bench-latency-") as tmp, broker(tmp, args.bootstrap) as bootstrap:
        for name, worker_args in workers.items():
            slug = name.replace(" ", "-")
            rows.extend(measure_worker(bootstrap, tmp, worker_args, slug, loads, outages, args.gap, quiet))

    print(
        f"outages one at a time, {args.gap * 1000:.0f} ms between their steps; threshold {THRESHOLD}; "
        f"background: healthy ProbeBatch envelopes every {TICK_S * 1000:.0f} ms on each of {PARTITIONS} "
        "partitions"
    )
    print()
    print(
        table(
            [
                "worker",
                "background results/s",
                "outages",
                "missed",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "max ms",
                "mean ms",
                "detector p50 ms",
                "engine p50 ms",
                "engine p99 ms",
                "ack p50 ms",
                "background sent",
                "busy before %",
            ],
            rows,
        )
    )
    print()
    print(f"load at end: {load()}; wall time {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
