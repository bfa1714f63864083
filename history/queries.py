"""Read-side queries of the history store. Every value from outside is a bound parameter, never SQL text.

Results are plain JSON-ready dicts (times as ISO 8601 UTC strings) so the sink's HTTP API and the direct
path of `fleetwatch history` return the same shape. Case events come with the sink's verdict on each
(`chain_status`: verified, unsigned, misplaced, forged, or '' for rows stored before schema v4; `chain_fault`:
why): every stored copy is returned, so a reader can tell a forged copy from the genuine event.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from fleetcore.clock import from_epoch_ms
from fleetcore.errors import FleetwatchError, StoreError
from history.ddl import COUNTED_EVENTS
from schemas.inventory import ID_PATTERN

MAX_LIMIT = 10_000
"""Most probes (or case events) one history query returns."""

_SERVER_ID = re.compile(ID_PATTERN)


class InvalidQuery(FleetwatchError):
    """A query argument is out of range or malformed (a 400 on the HTTP API)."""


def check_server_id(server_id: str) -> str:
    """The server id if it is well formed, else InvalidQuery."""
    if not _SERVER_ID.match(server_id):
        raise InvalidQuery(f"invalid server id {server_id!r}")
    return server_id


def check_limit(limit: int) -> int:
    """The limit if it is within 1..MAX_LIMIT, else InvalidQuery."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidQuery(f"limit must be an integer from 1 to {MAX_LIMIT} (got {limit!r})")
    return limit


SERVER_PROBES_SQL = """
SELECT
    probe_id, toUnixTimestamp64Milli(started_at) AS started_ms, ok, latency_ms, status_code,
    error_class, error_message, worker_id, customer_id,
    health_load1, health_connections, health_users, health_cpu_percent, health_memory_percent,
    health_disk_percent, maintenance_id
FROM probe_results
WHERE server_id = {server_id:String}
ORDER BY started_at DESC, probe_id DESC
LIMIT 1 BY probe_id
LIMIT {limit:UInt32}
"""

_CASE_FIELDS = """
    event_id, case_id, type, severity, source, customer_id, toUnixTimestamp64Milli(at) AS at_ms, actor,
    details, state, ticket, owner, partner_id, reason, command_id, visibility, seq, prev_hash, hash,
    server_id, chain_status, chain_fault"""
_UNCOUNTED_LAST = f"NOT ({COUNTED_EVENTS}), chain_copy"
"""Within one event id the counted row (verified, or stored before v4) comes first."""
_ONE_PER_COPY = "LIMIT 1 BY event_id, chain_status"
"""Case event rows of every chain status: a forged or misplaced copy is its own row, never hiding the
genuine one (`chain_status` tells them apart; reports count `COUNTED_EVENTS` only)."""

SERVER_CASES_SQL = f"""
SELECT{_CASE_FIELDS}
FROM case_events FINAL
WHERE server_id = {{server_id:String}}
ORDER BY at DESC, seq DESC, event_id, {_UNCOUNTED_LAST}
{_ONE_PER_COPY}
LIMIT {{limit:UInt32}}
"""

CASE_EVENTS_SQL = f"""
SELECT{_CASE_FIELDS}
FROM case_events FINAL
WHERE case_id = {{case_id:String}}
ORDER BY seq, at, event_id, {_UNCOUNTED_LAST}
{_ONE_PER_COPY}
LIMIT {{limit:UInt32}}
"""

_HEALTH = ("load1", "connections", "users", "cpu_percent", "memory_percent", "disk_percent")


def _iso(ms: int) -> str:
    return from_epoch_ms(int(ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _probe(row: tuple[Any, ...]) -> dict[str, Any]:
    (probe_id, started_ms, ok, latency, status, error_class, error_message, worker, customer, *rest) = row
    *health, maintenance_id = rest
    figures = {name: value for name, value in zip(_HEALTH, health, strict=True) if value is not None}
    return {
        "probe_id": probe_id,
        "started_at": _iso(started_ms),
        "ok": bool(ok),
        "latency_ms": int(latency),
        "status_code": status,
        "error_class": error_class,
        "error_message": error_message,
        "worker_id": worker,
        "customer_id": customer,
        "health": figures or None,
        "maintenance_id": maintenance_id,
        "planned": not ok and maintenance_id is not None,
    }


def _case(row: tuple[Any, ...]) -> dict[str, Any]:
    (event_id, case_id, type_, severity, source, customer, at_ms, actor, details, *chain) = row
    state, ticket, owner, partner_id, reason, command_id, visibility, seq, prev_hash, hash_, *rest = chain
    server, chain_status, chain_fault = rest
    try:
        parsed: Any = orjson.loads(details) if details else {}
    except orjson.JSONDecodeError:
        parsed = {"raw": details}
    return {
        "event_id": event_id,
        "case_id": case_id,
        "type": type_,
        "severity": int(severity) or None,  # 0 stores "none yet"
        "source": source,
        "server_id": server,
        "customer_id": customer,
        "at": _iso(at_ms),
        "actor": actor,
        "details": parsed,
        "state": state,
        "ticket": ticket,
        "owner": owner,
        "partner_id": partner_id,
        "reason": reason,
        "command_id": command_id,
        "visibility": visibility,
        "seq": int(seq),
        "prev_hash": prev_hash,
        "hash": hash_,
        "chain_status": chain_status,
        "chain_fault": chain_fault,
    }


def server_history(client: Client, server_id: str, limit: int = 20, case_limit: int = 100) -> dict[str, Any]:
    """A server's `limit` most recent probes (newest first) and its case events (newest first, one row per
    event id and chain status: a forged copy is listed beside the genuine event, never instead of it)."""
    check_server_id(server_id)
    check_limit(limit)
    check_limit(case_limit)
    try:
        probes = client.query(SERVER_PROBES_SQL, parameters={"server_id": server_id, "limit": limit})
        cases = client.query(SERVER_CASES_SQL, parameters={"server_id": server_id, "limit": case_limit})
    except Exception as exc:
        raise StoreError(f"history query for {server_id!r} failed: {exc}") from exc
    return {
        "server_id": server_id,
        "probes": [_probe(tuple(row)) for row in probes.result_rows],
        "cases": [_case(tuple(row)) for row in cases.result_rows],
    }


def case_events(client: Client, case_id: str, limit: int = 1000) -> list[dict[str, Any]]:
    """The stored events of one case in chain order (one row per event id and chain status, the counted row
    first); [] for an unknown case."""
    if not case_id or len(case_id) > 100:
        raise InvalidQuery(f"invalid case id {case_id!r}")
    check_limit(limit)
    try:
        result = client.query(CASE_EVENTS_SQL, parameters={"case_id": case_id, "limit": limit})
    except Exception as exc:
        raise StoreError(f"case query for {case_id!r} failed: {exc}") from exc
    return [_case(tuple(row)) for row in result.result_rows]


def counts(client: Client) -> dict[str, int]:
    """Row counts for checks and tests: rows and distinct keys of each history table."""
    try:
        probe = client.query("SELECT count(), uniqExact(probe_id) FROM probe_results").result_rows[0]
        case = client.query("SELECT count(), uniqExact(event_id) FROM case_events").result_rows[0]
    except Exception as exc:
        raise StoreError(f"count query failed: {exc}") from exc
    return {
        "probe_rows": int(probe[0]),
        "probe_ids": int(probe[1]),
        "case_rows": int(case[0]),
        "case_event_ids": int(case[1]),
    }


def probe_ids(client: Client) -> list[str]:
    """Every stored probe id, with repeats if a probe was stored twice (for exactly-once checks)."""
    try:
        result = client.query("SELECT probe_id FROM probe_results")
    except Exception as exc:
        raise StoreError(f"probe id query failed: {exc}") from exc
    return [str(row[0]) for row in result.result_rows]


def case_event_ids(client: Client) -> list[str]:
    """Every stored event id, deduplicated as queries see them (FINAL)."""
    try:
        result = client.query("SELECT event_id FROM case_events FINAL")
    except Exception as exc:
        raise StoreError(f"event id query failed: {exc}") from exc
    return [str(row[0]) for row in result.result_rows]
