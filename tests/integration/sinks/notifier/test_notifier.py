"""The notifier against the real broker, an aiosmtpd catcher and a webhook catcher on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter

import pytest

from fleetcore.settings import Settings
from schemas.commands import CommandType
from schemas.deadletter import DeadLetter
from schemas.notifications import Channel, Notification, Role
from schemas.topics import Topics
from sinks.notifier.service import NotifierService
from tests.helpers import TopicReader, eventually
from tests.integration.sinks.notifier.conftest import Catchers, note, outcome_ids, outcomes, produce

pytestmark = pytest.mark.integration


def sev1_opened() -> list[Notification]:
    return [
        note("case.opened", Role.OPERATIONS_MANAGER, Channel.PAGE),
        note("case.opened", Role.SUPPORT_TEAM, Channel.EMAIL),
        note("case.opened", Role.CUSTOMER_TECHNICAL, Channel.EMAIL),
        note("case.opened", Role.PARTNER_HELPDESK, Channel.EMAIL),
    ]


async def test_sev1_pages_the_manager_and_emails_the_right_people(
    kafka_bootstrap: str, topics: Topics, catchers: Catchers, notify_settings: Settings
) -> None:
    produce(kafka_bootstrap, topics.notifications, sev1_opened())
    stats = await NotifierService(notify_settings, max_idle_s=1.0).run()

    (page,) = catchers.hooks.records("page")
    assert page["dedup_key"] == "mon-abc:case.opened:operations_manager:page"
    assert page["routing_key"] == "rk-om"
    assert page["event_action"] == "trigger"
    assert page["payload"]["severity"] == "critical"
    assert page["payload"]["summary"] == "[FW-100001] case.opened: server srv-1 is down"
    mails = catchers.mail.messages
    assert sorted(str(m["To"]) for m in mails) == [
        "Acme Ops <ops@acme.example>",
        "Eng One <one@ops.example>",
        "Partner Desk <desk@partner.example>",
    ]
    assert all(m["Auto-Submitted"] == "auto-generated" for m in mails)
    assert all(str(m["Subject"]).startswith("[FW-100001] ") for m in mails)
    assert len(list(catchers.mail.directory.glob("*.eml"))) == 3
    assert (stats.sent, stats.failed, stats.retries) == (4, 1, 0)

    reader = TopicReader(kafka_bootstrap, topics.case_commands)
    try:
        await eventually(lambda: len(outcomes(reader)) >= 5, 30, "five outcome commands")
        commands = outcomes(reader)
    finally:
        reader.close()
    assert {c.type for c in commands} == {CommandType.NOTIFICATION_OUTCOME}
    assert {c.actor for c in commands} == {"notifier"}
    assert {c.case_id for c in commands} == {"mon-abc"}
    assert sorted(c.command_id for c in commands) == sorted(
        [
            "notify:mon-abc:case.opened:operations_manager:page|om:sent:1",
            "notify:mon-abc:case.opened:support_team:email|eng1:sent:1",
            "notify:mon-abc:case.opened:support_team:email|eng2:failed:0",
            "notify:mon-abc:case.opened:customer_technical:email|acme-ops:sent:1",
            "notify:mon-abc:case.opened:partner_helpdesk:email|desk:sent:1",
        ]
    )
    (failed,) = [c for c in commands if c.details["outcome"] == "failed"]
    assert failed.details["error"] == "contact eng2 has no email address"
    assert failed.details["contact"] == "eng2"


async def test_webhook_failing_twice_then_ok_is_retried_and_delivered_once(
    kafka_bootstrap: str, topics: Topics, catchers: Catchers, notify_settings: Settings
) -> None:
    catchers.hooks.fail_next(2)
    produce(kafka_bootstrap, topics.notifications, [note("sla.breached", Role.VP_OPERATIONS, Channel.PAGE)])
    stats = await NotifierService(notify_settings, max_idle_s=1.0).run()

    assert catchers.hooks.requests == 3
    (page,) = catchers.hooks.records("page")
    assert page["routing_key"] == "rk-vp"
    assert (stats.sent, stats.retries, stats.failed) == (1, 2, 0)
    reader = TopicReader(kafka_bootstrap, topics.case_commands)
    try:
        await eventually(lambda: len(outcome_ids(reader)) >= 3, 30, "three outcome commands")
        commands = outcomes(reader)
    finally:
        reader.close()
    prefix = "notify:mon-abc:sla.breached:vp_operations:page|vp"
    assert [c.command_id for c in commands] == [
        f"{prefix}:retrying:1",
        f"{prefix}:retrying:2",
        f"{prefix}:sent:3",
    ]
    assert [c.details["outcome"] for c in commands] == ["retrying", "retrying", "sent"]
    assert commands[0].details["error"] == 'HTTP 500: {"status": "error", "message": "told to fail"}'


async def test_permanent_http_error_fails_without_retrying(
    kafka_bootstrap: str, topics: Topics, catchers: Catchers, notify_settings: Settings
) -> None:
    settings = notify_settings.model_copy(update={"pager_url": catchers.hooks.base_url + "/no-such-route"})
    produce(
        kafka_bootstrap, topics.notifications, [note("case.opened", Role.OPERATIONS_MANAGER, Channel.PAGE)]
    )
    stats = await NotifierService(settings, max_idle_s=1.0).run()
    assert (stats.sent, stats.retries, stats.failed) == (0, 0, 1)
    reader = TopicReader(kafka_bootstrap, topics.case_commands)
    try:
        await eventually(lambda: outcome_ids(reader), 30, "an outcome command")
        (command,) = outcomes(reader)
    finally:
        reader.close()
    assert command.command_id.endswith("|om:failed:1")
    assert str(command.details["error"]).startswith("HTTP 404")


async def test_a_second_run_over_the_same_topic_delivers_nothing_new(
    kafka_bootstrap: str, topics: Topics, catchers: Catchers, notify_settings: Settings
) -> None:
    produce(kafka_bootstrap, topics.notifications, sev1_opened())
    first = await NotifierService(notify_settings, max_idle_s=1.0).run()
    assert first.sent == 4
    # Another group reads the topic from the start again: only the ledger stands between it and resending.
    again = await NotifierService(notify_settings, group_id=f"{topics.prefix}other", max_idle_s=1.0).run()
    assert (again.messages, again.sent, again.skipped) == (4, 0, 4)
    assert again.failed == 1  # eng2 still has no email address; failures are reported, not recorded
    assert len(catchers.hooks.records("page")) == 1
    assert len(catchers.mail.messages) == 3
    # The first group committed everything: a restart of it reads nothing.
    restart = await NotifierService(notify_settings, max_idle_s=1.0).run()
    assert restart.messages == 0


async def test_slow_webhook_does_not_hold_up_other_notifications(
    kafka_bootstrap: str, topics: Topics, catchers: Catchers, notify_settings: Settings
) -> None:
    catchers.hooks.fail_next(10_000)
    settings = notify_settings.model_copy(update={"notify_max_attempts": 100})
    produce(
        kafka_bootstrap,
        topics.notifications,
        [
            note("case.opened", Role.OPERATIONS_MANAGER, Channel.PAGE),
            *(note(f"status.notice:{i}", Role.CUSTOMER_TECHNICAL, Channel.EMAIL) for i in range(5)),
        ],
    )
    service = NotifierService(settings, drain_s=0.5)
    task = asyncio.create_task(service.run())
    try:
        await eventually(lambda: len(catchers.mail.messages) == 5, 30, "the emails behind the failing page")
        assert catchers.hooks.records("page") == []
        assert catchers.hooks.requests >= 1
        catchers.hooks.fail_next(0)
        await eventually(lambda: catchers.hooks.records("page"), 30, "the page once the webhook recovers")
        await eventually(lambda: service.stats.committed == 6, 30, "every offset committed")
    finally:
        service.stop_event.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
    assert task.result().sent == 6
    sample = service.metrics.registry.get_sample_value
    assert sample("fleetwatch_notify_outcomes_total", {"channel": "email", "outcome": "sent"}) == 5
    assert sample("fleetwatch_notify_outcomes_total", {"channel": "page", "outcome": "sent"}) == 1
    assert (sample("fleetwatch_notify_outcomes_total", {"channel": "page", "outcome": "retrying"}) or 0) >= 1


async def test_malformed_values_go_to_dead_letter_and_the_service_goes_on(
    kafka_bootstrap: str, topics: Topics, catchers: Catchers, notify_settings: Settings
) -> None:
    good = note("case.opened", Role.SUPPORT_LEAD, Channel.EMAIL)
    bad_fields = good.model_dump(mode="json") | {"channel": "carrier-pigeon"}
    produce(
        kafka_bootstrap,
        topics.notifications,
        [
            (b"k1", b"{not json"),
            (b"k2", json.dumps(bad_fields).encode()),
            (b"k3", None),
            (b"k4", b"[1, 2]"),
            good,
        ],
    )
    stats = await NotifierService(notify_settings, max_idle_s=1.0).run()
    assert (stats.dead_letters, stats.messages, stats.sent) == (4, 1, 1)
    (mail,) = catchers.mail.messages
    assert str(mail["To"]) == "Victor VP <victor@ops.example>"

    reader = TopicReader(kafka_bootstrap, topics.dead_letter)
    try:
        await eventually(lambda: len(reader.poll()) >= 4, 30, "four dead letters")
        letters = [DeadLetter.model_validate_json(v) for _, v in reader.poll() if v is not None]
    finally:
        reader.close()
    assert {d.consumer for d in letters} == {"notifier"}
    assert {d.source_topic for d in letters} == {topics.notifications}
    reasons = Counter("not a Notification" in d.reason for d in letters)
    assert reasons[True] == 3
    assert any("empty value" in d.reason for d in letters)
    assert any(d.payload == "{not json" for d in letters)
    assert any("channel" in d.reason for d in letters)


async def test_a_second_notifier_joining_mid_way_changes_nothing_delivered(
    kafka_bootstrap: str, topics: Topics, catchers: Catchers, notify_settings: Settings
) -> None:
    # Pages keep failing for a while, so the rebalance finds some being retried (and cancels them after
    # drain_s); the new owner re-reads those messages and the ledger keeps what was delivered.
    catchers.hooks.fail_next(40)
    settings = notify_settings.model_copy(update={"notify_max_attempts": 30, "notify_backoff_s": 0.3})
    cases = [f"mon-{i:02d}" for i in range(12)]
    produce(
        kafka_bootstrap,
        topics.notifications,
        [
            n
            for case in cases
            for n in (
                note("case.opened", Role.OPERATIONS_MANAGER, Channel.PAGE, case_id=case),
                note("case.opened", Role.CUSTOMER_TECHNICAL, Channel.EMAIL, case_id=case),
            )
        ],
    )
    first = NotifierService(settings, max_idle_s=3.0, drain_s=0.5)
    second = NotifierService(settings, max_idle_s=3.0, drain_s=0.5)
    first_run = asyncio.create_task(first.run())
    try:
        await eventually(lambda: first.stats.sent >= 3, 30, "the first notifier to deliver some")
        second_run = asyncio.create_task(second.run())
        await asyncio.wait_for(asyncio.gather(first_run, second_run), 120)
    finally:
        first.stop_event.set()
        second.stop_event.set()
    assert first.stats.sent + second.stats.sent == 24
    assert first.stats.failed + second.stats.failed == 0
    assert Counter(p["dedup_key"] for p in catchers.hooks.records("page")) == Counter(
        {f"{case}:case.opened:operations_manager:page": 1 for case in cases}
    )
    assert Counter(str(m["X-Fleetwatch-Key"]) for m in catchers.mail.messages) == Counter(
        {f"{case}:case.opened:customer_technical:email": 1 for case in cases}
    )
