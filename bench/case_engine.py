"""Case engine throughput: case commands/s through the stream worker's engine agent, and `streams.cases.apply`
in-process.

One set of commands for both: `--cases` monitor Sev1 OPEN commands (one per case, like the detector sends,
customers spread over 97 ids with globex on its own SLA plan from examples/sla-policy.yaml), then one TICK
per case 2 h 01 min later, when the Sev1 "worked within 2 h" clock has breached: each TICK fires the breach
(VP of Operations paged, customer called) and the hourly status notice. An OPEN emits 4 chained events and
3 notification requests, such a TICK 5 events and 3 notifications.

1. **in-process**: the pure `streams.cases.apply` over the same commands (OPEN on no case, TICK on the opened
   case, then START_WORK on the ticked one), per command type; median of --rounds passes. Its decisions also
   give the exact events and notifications the worker must write.
2. **worker**: the commands (OPENs first, then TICKs; key = case id, so Kafka's default partitioner puts
   both of a case on the engine partition that owns it) are pre-produced to case-commands on a fresh prefix;
   then the production stream worker (`fleetwatch stream`, via bench/_faust_worker.py) starts and its engine
   agent works through them. A thread inside the worker reads the engine's command counter every 5 ms
   (bench/_progress.py): the rate is commands / (time of the last command handled - time of the first),
   start-up and group join excluded; the OPEN and TICK phases are split where the counter passed --cases.
   The deadline timer is slowed to once an hour so it adds no TICKs of its own. Afterwards the case topic
   must hold exactly the events (per type, distinct ids) and the notifications topic exactly the
   notifications the in-process decisions imply.

    .venv/bin/python bench/case_engine.py [--quick] [--cases N] [--repeat N] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import (
    QuietGate,
    broker,
    count_types,
    end_offsets,
    fleet_env,
    free_port,
    log,
    progress_env,
    python_child,
    stop_process,
    table,
    wait_progress,
    workdir,
)
from _machine import load, print_machine

from fleetcore.kafka_admin import ensure_topics
from policy.sla import load_policy_book
from schemas.cases import CaseSource, Severity
from schemas.commands import CaseCommand, CommandType
from schemas.topics import CASE_COMMANDS, Topics
from streams.cases import Case, Decision, EngineConfig, apply, ticket_number
from streams.engine import case_partition

BENCH = Path(__file__).resolve().parent
POLICY_FILE = BENCH.parent / "examples" / "sla-policy.yaml"
TICK_AFTER = timedelta(hours=2, minutes=1)
"""Past the Sev1 work clock (2 h by default; globex's plan: 1 h)."""


@dataclass(frozen=True)
class Workload:
    """The commands of one run and what applying them in order produces."""

    opens: list[CaseCommand]
    ticks: list[CaseCommand]
    events: dict[str, int]
    """Case events per type the OPENs and TICKs emit."""
    notifications: int
    open_outputs: int
    """Events and notifications of the OPENs alone."""


def make_workload(cases: int, at: datetime, config: EngineConfig) -> Workload:
    """OPEN and TICK commands for `cases` monitor Sev1 cases opened `at`; their outputs from `apply`."""
    opens, ticks = [], []
    for i in range(cases):
        case_id = f"bench-case-{i:06d}"
        server_id = f"srv-{i:06d}"
        opens.append(
            CaseCommand(
                command_id=f"open:{case_id}",
                case_id=case_id,
                type=CommandType.OPEN,
                at=at + timedelta(milliseconds=i),
                actor="monitor",
                reason=f"{server_id} down: 10 consecutive failed status requests",
                source=CaseSource.MONITOR,
                customer_id="globex" if i % 10 == 0 else f"cust-{i % 97:03d}",
                server_id=server_id,
                severity=Severity.SEV1,
                title=f"{server_id} down: 10 consecutive failed status requests",
                details={"failures": 10, "threshold": 10, "error_class": "timeout"},
            )
        )
        ticks.append(
            CaseCommand(
                command_id=f"tick:{case_id}:bench",
                case_id=case_id,
                type=CommandType.TICK,
                at=at + TICK_AFTER + timedelta(milliseconds=i),
                actor="timer",
            )
        )
    events: Counter[str] = Counter()
    notifications = open_outputs = 0
    for open_, tick in zip(opens, ticks, strict=True):
        opened = apply(None, open_, config, _ticket(open_.case_id, 0))
        ticked = apply(opened.case, tick, config, _ticket(open_.case_id, 1))
        open_outputs += len(opened.events) + len(opened.notifications)
        for decision in (opened, ticked):
            events.update(e.type.value for e in decision.events)
            notifications += len(decision.notifications)
    return Workload(opens, ticks, dict(events), notifications, open_outputs)


def _ticket(case_id: str, counter: int) -> str:
    return ticket_number(case_partition(case_id), counter, CASE_COMMANDS.partitions)


def start_work(case_id: str, at: datetime) -> CaseCommand:
    return CaseCommand(
        command_id=f"ack:{case_id}",
        case_id=case_id,
        type=CommandType.START_WORK,
        at=at,
        actor="staff:bench",
        owner="eng-dana",
        reason="on it",
    )


# -- in-process --------------------------------------------------------------------------------------


def _apply_all(
    cases: list[Case | None], commands: list[CaseCommand], config: EngineConfig, counter: int
) -> tuple[float, list[Decision]]:
    """Apply commands[i] to cases[i] for every i; (seconds, decisions)."""
    tickets = [_ticket(c.case_id, counter) for c in commands]
    started = time.perf_counter()
    out = [apply(case, c, config, t) for case, c, t in zip(cases, commands, tickets, strict=True)]
    return time.perf_counter() - started, out


def in_process(work: Workload, config: EngineConfig, rounds: int) -> list[list[object]]:
    """Rows (command, applies, µs per apply, applies/s, events, notifications) for OPEN, TICK, START_WORK."""
    seconds: dict[str, list[float]] = {"open": [], "tick": [], "start_work": []}
    outputs: dict[str, tuple[int, int]] = {}
    acks = [start_work(c.case_id, c.at + timedelta(minutes=5)) for c in work.ticks]
    for _ in range(rounds):
        dt, opened = _apply_all([None] * len(work.opens), work.opens, config, 0)
        seconds["open"].append(dt)
        dt, ticked = _apply_all([d.case for d in opened], work.ticks, config, 1)
        seconds["tick"].append(dt)
        dt, worked = _apply_all([d.case for d in ticked], acks, config, 1)
        seconds["start_work"].append(dt)
        for name, decisions in (("open", opened), ("tick", ticked), ("start_work", worked)):
            outputs[name] = (
                sum(len(d.events) for d in decisions),
                sum(len(d.notifications) for d in decisions),
            )
    labels = {
        "open": "OPEN (monitor Sev1, new case)",
        "tick": "TICK at 2 h 01 min (breach + status notice)",
        "start_work": "START_WORK (after the breach)",
    }
    rows: list[list[object]] = []
    n = len(work.opens)
    for name, label in labels.items():
        median = statistics.median(seconds[name])
        events, notes = outputs[name]
        rows.append([label, n, median / n * 1e6, n / median, n / min(seconds[name]), events / n, notes / n])
    return rows


# -- through the worker ------------------------------------------------------------------------------


@dataclass
class WorkerRun:
    seconds: float
    open_seconds: float
    startup_s: float
    cpu_s: float
    busy_before: float
    events_ok: bool
    events_seen: dict[str, int]
    distinct_ok: bool
    notifications: int


def produce_commands(bootstrap: str, topic: str, commands: list[CaseCommand]) -> float:
    """Send commands keyed by case id (Kafka's default partitioner, as the engine expects); return seconds."""
    from kafka import KafkaProducer

    started = time.monotonic()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    try:
        for command in commands:
            producer.send(topic, key=command.case_id.encode(), value=command.model_dump_json().encode())
        producer.flush(timeout=120)
    finally:
        producer.close(timeout=10)
    return time.monotonic() - started


def _when_reached(timeline: list[tuple[float, float]], value: float) -> float:
    """Seconds since the first command at which the counter first reached `value`."""
    return next((t for t, v in timeline if v >= value), timeline[-1][0])


def through_worker(bootstrap: str, tmp: Path, work: Workload, rep: int, quiet: QuietGate) -> WorkerRun:
    topics = Topics(f"bench-engine-{int(time.time())}-r{rep}.")
    ensure_topics(bootstrap, topics)
    commands = work.opens + work.ticks
    seconds = produce_commands(bootstrap, topics.case_commands, commands)
    log(f"run {rep}: {len(commands):,} commands produced in {seconds:.1f} s")
    name = f"engine-{rep}"
    progress = tmp / f"{name}.progress.json"
    log_file = tmp / f"{name}.log"
    env = fleet_env(
        kafka_bootstrap=bootstrap,
        topic_prefix=topics.prefix,
        data_dir=tmp / name,
        stream_web_port=free_port(),
        stream_metrics_port=free_port(),
        log_level="WARNING",
        sla_policy_file=POLICY_FILE,
        timer_interval_s=3600,
    )
    env.update(progress_env(progress, len(commands)), BENCH_PROGRESS_COUNTER="engine")
    busy = quiet.wait()
    spawned = time.monotonic()
    proc = python_child([str(BENCH / "_faust_worker.py")], env, log_file)
    try:
        span = wait_progress(progress, timeout=600, alive=lambda: proc.poll() is None)
        seen, distinct = count_types(bootstrap, topics.cases, work.events, timeout=60)
        notifications = sum(end_offsets(bootstrap, topics.notifications).values())
    except BaseException:
        log(f"stream worker log {log_file}:\n{log_file.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        stop_process(proc)
    run = WorkerRun(
        seconds=span.seconds,
        open_seconds=_when_reached(span.timeline, len(work.opens)),
        startup_s=span.first - spawned,
        cpu_s=span.cpu,
        busy_before=busy,
        events_ok=seen == work.events,
        events_seen=seen,
        distinct_ok=distinct == work.events,
        notifications=notifications,
    )
    log(
        f"run {rep}: {len(commands) / run.seconds:,.0f} commands/s in {run.seconds:.2f} s "
        f"(machine {busy:.0f}% busy before)"
    )
    return run


def worker_rows(runs: list[WorkerRun], work: Workload) -> list[list[object]]:
    n = len(work.opens)
    outputs = sum(work.events.values()) + work.notifications

    def row(label: str, count: int, seconds: list[float], sends: int) -> list[object]:
        rates = [count / s for s in seconds if s > 0]
        return [
            label,
            count,
            statistics.median(seconds),
            statistics.median(rates),
            f"{min(rates):,.0f} - {max(rates):,.0f}",
            statistics.median(sends / s for s in seconds if s > 0),
        ]

    return [
        row("all (OPEN then TICK)", 2 * n, [r.seconds for r in runs], outputs),
        row("OPEN phase", n, [r.open_seconds for r in runs], work.open_outputs),
        row("TICK phase", n, [r.seconds - r.open_seconds for r in runs], outputs - work.open_outputs),
    ]


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--quick", action="store_true", help="small run (< 1 minute)")
    parser.add_argument(
        "--cases", type=int, help="cases, i.e. OPENs and as many TICKs (default 2,000; quick 500)"
    )
    parser.add_argument("--repeat", type=int, default=None, help="worker runs (default 3; quick 1)")
    parser.add_argument("--rounds", type=int, default=None, help="in-process passes (default 5; quick 3)")
    parser.add_argument("--bootstrap", help="use this broker instead of starting a private one")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="max s to wait for other CPU load to settle before each worker run (default 15; quick 0)",
    )
    args = parser.parse_args()
    cases = args.cases or (500 if args.quick else 2000)
    repeat = args.repeat or (1 if args.quick else 3)
    rounds = args.rounds or (3 if args.quick else 5)
    per_run = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.quick else 15.0)
    quiet = QuietGate(per_run, total=90.0)

    print_machine("case engine: commands/s through `fleetwatch stream`, and streams.cases.apply in-process")
    started = time.monotonic()
    config = EngineConfig(policies=load_policy_book(POLICY_FILE))
    at = datetime.now(UTC).replace(microsecond=0)
    work = make_workload(cases, at, config)
    events = sum(work.events.values())
    log(f"{cases:,} cases: {events:,} events, {work.notifications:,} notifications expected")
    inproc = in_process(work, config, rounds)
    runs: list[WorkerRun] = []
    with workdir("fw-bench-engine-") as tmp, broker(tmp, args.bootstrap) as bootstrap:
        for rep in range(repeat):
            runs.append(through_worker(bootstrap, tmp, work, rep, quiet))

    print(
        f"{cases:,} monitor Sev1 cases (every 10th on globex's SLA plan), policy {POLICY_FILE.name}; "
        f"{CASE_COMMANDS.partitions} case-commands partitions"
    )
    print()
    print(f"in-process, streams.cases.apply (median of {rounds} passes; best pass in 'best /s'):")
    print(
        table(
            ["command", "applies", "µs per apply", "applies/s", "best /s", "events each", "notes each"],
            inproc,
        )
    )
    print()
    print(f"through the stream worker's engine agent ({len(runs)} run(s); medians):")
    print(
        table(
            ["phase", "commands", "seconds", "commands/s", "min - max", "events+notes/s"],
            worker_rows(runs, work),
        )
    )
    print()
    expected = ", ".join(f"{k} {v:,}" for k, v in sorted(work.events.items()))
    ok = all(r.events_ok and r.distinct_ok and r.notifications == work.notifications for r in runs)
    for i, r in enumerate(runs):
        print(
            f"run {i}: start-up {r.startup_s:.1f} s, CPU {100 * r.cpu_s / r.seconds:.0f}% of one core, "
            f"{r.busy_before:.0f}% busy before; notifications {r.notifications:,}/{work.notifications:,}"
            + ("" if r.events_ok else f"; events {r.events_seen}")
        )
    print(f"expected case events: {expected}; notifications {work.notifications:,}")
    print(
        f"correctness: {'every run wrote exactly the expected outputs' if ok else 'MISMATCH'}; "
        f"load at end: {load()}; wall time {time.monotonic() - started:.0f} s"
    )
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
