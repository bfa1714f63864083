"""Migrations are idempotent, recorded, and safe when run concurrently."""

from __future__ import annotations

import threading

import pytest
from clickhouse_connect.driver.client import Client

from fleetcore.errors import ConfigError, StoreError
from history.ddl import (
    CASE_COLUMNS,
    LATEST_VERSION,
    MIGRATIONS,
    PROBE_COLUMNS,
    Migration,
    applied_versions,
    migrate,
    tables,
)
from history.store import connect, redact

ALL_VERSIONS = {m.version for m in MIGRATIONS}


def test_migrate_twice_applies_once_and_leaves_the_same_tables(store: Client) -> None:
    assert migrate(store) == [m.version for m in MIGRATIONS]
    first = tables(store)
    assert migrate(store) == []
    assert tables(store) == first
    assert first == {
        "case_chain_faults": "View",
        "case_events": "ReplacingMergeTree",
        "case_state": "ReplacingMergeTree",
        "case_state_mv": "MaterializedView",
        "maintenance_windows": "ReplacingMergeTree",
        "probe_day": "AggregatingMergeTree",
        "probe_day_mv": "MaterializedView",
        "probe_hour": "AggregatingMergeTree",
        "probe_hour_mv": "MaterializedView",
        "probe_minute": "AggregatingMergeTree",
        "probe_minute_mv": "MaterializedView",
        "probe_results": "MergeTree",
        "schema_migrations": "ReplacingMergeTree",
    }
    assert applied_versions(store) == ALL_VERSIONS


def test_migrate_survives_reopen(store_dsn: str) -> None:
    client = connect(store_dsn, "fleetwatch")
    try:
        assert migrate(client) == sorted(ALL_VERSIONS)
    finally:
        client.close()
    client = connect(store_dsn, "fleetwatch")
    try:
        assert migrate(client) == []
    finally:
        client.close()


def test_tables_have_the_sink_columns_and_dedup_window(store: Client) -> None:
    migrate(store)
    for table, wanted in (("probe_results", PROBE_COLUMNS), ("case_events", CASE_COLUMNS)):
        cols = store.query(
            "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {t:String} "
            "ORDER BY position",
            parameters={"t": table},
        ).result_rows
        assert tuple(r[0] for r in cols) == wanted
        create = store.command(f"SHOW CREATE TABLE {table}")
        assert "non_replicated_deduplication_window = 10000" in str(create)
        assert "PARTITION BY toYYYYMM(" in str(create)
        assert "TTL" not in str(create)


def test_concurrent_migrations_from_two_threads(store_dsn: str) -> None:
    clients = [connect(store_dsn, "fleetwatch") for _ in range(2)]
    results: list[list[int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(client: Client) -> None:
        try:
            barrier.wait()
            results.append(migrate(client))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert not errors
        assert len(results) == 2
        assert set(results[0] + results[1]) == ALL_VERSIONS  # both may apply: statements are idempotent
        assert applied_versions(clients[0]) == ALL_VERSIONS
        assert migrate(clients[0]) == []
    finally:
        for c in clients:
            c.close()


def test_a_later_migration_is_applied_on_top(store: Client) -> None:
    migrate(store)
    extra = Migration(
        LATEST_VERSION + 1,
        "add a column",
        ("ALTER TABLE probe_results ADD COLUMN IF NOT EXISTS note String DEFAULT ''",),
    )
    assert migrate(store, (*MIGRATIONS, extra)) == [LATEST_VERSION + 1]
    assert migrate(store, (*MIGRATIONS, extra)) == []


def test_a_store_newer_than_the_code_is_refused(store: Client) -> None:
    migrate(store)
    store.insert(
        "schema_migrations", [[LATEST_VERSION + 5, "future"]], column_names=["version", "description"]
    )
    with pytest.raises(StoreError, match="newer"):
        migrate(store)


def test_failing_migration_is_a_store_error_and_not_recorded(store: Client) -> None:
    migrate(store)
    bad = Migration(LATEST_VERSION + 1, "broken", ("ALTER TABLE no_such_table ADD COLUMN x UInt8",))
    with pytest.raises(StoreError, match="broken"):
        migrate(store, (*MIGRATIONS, bad))
    assert applied_versions(store) == ALL_VERSIONS


@pytest.mark.parametrize("dsn", ["postgres://x", "chdb://relative/path", "chdb:relative", "mysql:///abs"])
def test_bad_dsn_is_a_config_error(dsn: str) -> None:
    with pytest.raises(ConfigError):
        connect(dsn, "fleetwatch")


@pytest.mark.parametrize("database", ["", "a-b", "x;DROP", "1abc", "a" * 65])
def test_bad_database_name_is_a_config_error(store_dsn: str, database: str) -> None:
    with pytest.raises(ConfigError):
        connect(store_dsn, database)


def test_unreachable_server_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="cannot open"):
        connect("http://127.0.0.1:1", "fleetwatch")


def test_redact_hides_the_password() -> None:
    assert redact("http://u:secret@h:8123/x") == "http://u:***@h:8123/x"
    assert redact("chdb:///a/b") == "chdb:///a/b"


def test_v2_on_a_v1_store_keeps_old_rows_with_defaults_and_reruns_harmlessly(store: Client) -> None:
    assert migrate(store, MIGRATIONS[:1]) == [1]
    v1_case = CASE_COLUMNS[: CASE_COLUMNS.index("kafka_offset") + 1]
    store.insert(
        "case_events",
        [
            [
                "e1",
                "c1",
                "case.opened",
                1,
                "monitor",
                "srv-a",
                "cust",
                1_800_000_000_000,
                "monitor",
                "{}",
                "t",
                0,
                5,
            ]
        ],
        column_names=list(v1_case),
    )
    v1_probe = PROBE_COLUMNS[: PROBE_COLUMNS.index("batch_item") + 1]
    store.insert(
        "probe_results",
        [
            ["srv-a", "cust", "p1", 1_800_000_000_000, 5, False, None, "timeout", "x", "w"]
            + [None] * 6
            + ["t", 0, 1, 0]
        ],
        column_names=list(v1_probe),
    )
    assert migrate(store, MIGRATIONS[:2]) == [2]
    for statement in MIGRATIONS[1].statements:  # every statement is idempotent on its own
        store.command(statement)
    case = store.query(
        "SELECT severity, state, ticket, owner, partner_id, reason, command_id, visibility, seq,"
        " prev_hash, hash FROM case_events"
    ).result_rows
    assert case == [(1, "new", None, None, None, "", None, "customer", 0, "", "")]
    assert store.query("SELECT probe_id, maintenance_id FROM probe_results").result_rows == [("p1", None)]
    comment = store.query(
        "SELECT comment FROM system.columns WHERE database = currentDatabase() AND table = 'case_events'"
        " AND name = 'severity'"
    ).result_rows[0][0]
    assert "0 none yet" in comment


def test_case_events_key_keeps_unverified_copies_apart(store: Client) -> None:
    """The ReplacingMergeTree dedupes on its sorting key: copies of a verified event ('verified', '') still
    collapse; an unverified copy (chain_copy = its partition:offset) never replaces the genuine row (v4)."""
    migrate(store)
    key = store.query(
        "SELECT sorting_key FROM system.tables WHERE database = currentDatabase() AND name = 'case_events'"
    ).result_rows[0][0]
    assert key == "customer_id, case_id, at, event_id, chain_status, chain_copy"
