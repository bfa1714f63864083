"""The demo catchers the notifier tests (and `fleetwatch up`) deliver to: SMTP and webhooks on 127.0.0.1."""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.mailcatcher import MailCatcher
from fleetwatch.webhook_catcher import WebhookCatcher


def post(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_mail_catcher_stores_messages_and_can_fail_on_request(tmp_path: Path) -> None:
    seen: list[tuple[str, list[str], str]] = []
    message = EmailMessage()
    message["From"] = "a@x.example"
    message["To"] = "b@y.example"
    message["Subject"] = "[FW-1] hello"
    message.set_content("body")
    with MailCatcher(tmp_path / "mail", callback=lambda *args: seen.append(args)) as catcher:
        assert catcher.port > 0
        catcher.fail_next(1)
        with smtplib.SMTP("127.0.0.1", catcher.port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.send_message(message)
            assert refused.value.smtp_code == 451
            client.send_message(message)
    assert catcher.refused == 1
    assert [m["Subject"] for m in catcher.messages] == ["[FW-1] hello"]
    assert seen == [("a@x.example", ["b@y.example"], "[FW-1] hello")]
    assert (tmp_path / "mail" / "1.eml").read_bytes().count(b"Subject: [FW-1] hello") == 1


def test_webhook_catcher_records_pages_and_calls(tmp_path: Path) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    path = tmp_path / "hooks.jsonl"
    with WebhookCatcher(path=path, callback=lambda kind, body: seen.append((kind, body))) as catcher:
        page = {"routing_key": "rk", "event_action": "trigger", "dedup_key": "k1", "payload": {}}
        assert post(catcher.pager_url, json.dumps(page).encode()) == (
            202,
            {"status": "success", "message": "Event processed", "dedup_key": "k1"},
        )
        assert post(catcher.call_url, b'{"phone": "+1 555"}') == (200, {"status": "ok"})
        assert post(catcher.call_url, b"not json")[0] == 400
        assert post(catcher.call_url, b"[1]")[0] == 400
        catcher.fail_next(2)
        assert post(catcher.webhook_url, b"{}")[0] == 500
        assert post(catcher.webhook_url, b"{}")[0] == 500
        assert post(catcher.webhook_url, b'{"key": "k"}')[0] == 200
    assert catcher.requests == 7
    assert catcher.records("page") == [page]
    assert catcher.records("call") == [{"phone": "+1 555"}]
    assert [kind for kind, _ in seen] == ["page", "call", "webhook"]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["page", "call", "webhook"]
    with pytest.raises(urllib.error.URLError):
        post(catcher.webhook_url, b"{}")  # stopped: nothing listens any more
