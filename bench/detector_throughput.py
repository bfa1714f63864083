"""Detector throughput: probe results/s through the real Faust stream worker, beside a Quix Streams app.

For each mix (a healthy fleet; 10% of servers failing in runs of 12 with threshold 10) the same results are
pre-produced to a private Kafka broker:

* as ProbeBatch envelopes of up to 500 results on probe-results (partition = probes.partitioner.partition_for
  of the server id, like a probe worker), read by the production stream worker (streams.worker.run, i.e.
  `fleetwatch stream`: streams.app.create_app in a faust.Worker) in a subprocess;
* as one ProbeResult per message keyed by server id (same partition) on a second topic, read by a Quix
  Streams app doing the same streak job (bench/_quix_detector.py --mode single);
* the Quix app also reads the envelope topic itself (--mode batch), unless --no-quix-batch.

Each app runs alone, in its own process, from the topic's beginning, one after the other; every
repetition uses a fresh consumer group and fresh state. Throughput is taken inside the measured process by
a thread reading its results counter every 5 ms (bench/_progress.py): from the first result seen to the
last (start-up and group join excluded; reported separately as start-up).

The detector sends case commands (open, server_recovered) to the case engine, which runs as a second agent
in the same stream worker and writes case events (and notification requests) to the case topic. So the Faust
figure includes the engine's work on those commands; the Quix app is the detector alone (its commands go to
a topic nobody reads). Correctness, afterwards: the Faust worker's case topic must hold exactly the
case.opened / server.recovered events the fleet's pattern implies (through the engine), the Quix output
exactly the matching open / server_recovered commands.

    .venv/bin/python bench/detector_throughput.py [--quick] [--results N] [--repeat N] [--no-quix-batch]
        [--bootstrap HOST:PORT]   (use a running broker; this run's bench-* topics are removed after)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from _common import (
    PARTITIONS,
    Fleet,
    QuietGate,
    broker,
    count_types,
    create_topic,
    envelopes,
    fleet_env,
    free_port,
    log,
    produce_envelopes,
    progress_env,
    python_child,
    read_records,
    stop_process,
    table,
    wait_progress,
    workdir,
)
from _machine import load, print_machine

from fleetcore.kafka_admin import ensure_topics
from fleetcore.settings import Settings
from probes.partitioner import partition_for
from schemas.topics import Topics

THRESHOLD = 10
STREAM_APP_ID = Settings().stream_app_id
BENCH = Path(__file__).resolve().parent
FAUST = "faust: fleetwatch stream, envelopes"
QUIX_SINGLE = "quix: 1 result/message"
QUIX_BATCH = "quix: envelopes"
FAUST_TYPES = ("case.opened", "server.recovered")
"""What the Faust worker's case topic must hold (case events, written by its case engine)."""
QUIX_TYPES = ("open", "server_recovered")
"""What a Quix app's output must hold (the detector's case commands)."""


@dataclass
class Run:
    """One app over one mix, once."""

    app: str
    mix: str
    results: int
    messages: int
    startup_s: float
    seconds: float
    opened: int
    opened_distinct: int
    recovered: int
    cpu_s: float
    """CPU seconds the app's process used (all threads) while processing."""
    busy_before: float
    """% of the machine's CPUs busy with other work just before the run."""
    changelog: int | None = None
    """Faust: streak table changelog messages written (None for Quix: it flushes state at checkpoints)."""
    misplaced: int = 0
    """Faust: changelog messages on another partition than the key's (must be 0)."""

    @property
    def rate(self) -> float:
        return self.results / self.seconds if self.seconds > 0 else float("inf")

    @property
    def cpu_rate(self) -> float:
        return self.results / self.cpu_s if self.cpu_s > 0 else float("inf")


@dataclass
class Mix:
    """One workload: its label, topic-safe name and fleet."""

    label: str
    slug: str
    fleet: Fleet


def produce_single(bootstrap: str, topic: str, fleet: Fleet) -> float:
    """One ProbeResult per message, key = server id, partition = partition_for(server id)."""
    from confluent_kafka import Producer  # type: ignore[import-untyped]

    parts = {i: partition_for(fleet.server_id(i), PARTITIONS) for i in range(fleet.servers)}
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 200_000,
        }
    )
    started = time.monotonic()
    for r in range(fleet.rounds):
        for i in range(fleet.servers):
            value = orjson.dumps(fleet.result(i, r))
            while True:
                try:
                    producer.produce(topic, value=value, key=fleet.server_id(i).encode(), partition=parts[i])
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} messages not delivered")
    return time.monotonic() - started


def changelog_placement(bootstrap: str, topic: str) -> tuple[int, int]:
    """(messages, misplaced) of a streak table changelog: each key must sit on its server's partition."""
    records = read_records(bootstrap, topic, timeout=30)
    misplaced = sum(
        1 for part, key, _ in records if part != partition_for(orjson.loads(key or b'""'), PARTITIONS)
    )
    return len(records), misplaced


def count_events(
    bootstrap: str, topic: str, kinds: tuple[str, str], opened: int, recovered: int
) -> tuple[int, int, int]:
    """(opened, distinct opened ids, recovered) on a case topic (`kinds` = case event types) or a command
    topic (command types), waiting until the expected counts are there (the engine may lag the detector)."""
    counts, distinct = count_types(bootstrap, topic, {kinds[0]: opened, kinds[1]: recovered}, timeout=60)
    return counts.get(kinds[0], 0), distinct.get(kinds[0], 0), counts.get(kinds[1], 0)


@dataclass
class Bench:
    """What every measured run shares."""

    bootstrap: str
    tmp: Path
    per_batch: int
    repeat: int
    quix_batch: bool
    quiet: QuietGate
    faust_conf: str | None
    _batches: list[tuple[int, bytes]] = field(default_factory=list, repr=False)

    def measure(
        self,
        label: str,
        mix: Mix,
        args: list[str],
        env: dict[str, str],
        output: tuple[str, tuple[str, str]],
        messages: int,
        name: str,
    ) -> Run:
        """Run one measured child until its progress file appears; count its output (topic, kinds); stop."""
        fleet = mix.fleet
        progress = self.tmp / f"{name}.progress.json"
        log_file = self.tmp / f"{name}.log"
        busy = self.quiet.wait()
        spawned = time.monotonic()
        proc = python_child(args, {**env, **progress_env(progress, fleet.results)}, log_file)
        try:
            span = wait_progress(progress, timeout=900, alive=lambda: proc.poll() is None)
            opened, recovered = fleet.expected_events()
            counts = count_events(self.bootstrap, output[0], output[1], opened, recovered)
        except BaseException:
            log(f"{label} log {log_file}:\n{log_file.read_text(errors='replace')[-3000:]}")
            raise
        finally:
            stop_process(proc)
        run = Run(
            label,
            mix.label,
            fleet.results,
            messages,
            span.first - spawned,
            span.seconds,
            *counts,
            span.cpu,
            busy,
        )
        log(
            f"{mix.label}: {label}: {run.rate:,.0f} results/s in {run.seconds:.2f} s; "
            f"{run.cpu_rate:,.0f} per CPU-s; machine {busy:.0f}% busy before"
        )
        return run

    def faust(self, mix: Mix, topics: Topics, messages: int, rep: int) -> Run:
        """The stream worker over the envelopes."""
        name = f"faust-{mix.slug}-{rep}"
        env = fleet_env(
            kafka_bootstrap=self.bootstrap,
            topic_prefix=topics.prefix,
            data_dir=self.tmp / name,
            stream_web_port=free_port(),
            stream_metrics_port=free_port(),
            log_level="WARNING",
            failure_threshold=THRESHOLD,
            timer_interval_s=3600,  # the engine's deadline timer has nothing to do within a run
        )
        if self.faust_conf:
            env["BENCH_FAUST_CONF"] = self.faust_conf
        args = [str(BENCH / "_faust_worker.py")]
        run = self.measure(FAUST, mix, args, env, (topics.cases, FAUST_TYPES), messages, name)
        changelog = f"{topics.prefix}{STREAM_APP_ID}-streaks-changelog"
        run.changelog, run.misplaced = changelog_placement(self.bootstrap, changelog)
        return run

    def quix(self, mix: Mix, mode: str, source: str, prefix: str, messages: int, rep: int) -> Run:
        name = f"quix-{mode}-{mix.slug}-{rep}"
        output = f"{prefix}quix-commands-{mode}"
        create_topic(self.bootstrap, output, PARTITIONS)
        args = [
            str(BENCH / "_quix_detector.py"),
            "--bootstrap",
            self.bootstrap,
            "--input",
            source,
            "--output",
            output,
            "--group",
            f"{output}-group",
            "--mode",
            mode,
            "--state-dir",
            str(self.tmp / f"{name}-state"),
            "--threshold",
            str(THRESHOLD),
        ]
        label = QUIX_SINGLE if mode == "single" else QUIX_BATCH
        return self.measure(label, mix, args, fleet_env(), (output, QUIX_TYPES), messages, name)

    def mix(self, mix: Mix) -> list[Run]:
        """Produce one mix's data, then run each app over it `repeat` times (interleaved)."""
        stamp = int(time.time())
        single = f"bench-{mix.slug}-{stamp}.probe-results-single"
        create_topic(self.bootstrap, single, PARTITIONS)
        seconds = produce_single(self.bootstrap, single, mix.fleet)
        log(f"{mix.label}: {mix.fleet.results:,} single-result messages produced in {seconds:.1f} s")
        batches = self._batches = envelopes(mix.fleet, per_batch=self.per_batch)
        runs: list[Run] = []
        for rep in range(self.repeat):
            # A fresh prefix per repetition: the stream worker's group, changelog and case topic start empty.
            topics = Topics(f"bench-{mix.slug}-{stamp}-r{rep}.")
            ensure_topics(self.bootstrap, topics)
            seconds = produce_envelopes(self.bootstrap, topics.probe_results, batches)
            log(f"{mix.label}: {len(batches)} envelopes produced in {seconds:.1f} s")
            runs.append(self.faust(mix, topics, len(batches), rep))
            runs.append(self.quix(mix, "single", single, topics.prefix, mix.fleet.results, rep))
            if self.quix_batch:
                runs.append(self.quix(mix, "batch", topics.probe_results, topics.prefix, len(batches), rep))
        return runs


def _spread(values: list[float]) -> str:
    return f"{min(values):,.0f} - {max(values):,.0f}"


def report(runs: list[Run], mixes: list[Mix]) -> bool:
    """Print the tables; return True when every run emitted exactly the expected case events."""
    rows: list[list[object]] = []
    ratios: list[list[object]] = []
    checks: list[list[object]] = []
    ok = True
    for mix in mixes:
        apps = list(dict.fromkeys(r.app for r in runs if r.mix == mix.label))
        by_app = {app: [r for r in runs if r.mix == mix.label and r.app == app] for app in apps}
        wall = {app: statistics.median(r.rate for r in mine) for app, mine in by_app.items()}
        cpu = {app: statistics.median(r.cpu_rate for r in mine) for app, mine in by_app.items()}
        opened, recovered = mix.fleet.expected_events()
        for app, mine in by_app.items():
            rows.append(
                [
                    mix.label,
                    app,
                    mine[0].messages,
                    statistics.median(r.startup_s for r in mine),
                    statistics.median(r.seconds for r in mine),
                    wall[app],
                    _spread([r.rate for r in mine]),
                    cpu[app],
                    statistics.median(100 * r.cpu_s / r.seconds for r in mine),
                    statistics.median(r.busy_before for r in mine),
                    len(mine),
                ]
            )
            for faust in (FAUST,):
                if faust in wall and app != FAUST:
                    ratios.append(
                        [
                            mix.label,
                            faust,
                            app,
                            f"{wall[faust] / wall[app]:.2f}x",
                            f"{cpu[faust] / cpu[app]:.2f}x",
                        ]
                    )
            expected = (opened, opened, recovered)
            good = all(
                (r.opened, r.opened_distinct, r.recovered) == expected and not r.misplaced for r in mine
            )
            ok = ok and good
            checks.append(
                [
                    mix.label,
                    app,
                    opened,
                    " ".join(str(r.opened) for r in mine),
                    " ".join(str(r.opened_distinct) for r in mine),
                    recovered,
                    " ".join(str(r.recovered) for r in mine),
                    " ".join("-" if r.changelog is None else f"{r.changelog}/{r.misplaced}" for r in mine),
                    "ok" if good else "MISMATCH",
                ]
            )
    print(
        table(
            [
                "mix",
                "app",
                "messages",
                "start-up s",
                "seconds",
                "results/s",
                "min - max",
                "per CPU-s",
                "CPU %",
                "busy before %",
                "runs",
            ],
            rows,
        )
    )
    print()
    print("faust / quix, ratio of the medians above:")
    print(table(["mix", "faust", "versus", "results/s", "per CPU-s"], ratios))
    print()
    print(
        table(
            [
                "mix",
                "app",
                "opened expected",
                "got (per run)",
                "distinct ids",
                "recovered expected",
                "got",
                "changelog msgs/misplaced",
                "check",
            ],
            checks,
        )
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small run (< 1 minute)")
    parser.add_argument("--results", type=int, help="results per mix (default 300,000; quick 40,000)")
    parser.add_argument("--servers", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500, help="results per ProbeBatch envelope at most")
    parser.add_argument("--repeat", type=int, help="runs of each app per mix (default 3; quick 1)")
    parser.add_argument("--no-quix-batch", action="store_true", help="skip Quix over the batch envelopes")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="max s to wait for other CPU load to settle before "
        "each measurement, at most 90 s in all (default 15; quick 0)",
    )
    parser.add_argument("--faust-conf", help="experiments only: JSON of faust.App settings to override")
    parser.add_argument("--bootstrap", help="use this broker instead of starting a private one")
    args = parser.parse_args()
    results = args.results or (40_000 if args.quick else 300_000)
    repeat = args.repeat or (1 if args.quick else 3)
    rounds = max(1, results // args.servers)
    quix_batch = not args.no_quix_batch and not args.quick
    if args.faust_conf:
        json.loads(args.faust_conf)

    print_machine("detector throughput: Faust stream worker vs Quix Streams")
    mixes = [
        Mix("healthy", "healthy", Fleet(args.servers, rounds, threshold=THRESHOLD)),
        Mix("10% failing", "failing", Fleet(args.servers, rounds, failing_every=10, threshold=THRESHOLD)),
    ]
    runs: list[Run] = []
    started = time.monotonic()
    per_run = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.quick else 15.0)
    quiet = QuietGate(per_run, total=90.0)
    with workdir("fw-bench-detector-") as tmp, broker(tmp, args.bootstrap) as bootstrap:
        bench = Bench(bootstrap, tmp, args.batch, repeat, quix_batch, quiet, args.faust_conf)
        for mix in mixes:
            runs.extend(bench.mix(mix))

    fleet = mixes[0].fleet
    print(
        f"{fleet.results:,} results per mix over {fleet.servers:,} servers ({fleet.rounds} rounds); "
        f"{PARTITIONS} partitions; envelopes of <= {args.batch} results; threshold {THRESHOLD}; "
        f"failing servers: {fleet.fail_run} failures then {fleet.ok_run} passes, repeated"
    )
    if args.faust_conf:
        print(f"faust settings overridden: {args.faust_conf}")
    print()
    ok = report(runs, mixes)
    print()
    print(
        f"correctness: {'every run emitted exactly the expected events/commands' if ok else 'MISMATCH'}; "
        f"load at end: {load()}; wall time {time.monotonic() - started:.0f} s"
    )
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
