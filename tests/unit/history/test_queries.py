"""History queries: bound parameters only, newest first, case events deduplicated by event id."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from fleetcore.clock import to_epoch_ms
from history.ddl import CASE_COLUMNS, PROBE_COLUMNS, migrate
from history.queries import (
    MAX_LIMIT,
    SERVER_CASES_SQL,
    SERVER_PROBES_SQL,
    InvalidQuery,
    case_event_ids,
    case_events,
    counts,
    probe_ids,
    server_history,
)
from schemas.cases import CaseEvent, CaseEventType, CaseSource, CaseState, Severity, Visibility, chained
from schemas.probes import HealthMetrics, ProbeResult
from sinks.rows import case_row, columns, probe_row
from tests.helpers import T0, case_event


def result(server: str, minute: int, ok: bool = True, **extra: Any) -> ProbeResult:
    at = T0 + timedelta(minutes=minute)
    return ProbeResult(
        server_id=server,
        customer_id="cust-1",
        probe_id=f"{server}@{to_epoch_ms(at)}",
        started_at=at,
        latency_ms=10 + minute,
        ok=ok,
        status_code=200 if ok else 503,
        error_class=None if ok else "unexpected_status",
        error_message=None if ok else "HTTP 503",
        worker_id="w1",
        **extra,
    )


def load(client: Client, results: list[ProbeResult], events: list[CaseEvent]) -> None:
    migrate(client)
    if results:
        rows = [probe_row(r, "t.probe-results", 0, i, 0) for i, r in enumerate(results)]
        client.insert(
            "probe_results",
            columns(rows, len(PROBE_COLUMNS)),
            column_names=list(PROBE_COLUMNS),
            column_oriented=True,
        )
    if events:
        rows = [case_row(e, "t.cases", 0, i) for i, e in enumerate(events)]
        client.insert(
            "case_events",
            columns(rows, len(CASE_COLUMNS)),
            column_names=list(CASE_COLUMNS),
            column_oriented=True,
        )


def test_server_history_newest_first_with_limit(store: Client) -> None:
    results = [result("srv-a", m, ok=m % 3 != 0) for m in range(10)] + [result("srv-b", 1)]
    results[9] = result("srv-a", 9, health=HealthMetrics(load1=0.5, users=3))
    load(store, results, [])
    data = server_history(store, "srv-a", limit=4)
    assert data["server_id"] == "srv-a"
    assert [p["started_at"] for p in data["probes"]] == [
        "2026-11-01T12:09:00.000Z",
        "2026-11-01T12:08:00.000Z",
        "2026-11-01T12:07:00.000Z",
        "2026-11-01T12:06:00.000Z",
    ]
    newest = data["probes"][0]
    assert newest["health"] == {"load1": 0.5, "users": 3}
    assert newest["ok"] is True
    assert newest["latency_ms"] == 19
    failed = data["probes"][3]
    assert (failed["ok"], failed["status_code"], failed["error_class"]) == (False, 503, "unexpected_status")
    assert failed["health"] is None
    assert data["cases"] == []


def test_case_events_deduplicated_by_event_id(store: Client) -> None:
    opened = case_event("srv-a", CaseEventType.CASE_OPENED, 10, last_error="HTTP 503")
    recovered = case_event("srv-a", CaseEventType.SERVER_RECOVERED, 30, last_error="HTTP 503")
    load(store, [], [opened, recovered])
    load(store, [], [opened])  # a replayed event
    data = server_history(store, "srv-a")
    assert [c["type"] for c in data["cases"]] == ["server.recovered", "case.opened"]
    assert data["cases"][1]["details"] == {"failures": 10, "last_error": "HTTP 503"}
    assert data["cases"][1]["severity"] == 1
    assert data["cases"][1]["at"] == "2026-11-01T12:10:00.000Z"
    assert sorted(case_event_ids(store)) == sorted([opened.event_id, recovered.event_id])


def test_unknown_server_gives_empty_lists(store: Client) -> None:
    load(store, [result("srv-a", 1)], [])
    assert server_history(store, "nobody") == {"server_id": "nobody", "probes": [], "cases": []}


def test_counts_and_probe_ids(store: Client) -> None:
    results = [result("srv-a", m) for m in range(3)]
    load(store, results, [case_event("srv-a", CaseEventType.CASE_OPENED, 1, last_error="HTTP 503")])
    assert counts(store) == {"probe_rows": 3, "probe_ids": 3, "case_rows": 1, "case_event_ids": 1}
    assert sorted(probe_ids(store)) == sorted(r.probe_id for r in results)


@pytest.mark.parametrize("server_id", ["x' OR 1=1 --", "", "a b", "srv;DROP TABLE probe_results", "é"])
def test_malformed_server_id_is_refused(server_id: str) -> None:
    with pytest.raises(InvalidQuery, match="server id"):
        server_history(None, server_id)  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [0, -1, MAX_LIMIT + 1, True])
def test_bad_limit_is_refused(limit: int) -> None:
    with pytest.raises(InvalidQuery, match="limit"):
        server_history(None, "srv-a", limit=limit)  # type: ignore[arg-type]


class RecordingClient:
    """Records what would be sent to ClickHouse."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def query(self, sql: str, parameters: dict[str, Any]) -> Any:
        self.calls.append((sql, parameters))

        class Empty:
            result_rows: list[Any] = []

        return Empty()


def test_user_text_travels_only_as_parameters() -> None:
    client = RecordingClient()
    server_history(client, "srv.x:1-a_b", limit=7)  # type: ignore[arg-type]
    assert client.calls == [
        (SERVER_PROBES_SQL, {"server_id": "srv.x:1-a_b", "limit": 7}),
        (SERVER_CASES_SQL, {"server_id": "srv.x:1-a_b", "limit": 100}),
    ]
    for sql, _ in client.calls:
        assert "srv.x" not in sql
        assert "{server_id:String}" in sql
        assert "{limit:UInt32}" in sql


def test_parameters_are_bound_by_clickhouse_not_quoted_by_us(store: Client) -> None:
    """A server id with characters SQL cares about (allowed by the id pattern) is matched literally."""
    load(store, [result("a.b:c-d_e", 1), result("a", 2)], [])
    data = server_history(store, "a.b:c-d_e")
    assert [p["probe_id"] for p in data["probes"]] == [f"a.b:c-d_e@{to_epoch_ms(T0 + timedelta(minutes=1))}"]


def test_planned_failures_carry_their_window(store: Client) -> None:
    migrate(store)
    results = [result("srv-a", 1, ok=False), result("srv-a", 2, ok=False), result("srv-a", 3)]
    rows = [
        probe_row(r, "t.probe-results", 0, i, 0, window)
        for i, (r, window) in enumerate(zip(results, ["mw-1", None, "mw-1"], strict=True))
    ]
    store.insert(
        "probe_results",
        columns(rows, len(PROBE_COLUMNS)),
        column_names=list(PROBE_COLUMNS),
        column_oriented=True,
    )
    probes = server_history(store, "srv-a")["probes"]
    assert [(p["ok"], p["maintenance_id"], p["planned"]) for p in probes] == [
        (True, "mw-1", False),  # a passing probe inside a window is not a planned failure
        (False, None, False),
        (False, "mw-1", True),
    ]


def test_chained_case_events_round_trip_with_their_new_fields(store: Client) -> None:
    opened = CaseEvent(
        event_id="e-open",
        case_id="c-9",
        type=CaseEventType.CASE_OPENED,
        severity=None,
        source=CaseSource.EMAIL,
        server_id="srv-a",
        customer_id="cust-1",
        at=T0,
        actor="mail",
        reason="site down?",
    )
    first = chained(opened, 0, "")
    triaged = chained(
        opened.model_copy(
            update={
                "event_id": "e-triage",
                "type": CaseEventType.TRIAGED,
                "severity": Severity.SEV2,
                "state": CaseState.TRIAGED,
                "ticket": "FW-7",
                "owner": "bob",
                "visibility": Visibility.INTERNAL,
                "at": T0 + timedelta(minutes=5),
            }
        ),
        1,
        first.hash,
    )
    load(store, [], [triaged, first])
    events = case_events(store, "c-9")
    assert [e["event_id"] for e in events] == ["e-open", "e-triage"]
    assert (events[0]["severity"], events[0]["state"], events[0]["reason"]) == (None, "new", "site down?")
    assert events[0]["hash"] == first.hash
    assert (events[1]["severity"], events[1]["ticket"], events[1]["owner"]) == (2, "FW-7", "bob")
    assert (events[1]["visibility"], events[1]["seq"], events[1]["prev_hash"]) == ("internal", 1, first.hash)
    assert [c["event_id"] for c in server_history(store, "srv-a")["cases"]] == ["e-triage", "e-open"]
    assert case_events(store, "nope") == []
    with pytest.raises(InvalidQuery):
        case_events(store, "")
