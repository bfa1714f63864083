"""Retention: no TTL by default, TTLs from settings applied idempotently, removed when switched off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from clickhouse_connect.driver.client import Client
from pydantic import ValidationError

from fleetcore.clock import SystemClock
from fleetcore.errors import StoreError
from fleetcore.settings import Settings
from history.ddl import ROLLUPS, migrate
from history.retention import apply_retention, current_ttl, ttl_expression
from tests.unit.history.test_rollups import insert_probes, probe_rows

EXPIRING = ("probe_results", *ROLLUPS)


def test_default_settings_keep_everything(store: Client) -> None:
    migrate(store)
    settings = Settings()
    assert settings.history_raw_retention_days is None
    assert settings.history_rollup_retention_days is None
    assert apply_retention(store, None, None) == []
    for table in EXPIRING:
        assert current_ttl(store, table) is None


def test_retention_is_applied_once_changed_and_removed(store: Client) -> None:
    migrate(store)
    assert apply_retention(store, 30, 400) == list(EXPIRING)
    assert current_ttl(store, "probe_results") == ttl_expression("probe_results", 30)
    for table in ROLLUPS:
        assert current_ttl(store, table) == ttl_expression(table, 400)
    assert apply_retention(store, 30, 400) == []  # every start: nothing to do
    assert apply_retention(store, 60, 400) == ["probe_results"]
    assert current_ttl(store, "probe_results") == ttl_expression("probe_results", 60)
    assert apply_retention(store, None, 400) == ["probe_results"]
    assert current_ttl(store, "probe_results") is None
    assert current_ttl(store, "case_events") is None


def test_rows_past_the_raw_retention_expire_and_the_rollups_keep_them(store: Client) -> None:
    migrate(store)
    old = probe_rows(300, start=datetime(2020, 1, 1, tzinfo=UTC))
    recent = probe_rows(300, seed=3, start=SystemClock().now() - timedelta(days=2))
    insert_probes(store, old + recent, token="t")
    apply_retention(store, 30, None)
    store.command("OPTIMIZE TABLE probe_results FINAL")
    assert store.query("SELECT count() FROM probe_results").result_rows[0][0] == len(recent)
    assert store.query("SELECT sum(probes) FROM probe_day").result_rows[0][0] == len(old + recent)


def test_a_retention_below_one_day_is_refused(store: Client) -> None:
    migrate(store)
    with pytest.raises(StoreError, match="at least one day"):
        apply_retention(store, 0, None)
    with pytest.raises(ValidationError):
        Settings(history_rollup_retention_days=0)


def test_retention_before_the_migrations_is_a_store_error(store: Client) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        apply_retention(store, 30, None)
