"""Report latency: how long each history report takes over a month of a 2,000-server fleet (10 M probe rows).

A probe history is generated straight into a fresh embedded store (chdb in a temp dir, the whole schema via
`history.ddl.migrate`, so the rollup views are fed as in production): `--rows` rows (default 10 M) for
`--servers` servers (default 2,000) over 7 customers of uneven size (40 % .. 2.5 % of the fleet), spread
evenly over November 2026 (10 M rows: one probe every 8.6 min per server; 2 M: every 43 min). Rows are made
in SQL (`INSERT ... SELECT FROM numbers()`, 1 M rows per insert): ~1 % failures (scattered single failures
plus five-probe outages on every 10th server), one server in 100 inside a two-hour planned window (rows with
maintenance_id, the first half failing), latency growing ~20 ms over the month, health metrics on passing
probes. `--cases` support cases (default 2,000; Sev1 monitor cases, some breaching the 2 h work clock,
Sev2 email and Sev3 portal cases, some breaching first response) are built as chained `CaseEvent`s and
inserted with the sink's `case_row`.

Then each report (`history.reports.build`: uptime, sla, capacity with a 500 ms threshold, cases) runs for
the whole fleet and for the largest customer, `--repeat` times (default 3) each; min and median wall-clock
seconds are reported, with the rows of the answer. Each report is checked against what was generated
(probe and case counts, fleet size). The uptime report (which reads the rollups) is also timed from the raw
probes (`uptime_report(..., source="raw")`, the reference) and both answers must be equal.
The 100 M row run is `--rows 100000000` (generated the same way, in 100 inserts; several minutes to
generate on a small machine).

    .venv/bin/python bench/report_latency.py [--rows N] [--servers N] [--cases N] [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from _common import QuietGate, log, table, workdir
from _machine import load, print_machine
from clickhouse_connect.driver.client import Client

from fleetcore.clock import to_epoch_ms
from history.ddl import CASE_COLUMNS, PROBE_COLUMNS, migrate
from history.reports import build, report_query
from history.reports.uptime import uptime_report
from history.store import connect
from policy.sla import PolicyBook, SlaPolicy
from schemas.cases import CaseEvent, CaseEventType, CaseSource, CaseState, Severity, chained, event_id_for
from sinks.rows import case_row, columns

MONTH = "2026-11"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
MONTH_MS = 30 * 86_400_000
CHUNK = 1_000_000
THRESHOLD_MS = 500.0
# (customer, share of the fleet in 40ths, uptime target of its plan)
CUSTOMERS: tuple[tuple[str, int, float | None], ...] = (
    ("acme", 16, 99.5),
    ("globex", 8, 99.9),
    ("initech", 6, 99.0),
    ("umbrella", 4, 99.9),
    ("hooli", 3, None),
    ("stark", 2, 99.95),
    ("wayne", 1, 98.0),
)
LARGEST = CUSTOMERS[0][0]
POLICIES = PolicyBook(
    customers={name: SlaPolicy(uptime_target_percent=target) for name, _, target in CUSTOMERS if target}
)


def customer_sql(column: str) -> str:
    """A SQL expression giving the customer of server number `column` (shares in 40ths, as CUSTOMERS)."""
    parts, upper = [], 0
    for name, share, _ in CUSTOMERS[:-1]:
        upper += share
        parts.append(f"{column} % 40 < {upper}, '{name}'")
    return f"multiIf({', '.join(parts)}, '{CUSTOMERS[-1][0]}')"


def customer_of(server: int) -> str:
    """The customer of server number `server` (the same rule as customer_sql)."""
    upper = 0
    for name, share, _ in CUSTOMERS:
        upper += share
        if server % 40 < upper:
            return name
    return CUSTOMERS[-1][0]


def probe_sql(first: int, count: int, servers: int, rounds: int) -> str:
    """INSERT ... SELECT of rows `first` .. `first + count - 1` (row i: server i % servers, round
    i // servers)."""
    cadence = MONTH_MS // rounds
    spread = max(1, cadence // servers)
    window = max(2, -(-2 * 3_600_000 // cadence))
    w0 = rounds // 3
    cols = ", ".join(PROBE_COLUMNS)
    return f"""
INSERT INTO probe_results ({cols})
SELECT server_id, customer_id, concat(server_id, '@', toString(at_ms)),
    fromUnixTimestamp64Milli(at_ms, 'UTC'),
    if(ok, 20 + s % 80 + intDiv(h, 1000) % 40 + intDiv(r * 20, {rounds}) + if(h % 100 = 1, 300, 0), 10000),
    ok, if(ok, 200, NULL), if(ok, NULL, 'timeout'), if(ok, NULL, 'no answer within 10 s'), 'bench',
    if(ok, toFloat32(intDiv(h, 256) % 400 / 100), NULL), if(ok, toUInt32(intDiv(h, 65536) % 300), NULL),
    if(ok, toUInt32(intDiv(h, 16777216) % 20), NULL),
    if(ok, toFloat32(intDiv(h, 4294967296) % 1000 / 10), NULL),
    NULL, NULL, 'probe-results', i % 4, intDiv(i, 500), i % 500, if(planned, concat('mw-', toString(s)), NULL)
FROM (
    SELECT number AS i, i % {servers} AS s, intDiv(i, {servers}) AS r, cityHash64(s, r) AS h,
        concat('srv-', leftPad(toString(s), 5, '0')) AS server_id, {customer_sql("s")} AS customer_id,
        toInt64({to_epoch_ms(T0)} + r * {cadence} + s * {spread}) AS at_ms,
        s % 100 = 11 AND r >= {w0} AND r < {w0 + window} AS planned,
        NOT (h % 200 = 0 OR (s % 10 = 3 AND (r + s * 7) % 100 < 5)
            OR (planned AND r < {w0 + window // 2})) AS ok
    FROM numbers({first}, {count})
)
"""


def insert_probes(client: Client, rows: int, servers: int) -> float:
    """Generate `rows` probe rows in the store; return the seconds it took."""
    rounds = -(-rows // servers)
    started = time.perf_counter()
    for first in range(0, rows, CHUNK):
        client.command(probe_sql(first, min(CHUNK, rows - first), servers, rounds))
        log(f"probes: {min(first + CHUNK, rows):,} / {rows:,} rows")
    return time.perf_counter() - started


T = CaseEventType
S = CaseState
Step = tuple[float, CaseEventType, CaseState, dict[str, Any], int | None]


def _due(at: datetime, **clocks: float) -> dict[str, Any]:
    return {
        "due": ",".join(
            f"{k.replace('_', '.')}={(at + timedelta(minutes=v)).isoformat()}" for k, v in clocks.items()
        )
    }


PAGE_OPS = {"channel": "page", "role": "operations_manager", "purpose": "sev1.opened"}
PAGE_VP = {"channel": "page", "role": "vp_operations", "purpose": "sla.breached:sev1.work"}


def case_steps(kind: int, at: datetime) -> tuple[CaseSource, int | None, list[Step]]:
    """Source, opening severity and steps (minutes after opening) of a case of `kind` (0..9)."""
    if kind <= 4:  # Sev1 worked in time, hourly updates answered, resolved
        return (
            CaseSource.MONITOR,
            1,
            [
                (0, T.CASE_OPENED, S.NEW, _due(at, sev1_work=120), None),
                (0.1, T.NOTIFICATION_REQUESTED, S.NEW, PAGE_OPS, None),
                (20, T.WORK_STARTED, S.WORKING, {"due": ""}, None),
                (60, T.NOTE, S.WORKING, _due(at, status_update=120), None),
                (110, T.CUSTOMER_UPDATE, S.WORKING, _due(at, status_update=170), None),
                (150, T.RESOLVED, S.RESOLVED, {"due": ""}, None),
            ],
        )
    if kind == 5:  # Sev1 not worked within 2 h: VP paged, a missed update, closed
        return (
            CaseSource.MONITOR,
            1,
            [
                (0, T.CASE_OPENED, S.NEW, _due(at, sev1_work=120), None),
                (0.1, T.NOTIFICATION_REQUESTED, S.NEW, PAGE_OPS, None),
                (120, T.SLA_BREACHED, S.NEW, {"clock": "sev1.work"}, None),
                (120, T.NOTIFICATION_REQUESTED, S.NEW, {**PAGE_VP, "due": ""}, None),
                (150, T.WORK_STARTED, S.WORKING, _due(at, status_update=210), None),
                (210, T.STATUS_NOTICE, S.WORKING, _due(at, status_update=270), None),
                (260, T.CUSTOMER_UPDATE, S.WORKING, _due(at, status_update=320), None),
                (300, T.RESOLVED, S.RESOLVED, {"due": ""}, None),
                (900, T.CLOSED, S.CLOSED, {}, None),
            ],
        )
    if kind <= 7:  # email, triaged Sev2, answered, resolved
        return (
            CaseSource.EMAIL,
            None,
            [
                (0, T.CASE_OPENED, S.NEW, {}, None),
                (30, T.TRIAGED, S.TRIAGED, {}, 2),
                (240, T.CUSTOMER_UPDATE, S.TRIAGED, {}, None),
                (1000, T.RESOLVED, S.RESOLVED, {}, None),
            ],
        )
    if kind == 8:  # portal Sev3 of a partner, worked the next day
        return (
            CaseSource.PORTAL,
            3,
            [
                (0, T.CASE_OPENED, S.NEW, {}, None),
                (600, T.WORK_STARTED, S.WORKING, {}, None),
                (2000, T.RESOLVED, S.RESOLVED, {}, None),
            ],
        )
    return (  # portal Sev3 whose first response breached at 48 h
        CaseSource.PORTAL,
        3,
        [
            (0, T.CASE_OPENED, S.NEW, {}, None),
            (48 * 60, T.SLA_BREACHED, S.NEW, {"clock": "first.response"}, None),
            (50 * 60, T.WORK_STARTED, S.WORKING, {}, None),
        ],
    )


def case_events(n: int, servers: int) -> list[CaseEvent]:
    """Chained events of `n` cases opened over the month (case i: kind i % 10, server i * 7919 % servers)."""
    events: list[CaseEvent] = []
    for i in range(n):
        server = (i * 7919) % servers
        opened = T0 + timedelta(minutes=int(i * 28 * 24 * 60 / n) + i % 60)
        source, severity, steps = case_steps(i % 10, opened)
        case_id = f"case-{i:06d}"
        prev = ""
        for seq, (minute, type_, state, details, new_severity) in enumerate(steps):
            severity = new_severity or severity
            event = CaseEvent(
                event_id=event_id_for(case_id, type_, str(seq)),
                case_id=case_id,
                type=type_,
                severity=Severity(severity) if severity else None,
                source=source,
                server_id=f"srv-{server:05d}" if source is CaseSource.MONITOR else None,
                customer_id=customer_of(server),
                at=opened + timedelta(minutes=minute),
                actor="bench",
                details=details,
                state=state,
                partner_id="isp-1" if source is CaseSource.PORTAL else None,
                reason=f"step {seq}",
            )
            event = chained(event, seq, prev)
            prev = event.hash
            events.append(event)
    return events


def insert_cases(client: Client, n: int, servers: int) -> int:
    """Insert the events of `n` cases; return how many events."""
    rows = [case_row(e, "cases", 0, i) for i, e in enumerate(case_events(n, servers))]
    for first in range(0, len(rows), 20_000):
        client.insert(
            "case_events",
            columns(rows[first : first + 20_000], len(CASE_COLUMNS)),
            column_names=list(CASE_COLUMNS),
            column_oriented=True,
        )
    return len(rows)


def answer_size(name: str, answer: dict[str, Any]) -> int:
    """Rows of an answer (the SLA report's cases and the capacity forecasts included)."""
    return len(answer["rows"]) + len(answer.get("cases", [])) + len(answer.get("forecast", []))


def check(name: str, customer: str, answer: dict[str, Any], expect: dict[str, Any]) -> str | None:
    """What is wrong with a report's answer against the generated history, or None."""
    scope = customer or "fleet"
    if name == "uptime":
        probes = sum(r["probes"] for r in answer["rows"] if r["level"] == "customer")
        want = expect["probes"][customer] if customer else sum(expect["probes"].values())
        return None if probes == want else f"uptime {scope}: {probes:,} probes, {want:,} generated"
    if name == "capacity":
        biggest = max((r["servers"] for r in answer["fleet"]), default=0)
        want = expect["servers"][customer] if customer else sum(expect["servers"].values())
        return None if biggest == want else f"capacity {scope}: fleet of {biggest:,}, {want:,} servers"
    cases = expect["cases"][customer] if customer else sum(expect["cases"].values())
    if name == "sla":
        got = len(answer["cases"])
        return None if got == cases else f"sla {scope}: {got:,} cases, {cases:,} generated"
    total = next((r["opened"] for r in answer["rows"] if r["dimension"] == "total"), 0)
    return None if total == cases else f"cases {scope}: {total:,} opened, {cases:,} generated"


def expected(client: Client, n_cases: int, servers: int) -> dict[str, Any]:
    """Probe rows, servers and cases per customer as generated."""
    rows = client.query("SELECT customer_id, count() FROM probe_results GROUP BY 1").result_rows
    probes: dict[str, int] = {str(name): int(n) for name, n in rows}
    fleet: dict[str, int] = {}
    for s in range(servers):
        fleet[customer_of(s)] = fleet.get(customer_of(s), 0) + 1
    cases: dict[str, int] = {}
    for i in range(n_cases):
        name = customer_of((i * 7919) % servers)
        cases[name] = cases.get(name, 0) + 1
    return {"probes": probes, "servers": fleet, "cases": cases}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000, help="probe rows (default 10 M)")
    parser.add_argument("--servers", type=int, default=2000, help="servers in the fleet")
    parser.add_argument("--cases", type=int, default=2000, help="support cases opened in the month")
    parser.add_argument("--repeat", type=int, default=3, help="runs per report and scope")
    args = parser.parse_args()
    if args.rows < args.servers or args.servers < 40 or args.cases < 10 or args.repeat < 1:
        parser.error("need rows >= servers >= 40, cases >= 10, repeat >= 1")
    print_machine("report latency: history reports over a generated month of probes and cases")
    started = time.monotonic()
    gate = QuietGate(per_run=10, total=60)
    results: list[list[Any]] = []
    problems: list[str] = []
    with workdir("bench-reports-") as tmp:
        client = connect(f"chdb://{tmp / 'store'}", "bench")
        try:
            migrate(client)
            insert_s = insert_probes(client, args.rows, args.servers)
            events = insert_cases(client, args.cases, args.servers)
            client.command("OPTIMIZE TABLE case_events FINAL")
            expect = expected(client, args.cases, args.servers)
            stored = sum(expect["probes"].values())
            if stored != args.rows:
                problems.append(f"{stored:,} probe rows stored, {args.rows:,} generated")
            failures, planned = client.query(
                "SELECT countIf(NOT ok), countIf(maintenance_id IS NOT NULL) FROM probe_results"
            ).result_rows[0]
            log(f"generated {args.rows:,} probe rows in {insert_s:.1f} s and {events:,} case events")
            for name in ("uptime", "sla", "capacity", "cases"):
                for customer in ("", LARGEST):
                    query = report_query(MONTH, customer or None)
                    threshold = THRESHOLD_MS if name == "capacity" else None
                    busy = gate.wait()
                    times: list[float] = []
                    answer: dict[str, Any] = {}
                    for _ in range(args.repeat):
                        t0 = time.perf_counter()
                        answer = build(client, name, query, POLICIES, threshold)
                        times.append(time.perf_counter() - t0)
                    problem = check(name, customer, answer, expect)
                    if problem:
                        problems.append(problem)
                    if name == "uptime":  # the reference: the same report from the raw probes
                        raw_times: list[float] = []
                        for _ in range(args.repeat):
                            t0 = time.perf_counter()
                            raw = uptime_report(client, query, POLICIES, source="raw")
                            raw_times.append(time.perf_counter() - t0)
                        if raw != answer:
                            problems.append(f"uptime {customer or 'fleet'}: rollups and raw probes differ")
                        scope = f"customer {customer}" if customer else "whole fleet"
                        results.append(
                            [
                                "uptime (raw probes)",
                                scope,
                                min(raw_times),
                                statistics.median(raw_times),
                                answer_size(name, raw),
                                busy,
                            ]
                        )
                    scope = f"customer {customer}" if customer else "whole fleet"
                    label = {
                        "capacity": f"capacity (threshold {THRESHOLD_MS:.0f} ms)",
                        "uptime": "uptime (rollups)",
                    }.get(name, name)
                    log(f"{label}, {scope}: median {statistics.median(times):.2f} s")
                    results.append(
                        [label, scope, min(times), statistics.median(times), answer_size(name, answer), busy]
                    )
        finally:
            client.close()

    print(
        f"{args.rows:,} probe rows ({args.servers:,} servers, {len(CUSTOMERS)} customers, month {MONTH}, "
        f"{failures:,} failed = {100 * failures / args.rows:.2f} %, {planned:,} in planned windows), "
        f"{args.cases:,} cases ({events:,} events); generated in {insert_s:.1f} s "
        f"({args.rows / insert_s:,.0f} rows/s with the rollup views); "
        f"largest customer {LARGEST} ({expect['probes'][LARGEST]:,} rows); {args.repeat} run(s) each"
    )
    print()
    print(
        table(
            ["report", "scope", "min s", "median s", "answer rows", "busy before %"],
            [[r[0], r[1], f"{r[2]:.3f}", f"{r[3]:.3f}", r[4], r[5]] for r in results],
        )
    )
    print()
    verdict = problems if problems else "every report matches the generated probes, fleet and cases"
    print(f"correctness: {verdict}; load at end: {load()}; wall time {time.monotonic() - started:.0f} s")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
