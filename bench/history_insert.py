"""History insert throughput: probe rows/s into embedded chdb with the rollups attached, and without.

A synthetic fleet (2,000 servers probed once a minute, every 10th server failing a third of its probes, one
server in 50 inside a planned window, health metrics on passing probes) is inserted into probe_results the
way the sink does it: chunks of `--chunk` rows (the sink's default 20,000), each through
`sinks.clickhouse.ClickHouseWriter` with its own insert_deduplication_token and
`history.ddl.DEDUP_SETTINGS`. Two databases of one fresh embedded store (chdb in a temp dir):

* rollups: the whole schema (`history.ddl.migrate`): every insert also feeds probe_minute, probe_hour and
  probe_day through their materialized views (plus case_state's view, idle here);
* raw: only migrations 1 and 2, i.e. probe_results as before issue 5.

Rows are generated before each chunk's insert and outside the timing. Timed: the insert calls only (wall
clock and this process's CPU time). Each configuration runs `--repeat` times (alternating, each on a new
database); medians are reported. Afterwards the rollups are checked: sum(probes) of each equals the rows.

    .venv/bin/python bench/history_insert.py [--quick] [--rows N] [--repeat N] [--chunk N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import Any

from _common import QuietGate, log, table, workdir
from _machine import load, print_machine
from clickhouse_connect.driver.client import Client

from fleetcore.clock import to_epoch_ms
from history.ddl import MIGRATIONS, PROBE_COLUMNS, ROLLUPS, migrate
from history.store import connect
from sinks.clickhouse import ClickHouseWriter

SERVERS = 2000
T0_MS = to_epoch_ms(datetime(2026, 9, 1, tzinfo=UTC))
MINUTE_MS = 60_000


def chunk_rows(first: int, count: int) -> list[list[Any]]:
    """Rows `first` .. `first + count - 1` of the fleet (row i: server i % SERVERS, round i // SERVERS)."""
    rows: list[list[Any]] = []
    for i in range(first, first + count):
        server_n, round_n = i % SERVERS, i // SERVERS
        server = f"srv-{server_n:05d}"
        at = T0_MS + round_n * MINUTE_MS + server_n * 17
        ok = not (server_n % 10 == 0 and round_n % 3 == 0)
        planned = "mw-bench" if server_n % 50 == 1 else None
        rows.append(
            [
                server,
                f"cust-{server_n % 40:03d}",
                f"{server}@{at}",
                at,
                5 + (i * 7919) % 400 if ok else 10_000,
                ok,
                200 if ok else None,
                None if ok else "timeout",
                None if ok else "no answer within 10 s",
                "bench",
                (i % 400) / 100 if ok else None,
                i % 300 if ok else None,
                i % 20 if ok else None,
                None,
                None,
                None,
                "probe-results",
                i % 4,
                i // 500,
                i % 500,
                planned,
            ]
        )
    return rows


def run(client: Client, rows: int, chunk: int) -> dict[str, float]:
    """Insert `rows` rows in chunks; return the timed insert seconds and CPU seconds."""
    writer = ClickHouseWriter(client)
    wall = cpu = 0.0
    for n, first in enumerate(range(0, rows, chunk)):
        data = chunk_rows(first, min(chunk, rows - first))
        w0, c0 = time.perf_counter(), time.process_time()
        writer.insert("probe_results", PROBE_COLUMNS, data, f"bench-{n % 4}-{first}-{first + len(data)}")
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
    return {"seconds": wall, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 M rows, one run each (default 10 M, 3 runs)")
    parser.add_argument("--rows", type=int, help="rows per run")
    parser.add_argument("--repeat", type=int, help="runs per configuration")
    parser.add_argument("--chunk", type=int, default=20_000, help="rows per insert (the sink's chunk)")
    args = parser.parse_args()
    rows = args.rows or (2_000_000 if args.quick else 10_000_000)
    repeat = args.repeat or (1 if args.quick else 3)
    print_machine("history insert throughput: probe rows into embedded chdb, rollups attached vs not")
    started = time.monotonic()
    gate = QuietGate(per_run=15, total=90)
    results: dict[str, list[dict[str, float]]] = {"rollups": [], "raw": []}
    checks: list[str] = []
    with workdir("bench-history-") as tmp:
        dsn = f"chdb://{tmp / 'store'}"
        for rep in range(repeat):
            for config in ("rollups", "raw"):
                client = connect(dsn, f"bench_{config}_{rep}")
                try:
                    migrate(client, MIGRATIONS if config == "rollups" else MIGRATIONS[:2])
                    busy = gate.wait()
                    log(f"{config} run {rep + 1}/{repeat}: inserting {rows:,} rows")
                    got = run(client, rows, args.chunk)
                    got["busy"] = busy
                    results[config].append(got)
                    log(f"{config}: {rows / got['seconds']:,.0f} rows/s; machine {busy:.0f}% busy before")
                    stored = client.query("SELECT count() FROM probe_results").result_rows[0][0]
                    if stored != rows:
                        checks.append(f"{config}: {stored:,} rows stored, {rows:,} inserted")
                    if config == "rollups":
                        for name in ROLLUPS:
                            total = client.query(f"SELECT sum(probes) FROM {name}").result_rows[0][0]
                            if total != rows:
                                checks.append(f"{name}: sum(probes) {total:,} != {rows:,}")
                finally:
                    client.close()

    def med(config: str, key: str) -> float:
        return statistics.median(r[key] for r in results[config])

    def rate(config: str) -> list[float]:
        return [rows / r["seconds"] for r in results[config]]

    print(
        f"{rows:,} probe rows per run ({SERVERS:,} servers x {rows // SERVERS:,} one-minute rounds), "
        f"inserts of {args.chunk:,} rows with a dedup token (ClickHouseWriter), {repeat} run(s) each"
    )
    print()
    print(
        table(
            ["schema", "rows/s", "min - max", "per CPU-s", "insert s", "busy before %", "runs"],
            [
                [
                    label,
                    statistics.median(rate(config)),
                    f"{min(rate(config)):,.0f} - {max(rate(config)):,.0f}",
                    rows / med(config, "cpu"),
                    med(config, "seconds"),
                    med(config, "busy"),
                    len(results[config]),
                ]
                for config, label in (
                    ("raw", "probe_results only (v2)"),
                    ("rollups", "with minute/hour/day rollup views (v3)"),
                )
            ],
        )
    )
    print()
    ratio = statistics.median(rate("rollups")) / statistics.median(rate("raw"))
    print(f"rollups / raw: {ratio:.2f}x the raw insert rate")
    verdict = checks if checks else "every row stored once and counted once by each rollup"
    print(f"correctness: {verdict}; load at end: {load()}; wall time {time.monotonic() - started:.0f} s")
    if checks:
        sys.exit(1)


if __name__ == "__main__":
    main()
