"""`up`'s pieces that need no broker: the shared policy clock file, event lines, child environments."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from fleetcore.settings import Settings
from fleetwatch.stack import (
    format_case_event,
    policy_clock_file,
    read_policy_clock,
    worker_env,
    write_policy_clock,
)
from schemas.cases import CaseEvent, CaseEventType, CaseSource, CaseState, Severity


def test_cli_shares_a_running_ups_clock_and_ignores_a_dead_ones(tmp_path: Path) -> None:
    up = Settings(data_dir=tmp_path, clock_scale=60.0, clock_origin_ms=1_790_000_000_000)
    write_policy_clock(up)
    cli = read_policy_clock(Settings(data_dir=tmp_path))
    assert (cli.clock_scale, cli.clock_origin_ms) == (60.0, 1_790_000_000_000)
    # an explicitly configured clock wins
    assert read_policy_clock(Settings(data_dir=tmp_path, clock_scale=5.0)).clock_scale == 5.0
    # a file left behind by an `up` that was killed: its pid no longer runs
    code = "import os; print(os.getpid())"
    dead = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    body = json.loads(policy_clock_file(up).read_text())
    policy_clock_file(up).write_text(json.dumps({**body, "pid": int(dead.stdout)}))
    assert read_policy_clock(Settings(data_dir=tmp_path)).clock_scale == 1.0
    policy_clock_file(up).write_text("not json")
    assert read_policy_clock(Settings(data_dir=tmp_path)).clock_scale == 1.0


def test_worker_env_leaves_unset_optional_settings_unset(tmp_path: Path) -> None:
    env = worker_env(Settings(data_dir=tmp_path), contacts_file=tmp_path / "c.yaml")
    assert "FLEETWATCH_SLA_POLICY_FILE" not in env
    assert env["FLEETWATCH_CONTACTS_FILE"] == str(tmp_path / "c.yaml")


def test_event_line_shows_ticket_type_severity_and_state() -> None:
    event = CaseEvent(
        event_id="e",
        case_id="mon-1",
        type=CaseEventType.SLA_BREACHED,
        severity=Severity.SEV1,
        source=CaseSource.MONITOR,
        server_id="db-01",
        customer_id="acme",
        at=datetime(2026, 11, 26, 12, tzinfo=UTC),
        state=CaseState.TRIAGED,
        ticket="FW-100004",
        reason="Sev1 not worked by 12:00",
    )
    line = format_case_event(event)
    for part in ("FW-100004", "sla.breached", "SEV1", "triaged", "server=db-01", "not worked"):
        assert part in line
    untriaged = event.model_copy(update={"severity": None, "ticket": None, "state": CaseState.NEW})
    assert "SEV?" in format_case_event(untriaged)
    assert "mon-1" in format_case_event(untriaged)


def test_worker_env_passes_secrets_in_clear_to_children(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, analysts_password="s3cret")  # type: ignore[arg-type]
    assert worker_env(settings)["FLEETWATCH_ANALYSTS_PASSWORD"] == "s3cret"


def test_up_without_the_demo_names_no_demo_server_user_or_partner() -> None:
    from fleetwatch.stack import ready_lines

    settings = Settings(analysts_port=8124)
    lines = "\n".join(ready_lines(settings, {}, demo=False, portal_url="http://127.0.0.1:8080"))
    for demo_name in ("demo-srv", "northwind", "nadia", "analyst-demo", "staff-demo"):
        assert demo_name not in lines
    for where in ("http://127.0.0.1:8080", "127.0.0.1:2526", ":8124"):
        assert where in lines
    demo = "\n".join(
        ready_lines(settings, {"analysts_port": 8123, "analysts_password": "analyst-demo"}, True, "u")
    )
    for demo_name in ("demo-srv-03", "nadia", "analyst-demo"):
        assert demo_name in demo
