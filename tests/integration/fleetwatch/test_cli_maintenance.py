"""`fleetwatch maintenance add|list|cancel` against a real broker: the compacted topic is the record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleetcore.compacted import read_latest
from fleetwatch.cli import main
from schemas.maintenance import MaintenanceWindow
from schemas.topics import Topics

pytestmark = pytest.mark.integration


def test_add_list_cancel(
    kafka_bootstrap: str, topics: Topics, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLEETWATCH_CLOCK_SCALE", raising=False)
    conn = ["--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix]
    now = datetime.now(UTC).replace(microsecond=0)
    running = (now - timedelta(hours=1)).isoformat()
    later = (now + timedelta(days=2)).isoformat()

    add = ["maintenance", "add", *conn]
    assert main([*add, "--server", "srv-a", "--customer", "acme", "--start", running, "--duration", "3h",
                 "--reason", "disk swap", "--as", "alice"]) == 0  # fmt: skip
    server_window = capsys.readouterr().out.splitlines()[0]
    assert main([*add, "--customer", "acme", "--start", later, "--duration", "30m",
                 "--recur", "weekly", "--id", "mw-weekly"]) == 0  # fmt: skip
    assert capsys.readouterr().out.splitlines()[0] == "mw-weekly"

    assert main(["maintenance", "list", *conn]) == 0
    listing = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(listing) == {server_window, "mw-weekly"}
    assert listing[server_window].split()[1] == "active"
    assert "server srv-a" in listing[server_window]
    assert listing[server_window].endswith("disk swap")
    assert listing["mw-weekly"].split()[1] == "upcoming"
    assert "customer acme (all)" in listing["mw-weekly"]

    assert main(["maintenance", "cancel", *conn, server_window, "--as", "bob"]) == 0
    assert f"{server_window} cancelled at" in capsys.readouterr().out
    assert main(["maintenance", "list", *conn]) == 0
    listing = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert listing[server_window].split()[1] == "cancelled"
    assert "by bob at" in listing[server_window]
    assert listing["mw-weekly"].split()[1] == "upcoming"

    assert main(["maintenance", "cancel", *conn, "mw-nope"]) == 2
    assert "no maintenance window 'mw-nope'" in capsys.readouterr().err

    stored = read_latest(kafka_bootstrap, topics.maintenance, MaintenanceWindow.model_validate_json)
    assert set(stored) == {server_window, "mw-weekly"}
    cancelled = stored[server_window]
    assert cancelled.cancelled_by == "bob"
    assert cancelled.cancelled_at is not None
    assert now <= cancelled.cancelled_at <= datetime.now(UTC)
    assert (cancelled.created_by, cancelled.reason) == ("alice", "disk swap")
    assert stored["mw-weekly"].cancelled_at is None


def test_bad_input_publishes_nothing(
    kafka_bootstrap: str, topics: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = ["--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix]
    with pytest.raises(SystemExit) as exited:
        main(["maintenance", "add", *conn, "--customer", "acme", "--start", "2026-13-01", "--duration", "1h"])
    assert exited.value.code == 2
    assert "not an ISO 8601 time" in capsys.readouterr().err
    assert read_latest(kafka_bootstrap, topics.maintenance, MaintenanceWindow.model_validate_json) == {}
