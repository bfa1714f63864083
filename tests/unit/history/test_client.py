"""`fleetwatch history`: sink API or direct query, a clear error when the sink is down, a readable table."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

import history.client as history_client
from fleetcore.errors import FleetwatchError
from fleetcore.settings import Settings
from history.client import fetch_history, render_history
from history.ddl import migrate
from history.queries import InvalidQuery
from history.store import connect

DATA: dict[str, Any] = {
    "server_id": "srv-a",
    "probes": [
        {
            "probe_id": "srv-a@2",
            "started_at": "2026-11-01T12:02:00.000Z",
            "ok": False,
            "latency_ms": 10000,
            "status_code": None,
            "error_class": "timeout",
            "error_message": "no answer within 10 s",
        },
        {
            "probe_id": "srv-a@1",
            "started_at": "2026-11-01T12:01:00.000Z",
            "ok": True,
            "latency_ms": 12,
            "status_code": 200,
            "error_class": None,
            "error_message": None,
        },
    ],
    "cases": [
        {
            "event_id": "evt-1",
            "case_id": "mon-abc",
            "type": "case.opened",
            "severity": 1,
            "at": "2026-11-01T12:02:00.000Z",
        }
    ],
}


def test_render_history_shows_probes_and_cases() -> None:
    text = render_history(DATA)
    lines = text.splitlines()
    assert lines[0] == "server srv-a"
    assert "last 2 probes (newest first), 1 failed:" in lines
    fail = next(line for line in lines if "FAIL" in line)
    assert fail.startswith("2026-11-01 12:02:00.000")
    assert "10000 ms" in fail
    assert "timeout no answer within 10 s" in fail
    ok = next(line for line in lines if " ok " in line)
    assert "12 ms" in ok
    assert ok.rstrip().endswith("200")
    case = next(line for line in lines if "case.opened" in line)
    assert "Sev1" in case
    assert "mon-abc" in case


def test_render_history_empty() -> None:
    text = render_history({"server_id": "x", "probes": [], "cases": []})
    assert "no probes stored for this server" in text
    assert "no case events for this server" in text


def test_render_truncates_long_errors() -> None:
    probe = dict(DATA["probes"][0], error_message="e" * 500)
    text = render_history({"server_id": "x", "probes": [probe], "cases": []})
    assert "e" * 57 + "..." in text
    assert "e" * 61 not in text


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_embedded_store_without_a_running_sink_says_how_to_start_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, sink_http_port=unused_port())
    assert settings.embedded_store()
    with pytest.raises(FleetwatchError, match="start `fleetwatch sink` or `fleetwatch up`"):
        fetch_history(settings, "srv-a", 5)


@pytest.mark.parametrize(("server_id", "limit"), [("bad id", 5), ("srv-a", 0)])
def test_bad_arguments_fail_before_any_io(tmp_path: Path, server_id: str, limit: int) -> None:
    settings = Settings(data_dir=tmp_path, sink_http_port=unused_port())
    with pytest.raises(InvalidQuery):
        fetch_history(settings, server_id, limit)


def test_server_dsn_queries_clickhouse_directly(
    tmp_path: Path, store: Client, store_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate(store)
    opened: list[str] = []

    def fake_connect(dsn: str, database: str) -> Client:
        opened.append(dsn)
        return connect(store_dsn, database)  # a chdb client stands in for the server

    monkeypatch.setattr(history_client, "connect", fake_connect)
    settings = Settings(data_dir=tmp_path, clickhouse_dsn="http://clickhouse.example:8123")
    assert not settings.embedded_store()
    data = fetch_history(settings, "srv-a", 5)
    assert data == {"server_id": "srv-a", "probes": [], "cases": []}
    assert opened == ["http://clickhouse.example:8123"]


def test_render_marks_planned_failures_and_shows_case_state_and_ticket() -> None:
    planned = dict(DATA["probes"][0], maintenance_id="mw-42", planned=True)
    case = {
        "event_id": "evt-2",
        "case_id": "case-7",
        "type": "case.triaged",
        "severity": None,
        "state": "triaged",
        "ticket": "FW-7",
        "at": "2026-11-01T12:03:00.000Z",
    }
    text = render_history({"server_id": "srv-a", "probes": [planned, DATA["probes"][1]], "cases": [case]})
    lines = text.splitlines()
    assert "last 2 probes (newest first), 1 failed (1 planned):" in lines
    row = next(line for line in lines if "mw-42" in line)
    assert " planned " in row
    assert "FAIL" not in text
    triaged = next(line for line in lines if "case.triaged" in line)
    assert triaged.split()[3:] == ["-", "triaged", "FW-7", "case-7"]
