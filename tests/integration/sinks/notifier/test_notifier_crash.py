"""Crash safety: a notifier killed -9 mid-way and restarted delivers every (key, contact) exactly once."""

from __future__ import annotations

import os
import signal
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from fleetcore.settings import Settings
from fleetwatch.kafka_local import free_port
from schemas.notifications import Channel, Role
from schemas.topics import Topics
from sinks.notifier.service import NotifierService
from tests.helpers import TopicReader, eventually, spawn, stop
from tests.integration.sinks.notifier.conftest import Catchers, note, outcome_ids, produce, settings_env

pytestmark = pytest.mark.integration


def sent_count(reader: TopicReader) -> int:
    return sum(":sent:" in command_id for command_id in outcome_ids(reader))


async def test_kill_9_mid_way_then_restart_delivers_every_pair_exactly_once(
    kafka_bootstrap: str, topics: Topics, catchers: Catchers, notify_settings: Settings, tmp_path: Path
) -> None:
    settings = notify_settings.model_copy(update={"notify_max_attempts": 1000})
    # One partition, in this order: a page the failing pager holds up (so nothing behind it is committed),
    # six emails that are delivered before the kill, then wave 2, failing on every channel at the kill.
    blocker = note("case.opened", Role.OPERATIONS_MANAGER, Channel.PAGE)
    wave1 = [note(f"status.notice:{i}", Role.CUSTOMER_TECHNICAL, Channel.EMAIL) for i in range(6)]
    wave2 = [
        note("case.opened", Role.SUPPORT_TEAM, Channel.EMAIL, case_id="mon-def"),
        note("case.opened", Role.ONCALL_ENGINEERS, Channel.PAGE, case_id="mon-def"),
        note("case.opened", Role.PARTNER_HELPDESK, Channel.EMAIL, case_id="mon-def"),
        note("sla.breached:sev1.work", Role.CUSTOMER_TECHNICAL, Channel.CALL, case_id="mon-def"),
    ]
    catchers.hooks.fail_next(1_000_000)
    produce(kafka_bootstrap, topics.notifications, [blocker, *wave1], partition=0)
    log = tmp_path / "notify.log"
    metrics_port = free_port()
    env = {
        **os.environ,
        **settings_env(settings),
        "FLEETWATCH_LOG_LEVEL": "INFO",
        "FLEETWATCH_NOTIFY_METRICS_PORT": str(metrics_port),
    }
    proc = spawn(["notify"], env, log)
    ledger = TopicReader(kafka_bootstrap, topics.notify_ledger)
    commands = TopicReader(kafka_bootstrap, topics.case_commands)
    try:
        await eventually(lambda: len(ledger.poll()) >= 6, 60, "wave 1 in the ledger")
        await eventually(lambda: sent_count(commands) >= 6, 30, "wave 1's sent outcomes")
        assert catchers.hooks.records() == []  # the blocker page is still being retried
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert 'fleetwatch_notify_outcomes_total{channel="email",outcome="sent"} 6.0' in metrics
        assert 'fleetwatch_notify_outcomes_total{channel="page",outcome="retrying"}' in metrics
        catchers.mail.fail_next(1_000_000)
        requests_before = catchers.hooks.requests
        produce(kafka_bootstrap, topics.notifications, wave2, partition=0)
        await eventually(
            lambda: catchers.mail.refused >= 2 and catchers.hooks.requests >= requests_before + 4,
            60,
            "wave 2 being retried",
        )
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        stop(proc, kill=True)
        ledger.close()
        commands.close()
    assert len(catchers.mail.messages) == 6, log.read_text()[-3000:]
    assert catchers.hooks.records() == []

    catchers.mail.fail_next(0)
    catchers.hooks.fail_next(0)
    stats = await NotifierService(settings, max_idle_s=1.5).run()
    # Everything was read again (nothing was committed behind the blocker); the ledger stopped wave 1.
    assert (stats.messages, stats.skipped, stats.sent) == (11, 6, 5)

    mails = Counter((str(m["X-Fleetwatch-Key"]), str(m["To"])) for m in catchers.mail.messages)
    acme = "Acme Ops <ops@acme.example>"
    assert mails == Counter(
        {
            **{(f"mon-abc:status.notice:{i}:customer_technical:email", acme): 1 for i in range(6)},
            ("mon-def:case.opened:support_team:email", "Eng One <one@ops.example>"): 1,
            ("mon-def:case.opened:partner_helpdesk:email", "Partner Desk <desk@partner.example>"): 1,
        }
    )
    assert len({m["Message-ID"] for m in catchers.mail.messages}) == 8
    pages = Counter((p["dedup_key"], p["routing_key"]) for p in catchers.hooks.records("page"))
    assert pages == Counter(
        {
            ("mon-abc:case.opened:operations_manager:page", "rk-om"): 1,
            ("mon-def:case.opened:oncall_engineers:page", "rk-oncall"): 1,
        }
    )
    calls = Counter((c["key"], c["phone"]) for c in catchers.hooks.records("call"))
    assert calls == Counter({("mon-def:sla.breached:sev1.work:customer_technical:call", "+1 555 0100"): 1})

    reader = TopicReader(kafka_bootstrap, topics.case_commands)
    try:
        await eventually(lambda: sent_count(reader) >= 11, 30, "sent outcomes")
        sent = [c.rsplit(":sent:", 1)[0] for c in outcome_ids(reader) if ":sent:" in c]
    finally:
        reader.close()
    assert len(sent) == len(set(sent)) == 11  # one `sent` outcome per delivered pair
