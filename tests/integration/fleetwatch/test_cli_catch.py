"""`fleetwatch catch`: both catchers in the foreground; a real mail and real webhooks land in its files."""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.helpers import fleetwatch_env, wait_for

pytestmark = pytest.mark.integration


def _post(url: str, body: Mapping[str, object]) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return int(resp.status)


def test_catch_keeps_a_mail_and_logs_a_page_and_a_call_then_stops_on_sigterm(tmp_path: Path) -> None:
    mail_dir, hook_log = tmp_path / "mail", tmp_path / "hooks.jsonl"
    out, err = tmp_path / "catch.out", tmp_path / "catch.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetwatch.cli", "catch", "--smtp-port", "0", "--webhook-port", "0",
             "--mail-dir", str(mail_dir), "--webhook-log", str(hook_log), "--data-dir", str(tmp_path)],
            env=fleetwatch_env(), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:

        def printed() -> dict[str, str] | None:
            assert proc.poll() is None, err.read_text()[-3000:]
            lines = out.read_text().splitlines()
            return dict(line.split("=", 1) for line in lines) if len(lines) >= 4 else None

        where = wait_for(printed, 60, "the catchers' addresses")
        assert set(where) == {"smtp", "pager_url", "call_url", "webhook_url"}
        assert where["pager_url"].endswith("/v2/enqueue")
        assert where["call_url"].endswith("/call")

        host, port = where["smtp"].rsplit(":", 1)
        message = EmailMessage()
        message["From"], message["To"] = "support@fleetwatch.local", "noc@globex.example"
        message["Subject"] = "[FW-100000] We detected an outage"
        message.set_content("demo-srv-03 is down")
        with smtplib.SMTP(host, int(port), timeout=10) as smtp:
            smtp.send_message(message)
        page = {"routing_key": "ops", "event_action": "trigger", "payload": {"summary": "Sev1 demo-srv-03"}}
        assert _post(where["pager_url"], page) == 202
        assert _post(where["call_url"], {"name": "Globex NOC", "phone": "+1", "message": "Sev1"}) == 200

        kept = wait_for(lambda: sorted(mail_dir.glob("*.eml")), 10, "the caught mail")
        assert [p.name for p in kept] == ["1.eml"]
        assert "We detected an outage" in kept[0].read_text()
        logged = [json.loads(line) for line in hook_log.read_text().splitlines()]
        assert [r["kind"] for r in logged] == ["page", "call"]
        assert logged[0]["body"]["payload"]["summary"] == "Sev1 demo-srv-03"
        shown = wait_for(lambda: "[call] Globex NOC" in err.read_text(), 10, "the caught lines on stderr")
        assert shown
        assert "[mail] from support@fleetwatch.local to noc@globex.example" in err.read_text()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, err.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    with pytest.raises(ConnectionRefusedError):  # the SMTP catcher no longer listens
        smtplib.SMTP(host, int(port), timeout=5).quit()
