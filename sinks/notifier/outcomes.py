"""Delivery outcomes, pure: what an attempt's answer means, and how an outcome reaches the case engine.

An attempt ends `ok`, `retriable` (worth another try after a backoff) or permanently failed. HTTP: 2xx
sent; 408, 429 and 5xx retry; any other 4xx fails for good (the request itself is wrong). SMTP: 2xx/3xx
sent, 4xx retry, 5xx fail. Connection errors and timeouts retry (the transports decide those).

Each outcome (sent, retrying, failed) becomes a `notification_outcome` command with a deterministic id,
so a replay after a crash repeats ids the case engine already applied instead of adding events.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from schemas.commands import CaseCommand, CommandType
from sinks.notifier.delivery import Delivery

ACTOR = "notifier"
COMMAND_ID_MAX = 200


class Outcome(StrEnum):
    """What became of one delivery (at one attempt)."""

    SENT = "sent"
    RETRYING = "retrying"
    FAILED = "failed"


@dataclass(frozen=True)
class Attempt:
    """The answer to one send attempt."""

    ok: bool
    retriable: bool = False
    """Only for failures: another attempt may succeed."""
    error: str = ""

    @classmethod
    def sent(cls) -> Attempt:
        return cls(ok=True)

    @classmethod
    def retry(cls, error: str) -> Attempt:
        return cls(ok=False, retriable=True, error=error)

    @classmethod
    def permanent(cls, error: str) -> Attempt:
        return cls(ok=False, retriable=False, error=error)


def classify_http(status: int, text: str = "") -> Attempt:
    """An HTTP answer: 2xx sent; 408/429/5xx retry; other statuses fail permanently."""
    if 200 <= status < 300:
        return Attempt.sent()
    error = f"HTTP {status}" + (f": {' '.join(text.split())[:300]}" if text.strip() else "")
    if status in (408, 429) or status >= 500:
        return Attempt.retry(error)
    return Attempt.permanent(error)


def classify_smtp(code: int, message: str = "") -> Attempt:
    """An SMTP reply: 2xx/3xx sent, 4xx retry (transient), 5xx fail (permanent)."""
    if 200 <= code < 400:
        return Attempt.sent()
    error = f"SMTP {code}" + (f": {' '.join(message.split())[:300]}" if message.strip() else "")
    if 400 <= code < 500:
        return Attempt.retry(error)
    return Attempt.permanent(error)


def next_outcome(attempt_no: int, attempt: Attempt, max_attempts: int) -> Outcome:
    """The outcome after attempt number `attempt_no` (1-based) answered `attempt`."""
    if attempt.ok:
        return Outcome.SENT
    if attempt.retriable and attempt_no < max_attempts:
        return Outcome.RETRYING
    return Outcome.FAILED


def command_id(delivery: Delivery, outcome: Outcome, attempt_no: int) -> str:
    """`notify:<key>|<contact>:<outcome>:<attempt>`; hashed when a long key would exceed 200 chars."""
    plain = f"notify:{delivery.ledger_key}:{outcome.value}:{attempt_no}"
    if len(plain) <= COMMAND_ID_MAX:
        return plain
    digest = hashlib.sha256(delivery.ledger_key.encode()).hexdigest()
    return f"notify:sha256:{digest}:{outcome.value}:{attempt_no}"


def outcome_command(
    delivery: Delivery, outcome: Outcome, attempt_no: int, error: str, at: datetime
) -> CaseCommand:
    """The `notification_outcome` command for the case engine (key on case-commands: the case id).

    `attempt_no` 0 means nothing was attempted (the delivery could not be planned).
    """
    notification = delivery.notification
    return CaseCommand(
        command_id=command_id(delivery, outcome, attempt_no),
        case_id=notification.case_id,
        type=CommandType.NOTIFICATION_OUTCOME,
        at=at,
        actor=ACTOR,
        reason=error[:4000] if outcome is not Outcome.SENT else "",
        details={
            "key": notification.key,
            "contact": delivery.contact_id,
            "channel": delivery.channel,
            "role": notification.role.value,
            "purpose": notification.purpose,
            "outcome": outcome.value,
            "attempt": attempt_no,
            "error": error or None,
        },
    )
