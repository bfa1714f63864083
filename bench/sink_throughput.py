"""Sink throughput: probe results/s from Kafka into ClickHouse through the real sink, beside a raw insert.

The results of a synthetic fleet (10% of servers failing, so nullable columns carry both) are produced to
a private Kafka broker as ProbeBatch envelopes of up to 500 results, like a probe worker. Then, each in its
own process on its own fresh embedded store (chdb in a temp dir, history.ddl.migrate):

* sink: sinks.clickhouse.ClickHouseSink, the sink service's ingest loop (kafka-python consumer,
  deterministic per-partition chunks of sink_chunk_max_rows, insert with the chunk's dedup token on the
  insert thread while the next chunk is decoded, commit after insert), timed from its first consumed record
  to every row stored and committed;
* sink sequential: the same with overlap=False (each chunk inserted and committed before decoding goes on);
* raw: the same rows, decoded from the same envelopes beforehand, inserted into the same table with plain
  column-oriented clickhouse-connect inserts of the same chunk size (no Kafka, no dedup token); the decode
  (JSON + pydantic validation + row building) is timed separately.

Before the sink starts the benchmark waits until the last message's 5 s chunk bucket (plus grace) is over,
so the sink cuts its final partial chunks as soon as it catches up instead of idling into the timing.

    .venv/bin/python bench/sink_throughput.py [--quick] [--results N] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    Fleet,
    QuietGate,
    envelopes,
    fleet_env,
    local_broker,
    log,
    produce_envelopes,
    python_child,
    table,
    workdir,
)
from _machine import load, print_machine

from fleetcore.kafka_admin import ensure_topics
from fleetcore.settings import Settings
from history.ddl import PROBE_COLUMNS
from schemas.topics import Topics

BENCH = Path(__file__).resolve().parent


def child(args: list[str], tmp: Path, name: str) -> dict[str, Any]:
    """Run bench/_sink_child.py to completion; its last stdout line is JSON."""
    log_file = tmp / f"{name}.log"
    out_file = tmp / f"{name}.out"
    proc = python_child([str(BENCH / "_sink_child.py"), *args], fleet_env(), log_file)
    rc = proc.wait(timeout=900)
    text = log_file.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if rc != 0 or not lines:
        raise RuntimeError(f"{name} failed (exit {rc}):\n{text[-3000:]}")
    out_file.write_text(lines[-1])
    data: dict[str, Any] = json.loads(lines[-1])
    return data


def wait_for_bucket_end(bucket_s: int, grace_ms: int = 2000) -> float:
    """Sleep until the current chunk bucket (broker time = wall time here) plus grace is over."""
    now_ms = time.time() * 1000
    end_ms = (now_ms // (bucket_s * 1000) + 1) * bucket_s * 1000 + grace_ms + 200
    wait = (end_ms - now_ms) / 1000
    time.sleep(wait)
    return wait


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--quick", action="store_true", help="small run (< 1 minute)")
    parser.add_argument("--results", type=int, help="results (rows) per run (default 500,000; quick 100,000)")
    parser.add_argument("--servers", type=int, default=2000)
    parser.add_argument("--repeat", type=int, help="runs of each side (default 3; quick 1)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="max s to wait for other CPU load to settle before "
        "each measurement, at most 90 s in all (default 15; quick 0)",
    )
    args = parser.parse_args()
    results = args.results or (100_000 if args.quick else 500_000)
    repeat = args.repeat or (1 if args.quick else 3)
    per_run = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.quick else 15.0)
    quiet = QuietGate(per_run, total=90.0)
    fleet = Fleet(args.servers, max(1, results // args.servers), failing_every=10)
    settings = Settings()
    chunk = settings.sink_chunk_max_rows

    print_machine("sink throughput: Kafka -> ClickHouse (embedded chdb)")
    started = time.monotonic()
    sinks: list[dict[str, Any]] = []
    sequentials: list[dict[str, Any]] = []
    raws: list[dict[str, Any]] = []
    with workdir("fw-bench-sink-") as tmp, local_broker(tmp) as bootstrap:
        batches = envelopes(fleet)
        for rep in range(repeat):
            for name, extra, into in (("sink", [], sinks), ("sequential", ["--sequential"], sequentials)):
                # each mode its own topics (so its own consumer group) and store
                topics = Topics(f"bench-sink-{int(time.time())}-r{rep}-{name}.")
                ensure_topics(bootstrap, topics)
                seconds = produce_envelopes(bootstrap, topics.probe_results, batches)
                log(f"{len(batches)} envelopes ({fleet.results:,} results) produced in {seconds:.1f} s")
                waited = wait_for_bucket_end(settings.sink_chunk_seconds)
                log(f"waited {waited:.1f} s for the last chunk bucket to close")
                busy = quiet.wait()
                sink = child(
                    [
                        "sink",
                        "--dsn",
                        f"chdb://{tmp / f'store-{name}-{rep}'}",
                        "--bootstrap",
                        bootstrap,
                        "--prefix",
                        topics.prefix,
                        "--expect",
                        str(fleet.results),
                        *extra,
                    ],
                    tmp,
                    f"{name}-{rep}",
                )
                into.append({**sink, "busy": busy})
                log(f"{name}: {sink['rows'] / sink['seconds']:,.0f} rows/s; machine {busy:.0f}% busy before")
            busy = quiet.wait()
            raw = child(
                [
                    "raw",
                    "--dsn",
                    f"chdb://{tmp / f'store-raw-{rep}'}",
                    "--servers",
                    str(fleet.servers),
                    "--rounds",
                    str(fleet.rounds),
                    "--failing-every",
                    str(fleet.failing_every),
                    "--chunk",
                    str(chunk),
                ],
                tmp,
                f"raw-{rep}",
            )
            raws.append({**raw, "busy": busy})
            log(f"raw insert: {raw['rows'] / raw['insert_s']:,.0f} rows/s; machine {busy:.0f}% busy before")

    def median(values: list[float]) -> float:
        return statistics.median(values)

    def spread(values: list[float]) -> str:
        return f"{min(values):,.0f} - {max(values):,.0f}"

    sink_rates = [s["rows"] / s["seconds"] for s in sinks]
    raw_rates = [r["rows"] / r["insert_s"] for r in raws]
    decode_rates = [r["rows"] / r["decode_s"] for r in raws]
    sink_cpu = [s["rows"] / s["cpu"] for s in sinks]
    seq_rates = [s["rows"] / s["seconds"] for s in sequentials]
    seq_cpu = [s["rows"] / s["cpu"] for s in sequentials]
    raw_cpu = [r["rows"] / r["insert_cpu"] for r in raws]
    print(
        f"{fleet.results:,} probe results ({fleet.servers:,} servers x {fleet.rounds} rounds, 10% "
        f"failing) in {len(batches)} ProbeBatch envelopes on 4 partitions; chunks of {chunk:,} rows; "
        f"table probe_results ({len(PROBE_COLUMNS)} columns, MergeTree)"
    )
    print()
    last_sink, last_raw = sinks[-1], raws[-1]
    print(
        table(
            [
                "path",
                "rows/s",
                "min - max",
                "per CPU-s",
                "inserts",
                "stored/distinct",
                "busy before %",
                "runs",
            ],
            [
                [
                    "sink: Kafka -> ClickHouseSink -> chdb",
                    median(sink_rates),
                    spread(sink_rates),
                    median(sink_cpu),
                    last_sink["chunks"],
                    f"{last_sink['stored']:,}/{last_sink['distinct']:,}",
                    median([s["busy"] for s in sinks]),
                    len(sinks),
                ],
                [
                    "sink, sequential (overlap=False)",
                    median(seq_rates),
                    spread(seq_rates),
                    median(seq_cpu),
                    sequentials[-1]["chunks"],
                    f"{sequentials[-1]['stored']:,}/{sequentials[-1]['distinct']:,}",
                    median([s["busy"] for s in sequentials]),
                    len(sequentials),
                ],
                [
                    "raw: column-oriented insert only",
                    median(raw_rates),
                    spread(raw_rates),
                    median(raw_cpu),
                    last_raw["inserts"],
                    f"{last_raw['stored']:,}/{last_raw['distinct']:,}",
                    median([r["busy"] for r in raws]),
                    len(raws),
                ],
                [
                    "(decode alone: JSON, validation, rows)",
                    median(decode_rates),
                    spread(decode_rates),
                    "-",
                    "-",
                    "-",
                    "-",
                    len(raws),
                ],
            ],
        )
    )
    print()
    ratio = median(sink_rates) / median(raw_rates)
    print(
        f"sink / raw insert: {ratio:.2f}x (the raw insert is {1 / ratio:.1f}x faster); "
        f"sink start-up (group join) median {median([s['startup'] for s in sinks]):.1f} s"
    )
    print(
        f"overlap / sequential sink: {median(sink_rates) / median(seq_rates):.2f}x wall, "
        f"{median(sink_cpu) / median(seq_cpu):.2f}x per CPU-s; sink / raw per CPU-s: "
        f"{median(sink_cpu) / median(raw_cpu):.2f}x"
    )
    ok = all(s["stored"] == s["distinct"] == fleet.results for s in sinks + sequentials + raws)
    print(
        f"correctness: {'every run stored each result exactly once' if ok else 'MISMATCH'}; "
        f"load at end: {load()}; wall time {time.monotonic() - started:.0f} s"
    )
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
