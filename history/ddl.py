"""History tables and their versioned, idempotent migrations.

`migrate(client)` runs at every sink start. Applied versions are recorded in `schema_migrations`; every
statement of a migration is idempotent (`CREATE ... IF NOT EXISTS`, `ADD COLUMN IF NOT EXISTS`), so two
processes migrating at once, or a crash between a statement and its version row, are harmless.

No TTL in the migrations: a TTL drops rows already past it at insert time, so replays and backfills of old
data would vanish silently. Retention is opt-in (settings) and applied at every start by `history.retention`.

v3 adds the rollups (probe_minute/hour/day, AggregatingMergeTree fed by materialized views from
probe_results), case_state (latest event per case, fed by a view from case_events) and maintenance_windows
(written by the sink from the maintenance topic). A sink chunk replayed with the same
insert_deduplication_token is dropped by probe_results and, with
``deduplicate_blocks_in_dependent_materialized_views`` (`DEDUP_SETTINGS`), by every rollup too.

Backfill: the rows stored before v3 reach the new tables through one `Backfill` step per view: while the view
does not exist yet, the target is truncated, filled with INSERT ... SELECT from the source, and only then
is the view created. A crash anywhere in between repeats the whole step; once the view exists the step is a
no-op, so it runs once. Run the first v3 start with one migrating process (two at once could both backfill).

v4 stores the sink's verdict on each case event (chain_status: verified, unsigned, misplaced, forged; ''
for rows stored before v4) and keeps unverified copies apart in the ReplacingMergeTree key, so a forged
copy never replaces a genuine row; reports and case_state count `COUNTED_EVENTS` only, and the
`case_chain_faults` view lists what is not verified.

When you add a migration: append a `Migration` with the next version, idempotent steps only; if it adds
columns the sink writes, extend the column tuples below in the same change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from fleetcore.errors import StoreError

log = logging.getLogger(__name__)

PROBE_RESULTS = "probe_results"
CASE_EVENTS = "case_events"
MIGRATIONS_TABLE = "schema_migrations"
PROBE_MINUTE = "probe_minute"
PROBE_HOUR = "probe_hour"
PROBE_DAY = "probe_day"
ROLLUPS: tuple[str, ...] = (PROBE_MINUTE, PROBE_HOUR, PROBE_DAY)
"""The probe rollup tables, finest first."""
CASE_STATE = "case_state"
MAINTENANCE_WINDOWS = "maintenance_windows"

DEDUP_SETTINGS: dict[str, int] = {"deduplicate_blocks_in_dependent_materialized_views": 1}
"""Insert settings that make a deduplicated chunk skip the materialized views too (with its token)."""

PROBE_COLUMNS: tuple[str, ...] = (
    "server_id",
    "customer_id",
    "probe_id",
    "started_at",
    "latency_ms",
    "ok",
    "status_code",
    "error_class",
    "error_message",
    "worker_id",
    "health_load1",
    "health_connections",
    "health_users",
    "health_cpu_percent",
    "health_memory_percent",
    "health_disk_percent",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "batch_item",
    "maintenance_id",
)
"""Columns the sink writes to probe_results, in insert order (started_at as epoch milliseconds)."""

CASE_COLUMNS: tuple[str, ...] = (
    "event_id",
    "case_id",
    "type",
    "severity",
    "source",
    "server_id",
    "customer_id",
    "at",
    "actor",
    "details",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "state",
    "ticket",
    "owner",
    "partner_id",
    "reason",
    "command_id",
    "visibility",
    "seq",
    "prev_hash",
    "hash",
    "key_id",
    "sig",
    "chain_status",
    "chain_copy",
    "chain_fault",
)
"""Columns the sink writes to case_events, in insert order (at as epoch milliseconds, details as JSON,
severity 0 for none)."""

COUNTED_CHAIN_STATUSES: tuple[str, ...] = ("verified", "")
"""case_events.chain_status values reports count: events the sink verified, and rows stored before v4
(chain_status '': never checked; they were counted before the upgrade and still are)."""
COUNTED_EVENTS = "chain_status IN ('verified', '')"
"""SQL condition: a case_events row the reports count (`COUNTED_CHAIN_STATUSES`)."""
CASE_CHAIN_FAULTS = "case_chain_faults"

_PROBE_RESULTS_V1 = f"""
CREATE TABLE IF NOT EXISTS {PROBE_RESULTS} (
    server_id LowCardinality(String) COMMENT 'server probed',
    customer_id LowCardinality(String) COMMENT 'the server''s customer',
    probe_id String COMMENT '<server_id>@<started_at epoch ms>',
    started_at DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)) COMMENT 'probe start',
    latency_ms UInt32 CODEC(T64, ZSTD(1)) COMMENT 'time to answer or failure',
    ok Bool COMMENT 'passed',
    status_code Nullable(UInt16) COMMENT 'HTTP status, if any',
    error_class LowCardinality(Nullable(String)) COMMENT 'timeout, refused, dns, ...',
    error_message Nullable(String) CODEC(ZSTD(3)) COMMENT 'failure detail',
    worker_id LowCardinality(String) COMMENT 'probe worker',
    health_load1 Nullable(Float32),
    health_connections Nullable(UInt32),
    health_users Nullable(UInt32),
    health_cpu_percent Nullable(Float32),
    health_memory_percent Nullable(Float32),
    health_disk_percent Nullable(Float32),
    kafka_topic LowCardinality(String) COMMENT 'source topic',
    kafka_partition UInt16 COMMENT 'source partition',
    kafka_offset UInt64 CODEC(Delta, ZSTD(1)) COMMENT 'offset of the ProbeBatch message',
    batch_item UInt32 COMMENT 'index of the result in its batch'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(started_at)
ORDER BY (customer_id, server_id, started_at)
SETTINGS non_replicated_deduplication_window = 10000
"""

_CASE_EVENTS_V1 = f"""
CREATE TABLE IF NOT EXISTS {CASE_EVENTS} (
    event_id String COMMENT 'deterministic event id',
    case_id String COMMENT 'deterministic case id',
    type LowCardinality(String) COMMENT 'case.opened, server.recovered, ...',
    severity UInt8 COMMENT '1 urgent .. 3 information',
    source LowCardinality(String) COMMENT 'monitor, email, portal, staff',
    server_id LowCardinality(Nullable(String)) COMMENT 'server concerned (monitor cases)',
    customer_id LowCardinality(String) COMMENT 'customer concerned',
    at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)) COMMENT 'when it happened',
    actor String COMMENT 'who or what caused it',
    details String CODEC(ZSTD(3)) COMMENT 'event facts, JSON object',
    kafka_topic LowCardinality(String) COMMENT 'source topic',
    kafka_partition UInt16 COMMENT 'source partition',
    kafka_offset UInt64 COMMENT 'offset of the event message'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (customer_id, case_id, at, event_id)
SETTINGS non_replicated_deduplication_window = 10000
"""

# v2: planned maintenance on probe results; the chained case event fields (issue 3). Rows stored before
# get the defaults (not planned; state new, no ticket, unchained), which is what those events meant.
# case_events' ReplacingMergeTree key is (customer_id, case_id, at, event_id): none of the new columns
# and not severity, so no key changes. A severity of None (an email/portal case awaiting triage) is
# stored as 0: changing the column to Nullable would rewrite every part of the table.
_PROBE_RESULTS_V2 = f"""
ALTER TABLE {PROBE_RESULTS}
    ADD COLUMN IF NOT EXISTS maintenance_id LowCardinality(Nullable(String))
        COMMENT 'maintenance window covering the probe start (the failure was planned); NULL: none'
"""

_CASE_EVENTS_V2 = f"""
ALTER TABLE {CASE_EVENTS}
    ADD COLUMN IF NOT EXISTS state LowCardinality(String) DEFAULT 'new'
        COMMENT 'case state after the event: new, triaged, working, waiting_on_customer, resolved, closed',
    ADD COLUMN IF NOT EXISTS ticket Nullable(String) COMMENT 'ticket number, once assigned',
    ADD COLUMN IF NOT EXISTS owner Nullable(String) COMMENT 'engineer owning the case',
    ADD COLUMN IF NOT EXISTS partner_id LowCardinality(Nullable(String))
        COMMENT 'Solution Partner or ISP supporting the customer',
    ADD COLUMN IF NOT EXISTS reason String DEFAULT '' CODEC(ZSTD(3)) COMMENT 'why: actor words or rule',
    ADD COLUMN IF NOT EXISTS command_id Nullable(String) COMMENT 'the command this event answers',
    ADD COLUMN IF NOT EXISTS visibility LowCardinality(String) DEFAULT 'customer'
        COMMENT 'customer or internal',
    ADD COLUMN IF NOT EXISTS seq UInt64 DEFAULT 0 COMMENT 'position in the case hash chain, from 0',
    ADD COLUMN IF NOT EXISTS prev_hash String DEFAULT '' COMMENT 'hash of the previous event of the case',
    ADD COLUMN IF NOT EXISTS hash String DEFAULT '' COMMENT 'sha256 of the event (see case_event_hash)',
    COMMENT COLUMN severity '1 urgent .. 3 information; 0 none yet (a case awaiting triage)'
"""

MAINTENANCE_COLUMNS: tuple[str, ...] = (
    "window_id",
    "server_id",
    "customer_id",
    "starts_at",
    "ends_at",
    "recurrence",
    "until",
    "reason",
    "created_by",
    "created_at",
    "cancelled_at",
    "cancelled_by",
    "deleted",
    "version",
)
"""Columns the sink writes to maintenance_windows, in insert order (times as epoch milliseconds)."""

# v3: rollups, case_state, maintenance_windows. Every rollup reads probe_results directly (not the finer
# rollup), so each one is a plain aggregate of the raw rows and a replayed chunk is dropped by each view.

_ROLLUP_BUCKETS: dict[str, tuple[str, str]] = {
    PROBE_MINUTE: ("toStartOfMinute(started_at)", "toYYYYMM(bucket)"),
    PROBE_HOUR: ("toStartOfHour(started_at)", "toYYYYMM(bucket)"),
    PROBE_DAY: ("toStartOfDay(started_at)", "toYear(bucket)"),
}
"""Rollup table -> (bucket expression over probe_results, partition key)."""

LATENCY_QUANTILES = (0.5, 0.95, 0.99)
"""The latency quantiles the rollups keep (quantilesTDigestMerge(0.5, 0.95, 0.99)(latency) reads them)."""


def _rollup_table(name: str) -> str:
    partition = _ROLLUP_BUCKETS[name][1]
    return f"""
CREATE TABLE IF NOT EXISTS {name} (
    customer_id LowCardinality(String),
    server_id LowCardinality(String),
    bucket DateTime('UTC') COMMENT 'start of the bucket (UTC)',
    probes SimpleAggregateFunction(sum, UInt64) COMMENT 'probes started in the bucket',
    failures SimpleAggregateFunction(sum, UInt64) COMMENT 'failed probes',
    planned SimpleAggregateFunction(sum, UInt64) COMMENT 'probes inside a maintenance window',
    planned_failures SimpleAggregateFunction(sum, UInt64) COMMENT 'failed probes inside a window',
    latency AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), UInt32)
        COMMENT 'latency_ms state: quantilesTDigestMerge(0.5, 0.95, 0.99)(latency)',
    load1 AggregateFunction(avg, Nullable(Float32)) COMMENT 'health_load1 state: avgMerge(load1)',
    connections AggregateFunction(avg, Nullable(UInt32))
        COMMENT 'health_connections state: avgMerge(connections)'
)
ENGINE = AggregatingMergeTree
PARTITION BY {partition}
ORDER BY (customer_id, server_id, bucket)
SETTINGS non_replicated_deduplication_window = 10000
"""


_SECOND_OF_DAY = "toUInt32(toUnixTimestamp(started_at) % 86400)"
"""A probe's start as the second of its UTC day: a row stored twice repeats its second, so a bucket whose
distinct seconds are fewer than its probes may hold one (or two probes in one second: read raw, still exact);
as many distinct seconds as probes proves it holds none. Seconds keep the bitmap to two containers a day."""


def _rollup_select(name: str, edges: bool = False) -> str:
    """The view's SELECT; `edges` (v5): with the bucket's first and last probe times."""
    bucket = _ROLLUP_BUCKETS[name][0]
    extra = (
        ",\n    min(started_at) AS first_at,\n    max(started_at) AS last_at,\n"
        f"    groupBitmapState({_SECOND_OF_DAY}) AS distinct_at"
        if edges
        else ""
    )
    return f"""
SELECT
    customer_id,
    server_id,
    {bucket} AS bucket,
    count() AS probes,
    countIf(NOT ok) AS failures,
    countIf(maintenance_id IS NOT NULL) AS planned,
    countIf(NOT ok AND maintenance_id IS NOT NULL) AS planned_failures,
    quantilesTDigestState(0.5, 0.95, 0.99)(latency_ms) AS latency,
    avgState(health_load1) AS load1,
    avgState(health_connections) AS connections{extra}
FROM {PROBE_RESULTS}
GROUP BY customer_id, server_id, bucket
"""  # noqa: S608 (constant fragments)


_CASE_STATE_V3 = f"""
CREATE TABLE IF NOT EXISTS {CASE_STATE} (
    case_id String,
    customer_id LowCardinality(String),
    server_id LowCardinality(Nullable(String)),
    partner_id LowCardinality(Nullable(String)),
    severity UInt8 COMMENT '1 urgent .. 3 information; 0 none yet',
    source LowCardinality(String),
    state LowCardinality(String) COMMENT 'state after the latest event',
    ticket Nullable(String),
    owner Nullable(String),
    last_event_id String,
    last_type LowCardinality(String),
    last_at DateTime64(3, 'UTC'),
    seq UInt64 COMMENT 'chain position of the latest event (the version)',
    hash String COMMENT 'hash of the latest event (the chain head)'
)
ENGINE = ReplacingMergeTree(seq)
ORDER BY case_id
SETTINGS non_replicated_deduplication_window = 10000
"""

_CASE_STATE_SELECT = f"""
SELECT
    case_id, customer_id, server_id, partner_id, severity, source, state, ticket, owner,
    event_id AS last_event_id, type AS last_type, at AS last_at, seq, hash
FROM {CASE_EVENTS}
"""  # noqa: S608 (constant fragments)

_MAINTENANCE_WINDOWS_V3 = f"""
CREATE TABLE IF NOT EXISTS {MAINTENANCE_WINDOWS} (
    window_id String,
    server_id LowCardinality(Nullable(String)) COMMENT 'NULL: every server of the customer',
    customer_id LowCardinality(String),
    starts_at DateTime64(3, 'UTC') COMMENT 'start of the first occurrence',
    ends_at DateTime64(3, 'UTC') COMMENT 'end of the first occurrence (exclusive)',
    recurrence LowCardinality(String) COMMENT 'none, daily, weekly',
    until Nullable(DateTime64(3, 'UTC')) COMMENT 'no occurrence starts at or after this',
    reason String,
    created_by String,
    created_at DateTime64(3, 'UTC'),
    cancelled_at Nullable(DateTime64(3, 'UTC')) COMMENT 'no longer applies from then on',
    cancelled_by Nullable(String),
    deleted UInt8 DEFAULT 0 COMMENT '1: removed from the topic (tombstone); FINAL hides it',
    version UInt64 COMMENT 'write order (sink clock, ms): the latest write wins'
)
ENGINE = ReplacingMergeTree(version, deleted)
ORDER BY window_id
"""


BACKFILL_SETTINGS: dict[str, int] = {
    "optimize_aggregation_in_order": 1,
    "min_insert_block_size_rows": 100_000,
    "max_insert_block_size": 100_000,
}
"""The backfill aggregates in probe_results' key order (customer, server, time) and writes blocks of 100,000
rollup rows, so it does not hold the whole history's buckets (t-digest states) at once. Measured on
embedded chdb: upgrading a v2 store of 8 M probe rows took 25 s and about 1.1 GB of memory at peak (4 M rows:
0.8 GB; without these settings 4 M rows took 1.8 GB)."""


@dataclass(frozen=True)
class Backfill:
    """A materialized view created after its target was filled from the source's existing rows.

    Runs only while the view is missing: truncate the target, INSERT ... SELECT, create the view. Repeating
    it after a crash starts over; once the view exists it does nothing (the backfill runs once)."""

    view: str
    target: str
    select: str

    def __call__(self, client: Client) -> None:
        exists = client.query(
            "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = {v:String}",
            parameters={"v": self.view},
        ).result_rows[0][0]
        if exists:
            return
        client.command(f"TRUNCATE TABLE IF EXISTS {self.target}")
        client.command(f"INSERT INTO {self.target} {self.select}", settings=BACKFILL_SETTINGS)
        client.command(
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self.view} TO {self.target} AS {self.select}"
        )

    def __str__(self) -> str:
        return f"backfill {self.target} and create {self.view}"


Step = str | Callable[[Client], None]
"""One idempotent migration step: a DDL statement or a function of the client."""

_V3_STEPS: tuple[Step, ...] = (
    *(_rollup_table(name) for name in ROLLUPS),
    *(Backfill(f"{name}_mv", name, _rollup_select(name)) for name in ROLLUPS),
    _CASE_STATE_V3,
    Backfill(f"{CASE_STATE}_mv", CASE_STATE, _CASE_STATE_SELECT),
    _MAINTENANCE_WINDOWS_V3,
)

# v4 (issue 9): the sink verifies each case event (signature, hash, the case's own partition) and stores its
# verdict. The ReplacingMergeTree key gains chain_status and chain_copy ('' for a verified event, the
# partition:offset of the message otherwise), so a forged or misplaced copy never shares a key with, and so
# never replaces, the genuine row; reports and case_state read only COUNTED_EVENTS. ClickHouse lets a key
# grow only by columns added in the same ALTER, without a default expression: rows stored before v4 read ''
# (never checked). case_state is rebuilt from the counted rows and its view recreated with the filter.
_CASE_EVENTS_V4 = f"""
ALTER TABLE {CASE_EVENTS}
    ADD COLUMN IF NOT EXISTS key_id String DEFAULT '' COMMENT 'id of the key that signed the hash',
    ADD COLUMN IF NOT EXISTS sig String DEFAULT '' COMMENT 'base64 Ed25519 signature over the hash',
    ADD COLUMN IF NOT EXISTS chain_status LowCardinality(String)
        COMMENT 'the sink''s verdict: verified, unsigned, misplaced, forged; empty: stored before v4',
    ADD COLUMN IF NOT EXISTS chain_copy String
        COMMENT 'empty for a verified event; kafka partition:offset of an unverified copy (kept apart)',
    ADD COLUMN IF NOT EXISTS chain_fault String DEFAULT '' COMMENT 'why the event is not verified',
    MODIFY ORDER BY (customer_id, case_id, at, event_id, chain_status, chain_copy)
"""

_CASE_CHAIN_FAULTS_V4 = f"""
CREATE VIEW IF NOT EXISTS {CASE_CHAIN_FAULTS} AS
SELECT case_id, customer_id, seq, event_id, type, at, hash, key_id, kafka_topic, kafka_partition,
    kafka_offset, chain_status, chain_fault
FROM {CASE_EVENTS}
WHERE NOT ({COUNTED_EVENTS})
"""  # noqa: S608 (constant fragments)

_V4_STEPS: tuple[Step, ...] = (
    _CASE_EVENTS_V4,
    f"DROP VIEW IF EXISTS {CASE_STATE}_mv",
    Backfill(f"{CASE_STATE}_mv", CASE_STATE, f"{_CASE_STATE_SELECT}WHERE {COUNTED_EVENTS}\n"),
    _CASE_CHAIN_FAULTS_V4,
)

# v5 (issue 12): the uptime report reads the rollups. Between two consecutive probes of a server the time is
# up, down, unknown or planned by the two probes' classes (ok, failed, planned); inside a bucket whose probes
# all share one class every such interval is of that class, so the bucket's first and last probe times
# (min/max: mergeable, unchanged by a late row arriving in another insert) give its inner time and, with
# the neighbouring buckets' edges, the intervals crossing a bucket edge. Buckets of mixed classes are rare
# (an outage or window starting or ending) and the report reads their raw probes
# (history.reports.uptime); so does a bucket holding a row stored twice (the sink's at-least-once: a chunk
# redelivered under another dedup token), found by `distinct_at` (distinct start seconds) < probes. The
# views are recreated with the new columns and the rollups backfilled (as in v4: drop the view, Backfill).


def _edges_v5(name: str) -> str:
    return f"""
ALTER TABLE {name}
    ADD COLUMN IF NOT EXISTS first_at SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
        COMMENT 'first probe start in the bucket',
    ADD COLUMN IF NOT EXISTS last_at SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
        COMMENT 'last probe start in the bucket',
    ADD COLUMN IF NOT EXISTS distinct_at AggregateFunction(groupBitmap, UInt32)
        COMMENT 'distinct start seconds of the day: fewer than sum(probes) if a row may be stored twice'
"""


_V5_STEPS: tuple[Step, ...] = tuple(
    step
    for name in ROLLUPS
    for step in (
        _edges_v5(name),
        f"DROP VIEW IF EXISTS {name}_mv",
        Backfill(f"{name}_mv", name, _rollup_select(name, edges=True)),
    )
)

_MIGRATIONS_TABLE_DDL = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version UInt32,
    description String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""


@dataclass(frozen=True)
class Migration:
    """One schema version: idempotent steps run in order."""

    version: int
    description: str
    statements: tuple[Step, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "probe_results and case_events", (_PROBE_RESULTS_V1, _CASE_EVENTS_V1)),
    Migration(
        2,
        "planned maintenance on probe_results; chained case event fields",
        (_PROBE_RESULTS_V2, _CASE_EVENTS_V2),
    ),
    Migration(3, "probe rollups, case_state, maintenance_windows", _V3_STEPS),
    Migration(4, "case events' chain verdict kept apart from forged copies; case_chain_faults", _V4_STEPS),
    Migration(5, "first and last probe time per rollup bucket (uptime from the rollups)", _V5_STEPS),
)
"""Every migration, oldest first; versions strictly increasing."""

LATEST_VERSION = MIGRATIONS[-1].version


def applied_versions(client: Client) -> set[int]:
    """Versions recorded in schema_migrations (creating that table if missing)."""
    try:
        client.command(_MIGRATIONS_TABLE_DDL)
        result = client.query("SELECT DISTINCT version FROM schema_migrations")
    except Exception as exc:
        raise StoreError(f"cannot read schema migrations: {exc}") from exc
    return {int(row[0]) for row in result.result_rows}


def migrate(client: Client, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply the migrations not yet recorded; return the versions this call applied. Safe to repeat."""
    done = applied_versions(client)
    known = {m.version for m in migrations}
    newer = sorted(v for v in done if v not in known and v > max(known, default=0))
    if newer:
        raise StoreError(
            f"the history store has schema version(s) {newer}, newer than this fleetwatch knows "
            f"({max(known, default=0)}): upgrade fleetwatch",
        )
    applied: list[int] = []
    for migration in migrations:
        if migration.version in done:
            continue
        try:
            for step in migration.statements:
                if isinstance(step, str):
                    client.command(step)
                else:
                    step(client)
            client.insert(
                MIGRATIONS_TABLE,
                [[migration.version, migration.description]],
                column_names=["version", "description"],
            )
        except Exception as exc:
            raise StoreError(
                f"migration {migration.version} ({migration.description}) failed: {exc}"
            ) from exc
        log.info("history store: applied migration %d (%s)", migration.version, migration.description)
        applied.append(migration.version)
    return applied


def tables(client: Client) -> dict[str, str]:
    """Table name -> engine of the current database (for checks and tests)."""
    result = client.query(
        "SELECT name, engine FROM system.tables WHERE database = currentDatabase() ORDER BY name"
    )
    return {str(name): str(engine) for name, engine in result.result_rows}
