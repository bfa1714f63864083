"""Partner help desk emails threaded into the partner's own email (issue 4): engine output through the real
notifier, broker and an aiosmtpd catcher on 127.0.0.1."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest

from fleetcore.settings import Settings
from schemas.cases import CaseSource, Severity
from schemas.commands import CaseCommand, CommandType
from schemas.notifications import Notification, Role
from schemas.topics import Topics
from sinks.notifier.service import NotifierService
from streams.cases import EngineConfig, apply
from tests.helpers import T0
from tests.integration.sinks.notifier.conftest import Catchers, produce

pytestmark = pytest.mark.integration

PARTNER_MID = "<CAF+7Qz.threading-test@mail.partner.example>"


def engine_mails(partner_id: str, sender: str) -> list[Notification]:
    """What the case engine asks for when staff triage, then answer, an email case."""

    def command(type_: CommandType, command_id: str, **fields: Any) -> CaseCommand:
        return CaseCommand(
            command_id=command_id, case_id="mail-case-1", type=type_, at=T0, actor="staff:sam", **fields
        )

    opened = command(
        CommandType.OPEN,
        "open-1",
        source=CaseSource.EMAIL,
        customer_id="acme",
        partner_id=partner_id,
        title="Invoices do not export",
        details={"message_id": PARTNER_MID, "from": f"Partner Desk <{sender}>"},
    )
    case = apply(None, opened, EngineConfig(), "FW-100123").case
    triaged = apply(
        case, command(CommandType.TRIAGE, "triage-1", severity=Severity.SEV3), EngineConfig(), "FW-100123"
    )
    answer = command(CommandType.POST_UPDATE, "answer-1", message="Please send us the export log.")
    answered = apply(triaged.case, answer, EngineConfig(), "FW-100124")
    return triaged.notifications + answered.notifications


def text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


async def test_ticket_and_answer_arrive_in_the_partners_thread(
    kafka_bootstrap: str, topics: Topics, catchers: Catchers, notify_settings: Settings
) -> None:
    mails = engine_mails("northwind", "desk@partner.example")
    assert [n.role for n in mails] == [Role.PARTNER_HELPDESK, Role.PARTNER_HELPDESK]
    produce(kafka_bootstrap, topics.notifications, mails)
    stats = await NotifierService(notify_settings, max_idle_s=1.0, until=lambda s: s.sent >= 2).run()
    assert (stats.sent, stats.failed) == (2, 0)

    received = catchers.mail.messages
    by_purpose = {str(m["X-Fleetwatch-Key"]).split(":")[1]: m for m in received}
    assert sorted(by_purpose) == ["customer.update", "ticket"]
    for message in received:
        assert str(message["To"]) == "Partner Desk <desk@partner.example>"
        assert str(message["In-Reply-To"]) == PARTNER_MID
        assert str(message["References"]) == PARTNER_MID
        assert str(message["Subject"]).startswith("[FW-100123] ")
    assert "ticket FW-100123" in text(by_purpose["ticket"])
    assert text(by_purpose["customer.update"]).startswith("Please send us the export log.")
    raw = [p.read_bytes() for p in sorted(catchers.mail.directory.glob("*.eml"))]
    assert all(f"In-Reply-To: {PARTNER_MID}".encode() in r for r in raw)


async def test_an_unlisted_partner_is_answered_at_the_sender_address(
    kafka_bootstrap: str, topics: Topics, catchers: Catchers, notify_settings: Settings
) -> None:
    mails = engine_mails("unlisted-partner", "nadia@unlisted.example")
    produce(kafka_bootstrap, topics.notifications, mails[:1])
    stats = await NotifierService(notify_settings, max_idle_s=1.0, until=lambda s: s.sent >= 1).run()
    assert (stats.sent, stats.failed) == (1, 0)
    (message,) = catchers.mail.messages
    assert "nadia@unlisted.example" in str(message["To"])
    assert str(message["In-Reply-To"]) == PARTNER_MID
