"""Differential test: the uptime report read from the rollups (probe_hour, raw probes only for buckets of
mixed classes) gives every number the raw-probe path gives, on generated histories with outages across
hour, day and month edges, maintenance windows, late rows, replayed chunks and rows stored twice."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from fleetcore.clock import to_epoch_ms
from history.ddl import MIGRATIONS, migrate
from history.reports.common import report_query
from history.reports.uptime import uptime_report
from policy.sla import PolicyBook, SlaPolicy
from tests.unit.history.test_rollups import insert_probes

EPISODES = (
    datetime(2026, 10, 31, 21, 0, tzinfo=UTC),  # across the October/November edge
    datetime(2026, 11, 14, 22, 30, tzinfo=UTC),  # across a day edge
    datetime(2026, 11, 30, 22, 0, tzinfo=UTC),  # across the November/December edge
)
EPISODE = timedelta(hours=5)
SERVERS = (("srv-a", "acme"), ("srv-b", "acme"), ("srv-c", "globex"), ("srv-d", "globex"), ("srv-e", "hooli"))
POLICIES = PolicyBook(customers={"acme": SlaPolicy(uptime_target_percent=99.0)})


def _intervals(rng: random.Random, start: datetime, edges: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Outages or windows: one across each given edge, and a random one inside the episode."""
    out = [
        (e - timedelta(minutes=rng.randint(3, 50)), e + timedelta(minutes=rng.randint(3, 50))) for e in edges
    ]
    begin = start + timedelta(minutes=rng.randint(0, 240))
    out.append((begin, begin + timedelta(minutes=rng.randint(1, 40))))
    return out


def _inside(at: datetime, spans: list[tuple[datetime, datetime]]) -> bool:
    return any(a <= at < b for a, b in spans)


def history(seed: int) -> list[list[Any]]:
    """Probe rows (PROBE_COLUMNS order) of every server over the episodes; deterministic for a seed."""
    rng = random.Random(seed)
    rows: list[list[Any]] = []
    for server, customer in SERVERS:
        cadence = rng.choice((20, 45, 60, 300, 900, 1700))
        for start in EPISODES:
            hour_edge = start + timedelta(hours=rng.randint(1, 4))
            day_edge = (start + timedelta(days=1)).replace(hour=0, minute=0)
            outages = _intervals(rng, start, [hour_edge, day_edge] if rng.random() < 0.7 else [day_edge])
            windows = _intervals(rng, start, [hour_edge + timedelta(hours=1)] if rng.random() < 0.5 else [])
            at = start + timedelta(seconds=rng.randint(0, cadence))
            while at < start + EPISODE:
                planned = f"mw-{server}" if _inside(at, windows) else None
                ok = not _inside(at, outages) and rng.random() > 0.02
                if planned and rng.random() < 0.5:
                    ok = False
                ms = to_epoch_ms(at)
                rows.append(
                    [
                        server,
                        customer,
                        f"{server}@{ms}",
                        ms,
                        rng.randint(5, 900) if ok else 10_000,
                        ok,
                        200 if ok else None,
                        None if ok else "timeout",
                        None if ok else "no answer",
                        "w",
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                        "t",
                        0,
                        len(rows),
                        0,
                        planned,
                    ]
                )
                at += timedelta(seconds=cadence, milliseconds=rng.randint(-500, 500))
    return rows


def store_like_the_sink(client: Client, rows: list[list[Any]], seed: int) -> None:
    """Chunks in shuffled order (rows arriving after later buckets were written), some chunks replayed with
    their token (dropped), a few rows stored again under another token (the sink's at-least-once)."""
    rng = random.Random(seed)
    chunks = [rows[i : i + 97] for i in range(0, len(rows), 97)]
    order = list(range(len(chunks)))
    rng.shuffle(order)
    for n in order:
        insert_probes(client, chunks[n], token=f"probe-results-0-{n}")
        if rng.random() < 0.2:
            insert_probes(client, chunks[n], token=f"probe-results-0-{n}")
    insert_probes(client, rng.sample(rows, 15), token="redelivered")


def _both(client: Client, month: str, customer: str = "", server: str = "") -> tuple[Any, Any]:
    query = report_query(month, customer or None, server or None)
    return (
        uptime_report(client, query, POLICIES, source="rollup"),
        uptime_report(client, query, POLICIES, source="raw"),
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_uptime_number_from_the_rollups_equals_the_raw_one(store: Client, seed: int) -> None:
    migrate(store)
    store_like_the_sink(store, history(seed), seed)
    seen = {"down_ms": 0, "unknown_ms": 0, "planned_ms": 0, "planned_failures": 0, "unplanned_failures": 0}
    for month in ("2026-10", "2026-11", "2026-12"):
        rollup, raw = _both(store, month)
        assert rollup == raw, month
        assert len(raw["rows"]) == len(SERVERS) + 3
        for row in raw["rows"]:
            for key in seen:
                seen[key] += row[key]
        for customer in ("acme", "globex"):
            rollup, raw = _both(store, month, customer=customer)
            assert rollup == raw, (month, customer)
        rollup, raw = _both(store, month, server="srv-c")
        assert rollup == raw, (month, "srv-c")
    assert all(seen.values()), seen  # the histories have outages, windows and both kinds of failure


def test_a_row_stored_twice_is_counted_once(store: Client) -> None:
    migrate(store)
    rows = history(4)
    insert_probes(store, rows, token="first")
    before = _both(store, "2026-11")[0]
    hours: dict[tuple[str, int], list[list[Any]]] = {}
    for row in rows:
        hours.setdefault((row[0], row[3] // 3_600_000), []).append(row)
    pure = next(h for h in hours.values() if len(h) > 3 and all(r[5] and r[20] is None for r in h))
    insert_probes(store, pure[1:3], token="again")  # stored twice in an all-ok hour: counted twice there
    rollup, raw = _both(store, "2026-11")
    assert rollup == raw == before


def test_v5_backfills_the_bucket_edges_of_a_store_written_before(store: Client) -> None:
    assert migrate(store, MIGRATIONS[:4]) == [1, 2, 3, 4]
    store_like_the_sink(store, history(5), 5)  # the v3 views: rollups without first/last probe times
    assert migrate(store) == [5]
    for month in ("2026-10", "2026-11", "2026-12"):
        rollup, raw = _both(store, month)
        assert rollup == raw, month
    insert_probes(store, history(6)[::7], token="after-v5")  # the recreated views feed the new columns
    rollup, raw = _both(store, "2026-11")
    assert rollup == raw
