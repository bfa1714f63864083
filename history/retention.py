"""Retention of the history: TTLs on the raw probes and the rollups, from settings, applied at every start.

Opt-in: with no retention configured (the default) no table has a TTL and nothing is ever dropped. A TTL
drops rows already past it, at insert time too, so with retention on, a replay or backfill of probes older
than the retention stores nothing for them; that is the point of retention, but it is why the default keeps
everything.

`apply_retention` compares each table's TTL with the wanted one and changes only what differs (ALTER TABLE
... MODIFY TTL, or REMOVE TTL when retention was switched off), so repeating it at every start costs two
catalogue reads and rewrites no part. Case events and case_state are never expired: they are the audit of
the support process.
"""

from __future__ import annotations

import logging
import re

from clickhouse_connect.driver.client import Client

from fleetcore.errors import StoreError
from history.ddl import PROBE_RESULTS, ROLLUPS

log = logging.getLogger(__name__)

_TTL = re.compile(r" TTL (.+?)(?: SETTINGS |$)")

TIME_COLUMNS: dict[str, str] = {PROBE_RESULTS: "started_at", **{name: "bucket" for name in ROLLUPS}}
"""The time column each expiring table's TTL counts from."""


def ttl_expression(table: str, days: int) -> str:
    """The TTL of `table` keeping `days` days, as ClickHouse prints it back in SHOW CREATE."""
    return f"toDateTime({TIME_COLUMNS[table]}) + toIntervalDay({days})"


def current_ttl(client: Client, table: str) -> str | None:
    """The table's TTL expression, or None if it has none."""
    rows = client.query(
        "SELECT create_table_query FROM system.tables"
        " WHERE database = currentDatabase() AND name = {t:String}",
        parameters={"t": table},
    ).result_rows
    if not rows:
        raise StoreError(f"table {table} does not exist (run the migrations first)")
    found = _TTL.search(str(rows[0][0]))
    return None if found is None else found.group(1).strip()


def wanted_ttls(raw_days: int | None, rollup_days: int | None) -> dict[str, str | None]:
    """Table -> the TTL it should have (None: keep forever)."""
    wanted: dict[str, str | None] = {
        PROBE_RESULTS: None if raw_days is None else ttl_expression(PROBE_RESULTS, raw_days)
    }
    for name in ROLLUPS:
        wanted[name] = None if rollup_days is None else ttl_expression(name, rollup_days)
    return wanted


def apply_retention(client: Client, raw_days: int | None, rollup_days: int | None) -> list[str]:
    """Bring every expiring table's TTL to the settings; return the tables changed. Safe to repeat."""
    for days in (raw_days, rollup_days):
        if days is not None and days < 1:
            raise StoreError(f"a retention must be at least one day (got {days})")
    changed: list[str] = []
    try:
        for table, ttl in wanted_ttls(raw_days, rollup_days).items():
            if current_ttl(client, table) == ttl:
                continue
            if ttl is None:
                client.command(f"ALTER TABLE {table} REMOVE TTL")
            else:
                client.command(f"ALTER TABLE {table} MODIFY TTL {ttl}")
            changed.append(table)
            log.info("history store: retention of %s is now %s", table, ttl or "forever")
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"cannot apply the history retention: {exc}") from exc
    return changed
