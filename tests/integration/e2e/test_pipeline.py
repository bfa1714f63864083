"""End to end with real parts: demo servers -> probe worker -> Kafka -> Faust detector -> case topic ->
ClickHouse sink; and `fleetwatch up` as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.demo_fleet import DemoFleet, DemoFleetThread, DemoServer, Mode, Outage
from fleetwatch.kafka_local import free_port
from probes.inventory import publish_inventory
from schemas.cases import CaseEvent
from schemas.topics import Topics
from tests.helpers import TopicReader, fleetwatch_env, spawn, stop, wait_for

pytestmark = pytest.mark.integration

SPECS = [DemoServer("e2e-ok-1", "acme"), DemoServer("e2e-down", "globex"), DemoServer("e2e-ok-2", "initech")]


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


@pytest.fixture
def fleet() -> Iterator[DemoFleet]:
    demo = DemoFleet(specs=SPECS, script=[Outage("e2e-down", 0.0, float("inf"), Mode.DOWN)], timeout_s=1.0)
    serving = DemoFleetThread(demo)
    serving.start_serving()
    yield demo
    serving.stop()


@pytest.fixture
def workers(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> Iterator[dict[str, Any]]:
    sink_port = free_port()
    env = fleetwatch_env(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topics.prefix,
        data_dir=tmp_path,
        probe_interval_s=2,
        probe_retry_interval_s=0.3,
        probe_metrics_port=0,
        stream_metrics_port=0,
        stream_web_port=free_port(),
        sink_http_port=sink_port,
        sink_chunk_seconds=1,
    )
    procs = {name: spawn([name], env, tmp_path / f"{name}.log") for name in ("sink", "stream", "probe")}
    yield {"sink_url": f"http://127.0.0.1:{sink_port}", "procs": procs, "env": env}
    for proc in procs.values():
        stop(proc)


def test_down_server_opens_one_sev1_and_history_lands_in_clickhouse(
    fleet: DemoFleet, workers: dict[str, Any], kafka_bootstrap: str, topics: Topics
) -> None:
    publish_inventory(kafka_bootstrap, topics, fleet.servers(), prune=False)
    cases = TopicReader(kafka_bootstrap, topics.cases)

    def events() -> list[CaseEvent]:
        every = [CaseEvent.model_validate_json(v) for _, v in cases.poll() if v]
        return [e for e in every if e.type.value == "case.opened"]

    opened = wait_for(lambda: events(), 120, "a case event")
    assert [(e.type.value, e.server_id, int(e.severity)) for e in opened] == [("case.opened", "e2e-down", 1)]
    assert opened[0].details["failures"] == 10
    sink = workers["sink_url"]

    def landed() -> Any:
        data = _get(f"{sink}/api/history/e2e-down?limit=50")
        return data if data and data["cases"] and len(data["probes"]) >= 10 else None

    history = wait_for(landed, 60, "probes and case in ClickHouse")
    assert history["cases"][0]["case_id"] == opened[0].case_id
    assert all(not p["ok"] for p in history["probes"])
    healthy = wait_for(lambda: (_get(f"{sink}/api/history/e2e-ok-1") or {}).get("probes"), 60, "healthy rows")
    assert all(p["ok"] for p in healthy)
    # still exactly one case: more failures of the same outage open nothing new
    more = wait_for(
        lambda: len((_get(f"{sink}/api/history/e2e-down?limit=50") or {"probes": []})["probes"]) >= 15,
        60,
        "more failed probes",
    )
    assert more
    assert [e.type.value for e in events()] == ["case.opened"]
    for name, proc in workers["procs"].items():
        assert proc.poll() is None, f"{name} died"
    cases.close()


def test_fleetwatch_up_shows_a_sev1_and_history_then_stops_cleanly(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The README's run command as a user runs it (against the session broker; `up` starts the rest)."""
    sink_port = free_port()
    env = fleetwatch_env(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"up{os.getpid()}.",
        data_dir=tmp_path,
        probe_metrics_port=free_port(),
        stream_metrics_port=free_port(),
        stream_web_port=free_port(),
        sink_http_port=sink_port,
        notify_metrics_port=free_port(),
        mail_catcher_port=free_port(),
        intake_port=free_port(),
        portal_port=free_port(),
        analysts_port=free_port(),
        analysts_password="analyst-test",
    )
    out = tmp_path / "up.out"
    with out.open("wb") as fh:
        up = subprocess.Popen(
            [sys.executable, "-m", "fleetwatch.cli", "up", "--clock-scale", "240"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:

        def first_sev1() -> str | None:
            assert up.poll() is None, out.read_text()[-3000:]
            lines = out.read_text().splitlines()
            return next((x for x in lines if "case.opened" in x and "demo-srv-03" in x), None)

        line = wait_for(first_sev1, 180, "the demo's first Sev1 on up's output")
        assert "SEV1" in line
        # the Sev1's timeline at 240x (globex's plan: work within 1 h = 15 s; updates from 2 h = 30 s)
        timeline = (
            "[page] demo-routing-ops-manager",  # Operations Manager paged at once
            "[mail] to noc@globex.example",  # the customer's technical staff contacted
            "[page] demo-routing-vp-operations",  # not worked within the plan's hour: VP paged
            "[call] Globex NOC",  # ... and the customer contact called
            "case.status_notice",  # hourly status notice once the outage passes 2 h
        )

        def shown_all() -> bool:
            assert up.poll() is None, out.read_text()[-3000:]
            text = out.read_text()
            return all(what in text for what in timeline)

        try:
            wait_for(shown_all, 120, "the Sev1 timeline on up's output")
        except AssertionError as exc:
            text = out.read_text()
            missing = [w for w in timeline if w not in text]
            raise AssertionError(f"{exc}: missing {missing}\n{text[-4000:]}") from exc

        def history() -> str | None:
            shown = subprocess.run(
                [sys.executable, "-m", "fleetwatch.cli", "history", "demo-srv-03"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert shown.returncode == 0, shown.stderr
            return shown.stdout if "case.opened" in shown.stdout else None

        assert "FAIL" in wait_for(history, 60, "the case in `fleetwatch history` while up runs")

        # the reports run on the demo's history, through the sink that owns the embedded store
        report = subprocess.run(
            [sys.executable, "-m", "fleetwatch.cli", "report", "cases", "--format", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert report.returncode == 0, report.stderr
        assert json.loads(report.stdout)
        # and analysts reach the same store with clickhouse-connect's HTTP client, read-only
        import clickhouse_connect

        analysts = clickhouse_connect.get_client(
            host="127.0.0.1",
            port=int(env["FLEETWATCH_ANALYSTS_PORT"]),
            username="analyst",
            password="analyst-test",
        )
        assert analysts.query("SELECT count() FROM probe_results").result_rows[0][0] > 0
        analysts.close()

        # a partner emails the support address: the automatic acknowledgement arrives (printed by up's
        # SMTP catcher) and the case shows in the partner portal
        mail = EmailMessage()
        mail["From"] = "helpdesk@northwind.example"
        mail["To"] = "support@fleetwatch.local"
        mail["Subject"] = "Logins to the acme mail server fail"
        mail["Message-ID"] = "<up-e2e-1@northwind.example>"
        mail.set_content("Since 9:00 every login is refused. customer: acme")
        with smtplib.SMTP("127.0.0.1", int(env["FLEETWATCH_INTAKE_PORT"]), timeout=30) as smtp:
            smtp.send_message(mail)
        wait_for(lambda: "[mail] to helpdesk@northwind.example" in out.read_text(), 60, "the auto-ack")
        portal = f"http://127.0.0.1:{env['FLEETWATCH_PORTAL_PORT']}"

        def filed() -> Any:
            request = urllib.request.Request(
                f"{portal}/api/cases", headers={"Authorization": "Bearer fwt_demo_northwind_token"}
            )
            with urllib.request.urlopen(request, timeout=10) as resp:
                body = json.loads(resp.read())
            cases = body["cases"] if isinstance(body, dict) else body
            return [c for c in cases if "Logins to the acme mail server fail" in json.dumps(c)]

        emailed = wait_for(filed, 60, "the emailed case in the partner portal")
        # signed by the key `up` generated, verified by the portal's read model with the same key list
        request = urllib.request.Request(
            f"{portal}/api/cases/{emailed[0]['case_id']}",
            headers={"Authorization": "Bearer fwt_demo_northwind_token"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            chain = json.loads(resp.read())["chain"]
        assert chain["status"] == "verified", chain
        with urllib.request.urlopen(f"{portal}/audit/keys", timeout=10) as resp:
            assert len(json.loads(resp.read())["keys"]) == 1
        children = [
            int(x.split("pid ")[1].split(",")[0])
            for x in out.read_text().splitlines()
            if "worker started (pid" in x
        ]
        assert len(children) == 6  # sink, stream, notify, intake, portal, probe
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=90)
    assert code == 0, out.read_text()[-3000:]
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert "stopped" in out.read_text().splitlines()[-1]
