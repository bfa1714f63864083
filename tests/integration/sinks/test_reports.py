"""The report API of a running sink over the golden history, and `fleetwatch report` through it."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcore.settings import Settings
from fleetwatch.cli import main as cli_main
from history.reports import build, report_query
from history.store import connect
from sinks.service import SinkService
from tests.unit.history.reports.golden import MONTH, POLICIES, load


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.headers.get_content_type(), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get_content_type(), exc.read().decode()


@pytest.fixture
def sink(sink_settings: Settings, tmp_path: Path) -> Iterator[tuple[SinkService, Settings]]:
    policy = tmp_path / "sla-policy.yaml"
    policy.write_text(
        "customers:\n  acme: {uptime_target_percent: 97}\n  beta: {uptime_target_percent: 99.9}\n"
    )
    settings = sink_settings.model_copy(update={"sla_policy_file": policy})
    service = SinkService(settings, grace_ms=200)
    thread = threading.Thread(target=service.run, name="sink-under-test")
    thread.start()
    try:
        assert service.ready.wait(60)
        client = connect(settings.store_dsn(), settings.clickhouse_database)  # same process: shared engine
        try:
            load(client)
        finally:
            client.close()
        yield service, settings
    finally:
        service.stop_event.set()
        thread.join(timeout=60)
    assert not thread.is_alive()


def test_reports_json_csv_svg_and_bad_input(sink: tuple[SinkService, Settings]) -> None:
    service, settings = sink
    base = f"{service.http_url}/api/reports"
    client = connect(settings.store_dsn(), settings.clickhouse_database)
    try:
        for name in ("uptime", "sla", "capacity", "cases"):
            status, kind, body = _get(f"{base}/{name}?month={MONTH}&threshold_ms=200")
            assert (status, kind) == (200, "application/json"), body
            assert json.loads(body) == build(client, name, report_query(MONTH), POLICIES, 200)
    finally:
        client.close()
    _, _, body = _get(f"{base}/uptime?month={MONTH}&customer=acme")
    rows = {r["server_id"]: r for r in json.loads(body)["rows"]}
    assert (rows["db-1"]["status"], rows["web-1"]["status"]) == ("uncertain", "met")  # the policy file's 97 %

    status, kind, body = _get(f"{base}/cases?month={MONTH}&format=csv")
    assert (status, kind) == (200, "text/csv")
    lines = body.splitlines()
    assert lines[0] == "dimension,value,opened,open,resolved,closed"
    assert "total,all,5,3,1,1" in lines

    status, kind, body = _get(f"{base}/uptime.svg?month={MONTH}")
    assert (status, kind) == (200, "image/svg+xml")
    assert ET.fromstring(body).tag.endswith("svg")

    for bad in (
        "uptime",
        "uptime?month=2026-13",
        "nope?month=2026-11",
        "uptime?month=2026-11&format=xml",
        "uptime?month=2026-11&customer=bad%20id",
        "capacity?month=2026-11&threshold_ms=abc",
        "capacity?month=2026-11&threshold_ms=-5",
    ):
        status, kind, body = _get(f"{base}/{bad}")
        assert status == 400, bad
        assert json.loads(body)["error"]


def test_cli_report_goes_through_the_sink(
    sink: tuple[SinkService, Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    service, settings = sink
    assert service.http_url is not None
    monkeypatch.setenv("FLEETWATCH_SINK_HTTP_PORT", service.http_url.rsplit(":", 1)[1])
    common = ["--month", MONTH, "--data-dir", str(settings.data_dir)]
    chart = tmp_path / "uptime.svg"
    assert cli_main(["report", "uptime", *common, "--svg", str(chart)]) == 0
    out = capsys.readouterr().out
    assert "db-1" in out
    assert "uncertain" in out
    assert ET.parse(chart).getroot().tag.endswith("svg")

    assert cli_main(["report", "sla", *common, "--format", "json"]) == 0
    sla = json.loads(capsys.readouterr().out)
    assert {c["case_id"]: c["vp_escalations"] for c in sla["cases"] if "vp_escalations" in c} == {
        "case-a": 0,
        "case-b": 1,
        "case-e": 0,
    }
    assert cli_main(["report", "sla", *common, "--case", "case-a"]) == 0
    assert "case.status_notice" in capsys.readouterr().out
    assert cli_main(["report", "sla", *common, "--case", "fw-100004"]) == 0  # its ticket, any letter case
    assert "case case-a (FW-100004) timeline:" in capsys.readouterr().out
    assert cli_main(["report", "sla", *common, "--case", "FW-100001"]) == 2
    assert "opened in 2026-10" in capsys.readouterr().err
    # without --month, the month the case was opened (case-f: October)
    assert cli_main(["report", "sla", "--data-dir", str(settings.data_dir), "--case", "FW-100001"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sla report, 2026-10")
    assert "case case-f (FW-100001) timeline:" in out

    assert cli_main(["report", "capacity", *common, "--threshold-ms", "200", "--server", "api-1"]) == 0
    assert "3.8" in capsys.readouterr().out
    assert cli_main(["report", "cases", *common, "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("dimension,value,opened")

    assert cli_main(["report", "uptime", "--month", "2026-13", "--data-dir", str(settings.data_dir)]) == 2
    assert "month must be YYYY-MM" in capsys.readouterr().err
