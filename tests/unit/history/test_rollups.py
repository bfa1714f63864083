"""Migration 3: the probe rollups equal a direct aggregate of probe_results (backfilled once, fed by the
views, not double counted by a replayed chunk), case_state holds the latest event per case."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from fleetcore.clock import to_epoch_ms
from history.ddl import (
    CASE_COLUMNS,
    MIGRATIONS,
    PROBE_COLUMNS,
    ROLLUPS,
    Backfill,
    migrate,
)
from sinks.clickhouse import ClickHouseWriter

START = datetime(2026, 10, 31, 22, 0, tzinfo=UTC)
"""Two hours before a month ends: the generated rows span two monthly partitions."""

BUCKET_SECONDS = {"probe_minute": 60, "probe_hour": 3600, "probe_day": 86400}


def probe_rows(n: int, seed: int = 7, start: datetime = START, step_s: int = 7) -> list[list[Any]]:
    """`n` probe rows in PROBE_COLUMNS order over 3 servers of 2 customers, with failures, planned rows,
    health on some rows; deterministic for a seed."""
    rng = random.Random(seed)
    rows: list[list[Any]] = []
    servers = (("srv-a", "acme"), ("srv-b", "acme"), ("srv-c", "globex"))
    for i in range(n):
        server, customer = servers[i % 3]
        at = start + timedelta(seconds=step_s * i)
        ok = rng.random() > 0.2
        planned = "mw-1" if rng.random() < 0.1 else None
        health = rng.random() < 0.5
        rows.append(
            [
                server,
                customer,
                f"{server}@{to_epoch_ms(at)}",
                to_epoch_ms(at),
                rng.randint(5, 900) if ok else 10_000,
                ok,
                200 if ok else None,
                None if ok else "timeout",
                None if ok else "no answer",
                "w",
                round(rng.uniform(0, 4), 2) if health else None,
                rng.randint(0, 500) if health else None,
                None,
                None,
                None,
                None,
                "t",
                0,
                i,
                0,
                planned,
            ]
        )
    return rows


def insert_probes(client: Client, rows: list[list[Any]], token: str | None = None) -> None:
    """Insert like the sink (with a chunk token when given)."""
    if token is None:
        client.insert("probe_results", rows, column_names=list(PROBE_COLUMNS))
    else:
        ClickHouseWriter(client).insert("probe_results", PROBE_COLUMNS, rows, token)


def truth(rows: list[list[Any]], seconds: int) -> dict[tuple[str, datetime], tuple[int, int, int, int]]:
    """(server, bucket) -> (probes, failures, planned, planned failures), computed in Python."""
    out: dict[tuple[str, datetime], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in rows:
        ms = row[3]
        bucket = datetime.fromtimestamp(ms // 1000 // seconds * seconds, tz=UTC)
        acc = out[(row[0], bucket)]
        acc[0] += 1
        acc[1] += not row[5]
        acc[2] += row[20] is not None
        acc[3] += (not row[5]) and row[20] is not None
    return {k: (a, b, c, d) for k, (a, b, c, d) in out.items()}


def rollup_counts(client: Client, table: str) -> dict[tuple[str, datetime], tuple[int, int, int, int]]:
    rows = client.query(
        f"SELECT server_id, bucket, sum(probes), sum(failures), sum(planned), sum(planned_failures) "
        f"FROM {table} GROUP BY server_id, bucket"
    ).result_rows
    out = {}
    for server, bucket, *counts in rows:
        when = bucket if bucket.tzinfo else bucket.replace(tzinfo=UTC)
        out[(str(server), when)] = tuple(int(c) for c in counts)
    return out


def assert_rollups_match(client: Client, rows: list[list[Any]]) -> None:
    for table in ROLLUPS:
        assert rollup_counts(client, table) == truth(rows, BUCKET_SECONDS[table]), table


def test_v3_backfills_the_rollups_from_existing_rows_once(store: Client) -> None:
    assert migrate(store, MIGRATIONS[:2]) == [1, 2]
    rows = probe_rows(3000)
    insert_probes(store, rows)
    assert migrate(store, MIGRATIONS[:3]) == [3]
    assert_rollups_match(store, rows)
    for step in MIGRATIONS[2].statements:  # every step repeated: the backfill does not run again
        store.command(step) if isinstance(step, str) else step(store)
    assert migrate(store, MIGRATIONS[:3]) == []
    assert_rollups_match(store, rows)


def test_a_backfill_interrupted_before_its_view_starts_over(store: Client) -> None:
    migrate(store)
    rows = probe_rows(900)
    insert_probes(store, rows)  # the views count these
    store.command("DROP VIEW probe_hour_mv")  # as if the step crashed after (part of) its insert
    store.command("INSERT INTO probe_hour SELECT * FROM probe_hour LIMIT 5")  # a partial second fill
    step = [  # the latest backfill of the view (v5: with the bucket edges)
        s for m in MIGRATIONS for s in m.statements if isinstance(s, Backfill) and s.view == "probe_hour_mv"
    ][-1]
    step(store)
    assert rollup_counts(store, "probe_hour") == truth(rows, 3600)
    more = probe_rows(300, seed=8, start=START + timedelta(days=2))
    insert_probes(store, more)  # the recreated view feeds new rows
    assert rollup_counts(store, "probe_hour") == truth(rows + more, 3600)


def test_new_inserts_reach_every_rollup(store: Client) -> None:
    migrate(store)
    rows = probe_rows(2000)
    for n, start in enumerate(range(0, len(rows), 500)):
        insert_probes(store, rows[start : start + 500], token=f"t-0-{n}")
    assert_rollups_match(store, rows)


def test_a_replayed_chunk_is_not_double_counted_in_the_rollups(store: Client) -> None:
    migrate(store)
    chunk = probe_rows(1200)  # spans two monthly partitions: several blocks under one token
    insert_probes(store, chunk, token="probe-results-0-100-199")
    before = {t: rollup_counts(store, t) for t in ROLLUPS}
    insert_probes(store, chunk, token="probe-results-0-100-199")  # the replay after a crash
    assert store.query("SELECT count() FROM probe_results").result_rows[0][0] == len(chunk)
    for table in ROLLUPS:
        assert rollup_counts(store, table) == before[table], table
    assert_rollups_match(store, chunk)
    insert_probes(store, chunk, token="another-token")  # the check can fail: a new token counts again
    assert rollup_counts(store, "probe_day") != before["probe_day"]


def _exact(ordered: list[int], q: float) -> int:
    """The q-quantile of sorted values (nearest rank)."""
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered))))]


def test_latency_quantiles_and_health_averages_match_the_raw_rows(store: Client) -> None:
    migrate(store)
    rows = probe_rows(6000, seed=11)
    insert_probes(store, rows, token="t")
    got = store.query(
        "SELECT server_id, quantilesTDigestMerge(0.5, 0.95, 0.99)(latency), avgMerge(load1),"
        " avgMerge(connections) FROM probe_day GROUP BY server_id"
    ).result_rows
    assert len(got) == 3
    for server, (p50, p95, p99), load1, connections in got:
        mine = [r for r in rows if r[0] == server]
        latencies = sorted(r[4] for r in mine)
        for q, estimate in ((0.5, p50), (0.95, p95), (0.99, p99)):  # t-digest: within 2 % of rank
            assert _exact(latencies, q - 0.02) <= estimate <= _exact(latencies, q + 0.02), (server, q)
        assert p99 >= p95 >= p50
        loads = [r[10] for r in mine if r[10] is not None]
        conns = [r[11] for r in mine if r[11] is not None]
        assert load1 == pytest.approx(sum(loads) / len(loads), rel=1e-3)
        assert connections == pytest.approx(sum(conns) / len(conns), rel=1e-9)


V2_CASE_COLUMNS = CASE_COLUMNS[: CASE_COLUMNS.index("key_id")]
"""case_events' columns before v4 (a store migrated to v2 or v3 has only these)."""


def _case_row(
    case_id: str,
    seq: int,
    state: str,
    at_min: int,
    seq_type: str = "case.note",
    status: str = "verified",
    columns: tuple[str, ...] = CASE_COLUMNS,
) -> list[Any]:
    at = to_epoch_ms(START + timedelta(minutes=at_min))
    values: dict[str, Any] = {
        "event_id": f"{case_id}-{seq}",
        "case_id": case_id,
        "type": seq_type,
        "severity": 1,
        "source": "monitor",
        "server_id": "srv-a",
        "customer_id": "acme",
        "at": at,
        "actor": "x",
        "details": "{}",
        "kafka_topic": "t",
        "kafka_partition": 0,
        "kafka_offset": seq,
        "state": state,
        "ticket": None if seq == 0 else f"T-{case_id}",
        "owner": None,
        "partner_id": None,
        "reason": "",
        "command_id": None,
        "visibility": "customer",
        "seq": seq,
        "prev_hash": "",
        "hash": f"h-{case_id}-{seq}",
        "key_id": "k",
        "sig": "s",
        "chain_status": status,
        "chain_copy": "" if status == "verified" else f"0:{seq}",
        "chain_fault": "" if status == "verified" else "forged",
    }
    return [values[c] for c in columns]


def test_case_state_is_the_latest_event_per_case(store: Client) -> None:
    migrate(store, MIGRATIONS[:2])
    old = [
        _case_row("c1", 0, "new", 0, columns=V2_CASE_COLUMNS),
        _case_row("c1", 1, "triaged", 1, columns=V2_CASE_COLUMNS),
    ]
    store.insert("case_events", old, column_names=list(V2_CASE_COLUMNS))
    migrate(store)  # backfill from the stored events (rows from before v4: chain_status '', counted)
    later = [
        _case_row("c2", 1, "working", 5),
        _case_row("c1", 3, "resolved", 9),
        _case_row("c2", 0, "new", 4),  # out of order within a chunk
        _case_row("c1", 2, "working", 3),
    ]
    store.insert("case_events", later, column_names=list(CASE_COLUMNS))
    store.insert("case_events", [_case_row("c2", 0, "new", 4)], column_names=list(CASE_COLUMNS))  # late
    got = store.query(
        "SELECT case_id, seq, state, ticket, last_event_id, hash FROM case_state FINAL ORDER BY case_id"
    ).result_rows
    assert got == [
        ("c1", 3, "resolved", "T-c1", "c1-3", "h-c1-3"),
        ("c2", 1, "working", "T-c2", "c2-1", "h-c2-1"),
    ]
    direct = store.query(
        "SELECT case_id, max(seq), argMax(state, seq) FROM case_events GROUP BY case_id ORDER BY case_id"
    ).result_rows
    assert [(c, s, st) for c, s, st, *_ in got] == [tuple(r) for r in direct]


def test_case_state_ignores_events_the_sink_did_not_verify(store: Client) -> None:
    """A forged event at a higher seq (e.g. a 'resolved' appended without the key) is stored as what it is,
    and kept apart from the genuine row, but never becomes the case's state."""
    migrate(store)
    genuine = [_case_row("c1", 0, "new", 0), _case_row("c1", 1, "working", 1)]
    forged = [
        _case_row("c1", 2, "resolved", 2, status="unsigned"),
        _case_row("c1", 1, "closed", 1, status="misplaced"),  # a copy of seq 1 elsewhere, same key fields
    ]
    store.insert("case_events", genuine + forged, column_names=list(CASE_COLUMNS))
    store.command("OPTIMIZE TABLE case_events FINAL")
    got = store.query("SELECT case_id, seq, state FROM case_state FINAL").result_rows
    assert got == [("c1", 1, "working")]
    kept = store.query(
        "SELECT seq, state, chain_status FROM case_events FINAL WHERE event_id = 'c1-1' ORDER BY chain_status"
    ).result_rows
    assert kept == [(1, "closed", "misplaced"), (1, "working", "verified")]  # the genuine row survives
    faults = store.query("SELECT seq, chain_status FROM case_chain_faults ORDER BY seq").result_rows
    assert faults == [(1, "misplaced"), (2, "unsigned")]
