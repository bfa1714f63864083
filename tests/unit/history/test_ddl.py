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


def test_migrate_twice_applies_once_and_leaves_the_same_tables(store: Client) -> None:
    assert migrate(store) == [m.version for m in MIGRATIONS]
    first = tables(store)
    assert migrate(store) == []
    assert tables(store) == first
    assert first == {
        "case_events": "ReplacingMergeTree",
        "probe_results": "MergeTree",
        "schema_migrations": "ReplacingMergeTree",
    }
    assert applied_versions(store) == {LATEST_VERSION}


def test_migrate_survives_reopen(store_dsn: str) -> None:
    client = connect(store_dsn, "fleetwatch")
    try:
        assert migrate(client) == [LATEST_VERSION]
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
        assert LATEST_VERSION in results[0] + results[1]
        assert applied_versions(clients[0]) == {LATEST_VERSION}
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
    assert applied_versions(store) == {LATEST_VERSION}


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
