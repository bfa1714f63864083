"""`fleetwatch report`: terminal rendering, the drill-down, and clear errors without a sink."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from fleetcore.errors import FleetwatchError
from fleetwatch.cli import main as cli_main
from fleetwatch.cli_report import render_table
from history.reports import build, report_query
from history.store import connect
from tests.unit.history.reports.golden import MONTH, POLICIES, load


@pytest.fixture
def golden(tmp_path: Path) -> Client:
    client = connect(f"chdb://{tmp_path / 'clickhouse'}", "fleetwatch")
    load(client)
    return client


def test_tables_and_drill_down(golden: Client) -> None:
    try:
        uptime = render_table(build(golden, "uptime", report_query(MONTH), POLICIES))
        assert uptime.splitlines()[0] == "uptime report, 2026-11"
        assert "uncertain" in uptime
        header = uptime.splitlines()[2].split()
        web = dict(zip(header, next(ln for ln in uptime.splitlines() if "web-1" in ln).split(), strict=True))
        assert (web["unplanned_failures"], web["planned_failures"]) == ("10", "20")
        sla = build(golden, "sla", report_query(MONTH, customer="acme"), POLICIES)
        text = render_table(sla)
        assert "customer acme" in text.splitlines()[0]
        assert "case-b" in text
        assert text.splitlines()[-6].split()[:2] == ["ticket", "case_id"]  # the cases table: header, 4 cases
        assert "FW-100004" in next(ln for ln in text.splitlines() if "case-a" in ln)
        timeline = render_table(sla, "case-a")
        assert "case.status_notice" in timeline
        by_ticket = render_table(sla, "fw-100004")
        assert "case case-a (FW-100004) timeline:" in by_ticket
        assert by_ticket.splitlines()[3:] == timeline.splitlines()[3:]
        with pytest.raises(FleetwatchError, match="no case"):
            render_table(sla, "case-zzz")
        october = build(golden, "sla", report_query(MONTH, case="FW-100001"), POLICIES)
        with pytest.raises(FleetwatchError, match=r"opened in 2026-10 .*add --month 2026-10"):
            render_table(october, "FW-100001")
        capacity = render_table(build(golden, "capacity", report_query(MONTH), threshold_ms=200))
        assert "forecast:" in capacity
        assert "fleet: 2026-11-02 3" in capacity
        empty = render_table(build(golden, "cases", report_query("2025-01")))
        assert "no data for this month" in empty
    finally:
        golden.close()


def test_unreachable_sink_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEETWATCH_SINK_HTTP_PORT", "1")
    monkeypatch.setenv("FLEETWATCH_CLOCK_SCALE", "1")
    assert cli_main(["report", "cases", "--month", MONTH, "--data-dir", str(tmp_path)]) == 2
    assert "fleetwatch sink" in capsys.readouterr().err
    assert cli_main(["report", "cases", "--month", "11-2026", "--data-dir", str(tmp_path)]) == 2
    assert "month must be YYYY-MM" in capsys.readouterr().err


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """`fleetwatch ... | head -1`: the reader has gone; the command ends quietly (141, like SIGPIPE)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # a reader that closed before anything was written: every write is a broken pipe
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "fleetwatch.cli", "schema", "export", "--out", str(tmp_path)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert list(tmp_path.glob("*.json")), "the command itself ran"
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()
    assert b"BrokenPipeError" not in proc.stderr, proc.stderr.decode()
    assert proc.returncode == 141
