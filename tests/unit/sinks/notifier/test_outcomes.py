"""Outcomes: classification of HTTP and SMTP answers, retry decisions, and the outcome commands."""

from __future__ import annotations

import pytest

from schemas.commands import CommandType
from schemas.notifications import Channel, Role
from sinks.notifier.delivery import DeliveryConfig, plan
from sinks.notifier.directory import Directory
from sinks.notifier.outcomes import (
    Attempt,
    Outcome,
    classify_http,
    classify_smtp,
    next_outcome,
    outcome_command,
)
from tests.helpers import T0
from tests.unit.sinks.notifier.conftest import notification


@pytest.mark.parametrize(
    ("status", "ok", "retriable"),
    [
        (200, True, False),
        (202, True, False),
        (400, False, False),
        (401, False, False),
        (404, False, False),
        (408, False, True),
        (429, False, True),
        (500, False, True),
        (503, False, True),
    ],
)
def test_http_status_classification(status: int, ok: bool, retriable: bool) -> None:
    attempt = classify_http(status, "some\nbody")
    assert (attempt.ok, attempt.retriable) == (ok, retriable)
    if not ok:
        assert attempt.error == f"HTTP {status}: some body"


@pytest.mark.parametrize(
    ("code", "ok", "retriable"),
    [(250, True, False), (354, True, False), (421, False, True), (451, False, True), (550, False, False)],
)
def test_smtp_reply_classification(code: int, ok: bool, retriable: bool) -> None:
    attempt = classify_smtp(code, "reason")
    assert (attempt.ok, attempt.retriable) == (ok, retriable)


def test_next_outcome_retries_until_the_last_attempt() -> None:
    retry = Attempt.retry("HTTP 500")
    assert next_outcome(1, Attempt.sent(), 5) is Outcome.SENT
    assert next_outcome(1, retry, 5) is Outcome.RETRYING
    assert next_outcome(4, retry, 5) is Outcome.RETRYING
    assert next_outcome(5, retry, 5) is Outcome.FAILED
    assert next_outcome(1, Attempt.permanent("HTTP 400"), 5) is Outcome.FAILED
    assert next_outcome(1, retry, 1) is Outcome.FAILED


def test_outcome_command_is_deterministic(directory: Directory) -> None:
    n = notification(Role.OPERATIONS_MANAGER, Channel.PAGE)
    (delivery,) = plan(n, directory.resolve(n), DeliveryConfig(pager_url="http://p"), "")
    command = outcome_command(delivery, Outcome.RETRYING, 2, "HTTP 500", T0)
    assert command.command_id == "notify:mon-abc:case.opened:operations_manager:page|om:retrying:2"
    assert command.case_id == "mon-abc"
    assert command.type is CommandType.NOTIFICATION_OUTCOME
    assert command.actor == "notifier"
    assert command.at == T0
    assert command.details == {
        "key": n.key,
        "contact": "om",
        "channel": "page",
        "role": "operations_manager",
        "purpose": "case.opened",
        "outcome": "retrying",
        "attempt": 2,
        "error": "HTTP 500",
    }
    assert command == outcome_command(delivery, Outcome.RETRYING, 2, "HTTP 500", T0)
    sent = outcome_command(delivery, Outcome.SENT, 3, "", T0)
    assert sent.command_id.endswith("|om:sent:3")
    assert sent.details["error"] is None


def test_long_keys_still_give_valid_command_ids(directory: Directory) -> None:
    n = notification(key="k" * 200)
    (delivery,) = plan(n, directory.resolve(n), DeliveryConfig(), "")
    first = outcome_command(delivery, Outcome.FAILED, 5, "x", T0)
    assert len(first.command_id) <= 200
    assert first.command_id == outcome_command(delivery, Outcome.FAILED, 5, "x", T0).command_id
    assert first.command_id != outcome_command(delivery, Outcome.FAILED, 4, "x", T0).command_id
