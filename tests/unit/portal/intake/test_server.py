"""Intake.process with in-memory sinks: what is filed, answered, threaded, dead-lettered, and what a failing
broker or SMTP relay does (no Kafka, no sockets)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from casefile.view import CaseView
from portal.directory import Directory, load_directory
from portal.intake.server import CommandNotSent, Intake, IntakeConfig
from portal.intake.threads import ThreadStore
from schemas.cases import CaseEvent, CaseEventType, CaseSource, CaseState, event_id_for
from schemas.commands import CaseCommand, CommandType
from schemas.deadletter import DeadLetter

PARTNERS = Path(__file__).resolve().parents[4] / "examples" / "partners.yaml"
SUPPORT = "support@fleetwatch.local"
NADIA = "helpdesk@northwind.example"
TOM = "support@telco-isp.example"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.at = T0

    def now(self) -> datetime:
        return self.at

    def scale(self) -> float:
        return 1.0


@dataclass
class Sinks:
    commands: list[CaseCommand] = field(default_factory=list)
    letters: list[tuple[DeadLetter, str]] = field(default_factory=list)
    mails: list[tuple[EmailMessage, str]] = field(default_factory=list)
    kafka_down: bool = False
    smtp_down: bool = False

    async def command(self, command: CaseCommand) -> None:
        if self.kafka_down:
            raise CommandNotSent("broker down")
        self.commands.append(command)

    async def letter(self, letter: DeadLetter, key: str) -> None:
        self.letters.append((letter, key))

    async def mail(self, message: EmailMessage, recipient: str) -> None:
        if self.smtp_down:
            raise ConnectionRefusedError("relay down")
        self.mails.append((message, recipient))


class FakeLookup:
    def __init__(self, *views: CaseView) -> None:
        self._views = list(views)

    def get(self, ref: str) -> CaseView | None:
        return next((v for v in self._views if ref in (v.case_id, v.ticket)), None)

    def views(self) -> list[CaseView]:
        return list(self._views)


@pytest.fixture
def directory() -> Directory:
    return load_directory(PARTNERS)


def make_intake(
    directory: Directory, sinks: Sinks, lookup: FakeLookup | None = None, rate: int = 20
) -> tuple[Intake, FakeClock]:
    clock = FakeClock()
    intake = Intake(
        IntakeConfig(support_address=SUPPORT, max_parts=20, rate_per_hour=rate, portal_url="http://portal"),
        directory,
        send_command=sinks.command,
        send_dead_letter=sinks.letter,
        send_mail=sinks.mail,
        threads=ThreadStore(None),
        lookup=lookup,
        clock=clock,
        wall_clock=clock,
    )
    return intake, clock


def raw(
    sender: str = NADIA,
    subject: str = "Server acme-1 down",
    body: str = "It stopped answering at 10:00.",
    message_id: str | None = "<m1@northwind.example>",
    extra: str = "",
) -> bytes:
    head = f"From: {sender}\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\n"
    if message_id:
        head += f"Message-ID: {message_id}\r\n"
    return (head + extra + "\r\n" + body + "\r\n").encode()


async def test_partner_mail_opens_a_case_and_is_acknowledged(directory: Directory) -> None:
    sinks = Sinks()
    intake, _ = make_intake(directory, sinks)
    reply = await intake.process(raw(), NADIA)
    await intake.drain()
    assert reply.startswith("250 ")
    [command] = sinks.commands
    assert command.type is CommandType.OPEN
    assert command.source is CaseSource.EMAIL
    assert command.severity is None
    assert (command.customer_id, command.partner_id) == ("acme", "northwind-partners")
    assert command.title == "Server acme-1 down"
    assert command.message == "It stopped answering at 10:00."
    assert command.details["from"] == NADIA
    assert command.details["message_id"] == "<m1@northwind.example>"
    assert command.details["attachments"] == "[]"
    assert command.at == T0
    assert command.case_id in reply
    [(ack, to)] = sinks.mails
    assert to == NADIA
    assert f"[FW case {command.case_id}]" in str(ack["Subject"])
    assert intake.stats.opened == 1
    assert intake.stats.answers_sent == 1


async def test_redelivery_opens_nothing_new_and_is_not_answered_twice(directory: Directory) -> None:
    sinks = Sinks()
    intake, _ = make_intake(directory, sinks)
    await intake.process(raw(), NADIA)
    await intake.process(raw(), NADIA)
    await intake.drain()
    assert len(sinks.commands) == 2
    assert sinks.commands[0] == sinks.commands[1]  # same ids: the engine applies it once
    assert len(sinks.mails) == 1


async def test_reply_threads_by_in_reply_to_and_by_tag(directory: Directory) -> None:
    sinks = Sinks()
    intake, _ = make_intake(directory, sinks)
    await intake.process(raw(), NADIA)
    await intake.drain()
    case_id = sinks.commands[0].case_id
    ack_id = str(sinks.mails[0][0]["Message-ID"])
    await intake.process(
        raw(subject="Re: more", message_id="<m2@x>", extra=f"In-Reply-To: {ack_id}\r\n"), NADIA
    )
    await intake.process(raw(subject=f"Re: [FW case {case_id}] again", message_id="<m3@x>"), NADIA)
    await intake.process(raw(subject="Re: again", message_id="<m4@x>", extra="References: <m3@x>\r\n"), NADIA)
    await intake.drain()
    replies = sinks.commands[1:]
    assert [c.type for c in replies] == [CommandType.CUSTOMER_REPLIED] * 3
    assert {c.case_id for c in replies} == {case_id}
    assert len({c.command_id for c in replies}) == 3
    assert replies[0].customer_id is None
    assert replies[0].partner_id is None
    assert all("Added to your case" in str(m["Subject"]) for m, _ in sinks.mails[1:])


async def test_ticket_tag_threads_through_the_read_model(directory: Directory) -> None:
    view = CaseView(case_id="eml-aaaaaaaaaaaaaaaaaaaa", ticket="FW-100123", partner="northwind-partners")
    view.state = CaseState.TRIAGED
    sinks = Sinks()
    intake, _ = make_intake(directory, sinks, FakeLookup(view))
    await intake.process(raw(subject="Re: [FW-100123] Ticket assigned"), NADIA)
    [command] = sinks.commands
    assert (command.type, command.case_id) == (CommandType.CUSTOMER_REPLIED, view.case_id)


async def test_closed_case_is_followed_by_a_new_one(directory: Directory) -> None:
    view = CaseView(case_id="eml-aaaaaaaaaaaaaaaaaaaa", ticket="FW-100123", partner="northwind-partners")
    view.state = CaseState.CLOSED
    sinks = Sinks()
    intake, _ = make_intake(directory, sinks, FakeLookup(view))
    await intake.process(raw(subject="Re: [FW-100123] it is back"), NADIA)
    [command] = sinks.commands
    assert command.type is CommandType.OPEN
    assert command.details["follows"] == view.case_id


async def test_another_partners_case_is_never_threaded(directory: Directory) -> None:
    sinks = Sinks()
    intake, _ = make_intake(directory, sinks)
    await intake.process(raw(), NADIA)
    northwind_case = sinks.commands[0].case_id
    await intake.process(raw(sender=TOM, subject=f"[FW case {northwind_case}] hi", message_id="<t1@x>"), TOM)
    telco = sinks.commands[1]
    assert telco.type is CommandType.OPEN
    assert telco.case_id != northwind_case
    assert telco.partner_id == "telco-isp"


async def test_unknown_sender_gets_a_polite_reply_and_no_case(directory: Directory) -> None:
    sinks = Sinks()
    intake, _ = make_intake(directory, sinks)
    reply = await intake.process(raw(sender="someone@gmail.example"), "someone@gmail.example")
    await intake.drain()
    assert reply.startswith("250 ")
    assert sinks.commands == []
    [(answer, to)] = sinks.mails
    assert to == "someone@gmail.example"
    assert "own provider" in answer.get_body().get_content()  # type: ignore[union-attr]


async def test_auto_replies_are_neither_filed_nor_answered(directory: Directory) -> None:
    sinks = Sinks()
    intake, _ = make_intake(directory, sinks)
    await intake.process(raw(extra="Auto-Submitted: auto-replied\r\n"), NADIA)
    await intake.process(raw(extra="Precedence: bulk\r\n", message_id="<bulk@x>"), NADIA)
    await intake.drain()
    assert [c.type for c in sinks.commands] == [CommandType.OPEN]  # the bulk one is filed, silently
    assert sinks.mails == []


async def test_rate_limit_silences_but_still_files(directory: Directory) -> None:
    sinks = Sinks()
    intake, clock = make_intake(directory, sinks, rate=2)
    for i in range(4):
        await intake.process(raw(message_id=f"<r{i}@x>"), NADIA)
    clock.at = T0 + timedelta(hours=1, seconds=1)
    await intake.process(raw(message_id="<late@x>"), NADIA)
    await intake.drain()
    assert len(sinks.commands) == 5
    assert len(sinks.mails) == 3
    assert intake.stats.rate_limited == 2


async def test_malformed_mail_is_dead_lettered_and_refused(directory: Directory) -> None:
    sinks = Sinks()
    intake, _ = make_intake(directory, sinks)
    parts = "".join("--B\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(100))
    bomb = raw(extra="Content-Type: multipart/mixed; boundary=B\r\n", body=parts + "--B--")
    assert (await intake.process(bomb, NADIA)).startswith("550 ")
    assert (await intake.process(b"\x00\xff garbage", NADIA)).startswith("550 ")
    assert [letter.reason for letter, _ in sinks.letters] == [
        "too many MIME parts (more than 20)",
        "no usable From address",
    ]
    assert sinks.letters[0][1].startswith("smtp:intake:")
    assert sinks.commands == []


async def test_broker_down_is_a_temporary_failure(directory: Directory) -> None:
    sinks = Sinks(kafka_down=True)
    intake, _ = make_intake(directory, sinks)
    assert (await intake.process(raw(), NADIA)).startswith("451 ")
    sinks.kafka_down = False
    assert (await intake.process(raw(), NADIA)).startswith("250 ")  # the retry files it and answers once
    await intake.drain()
    assert len(sinks.commands) == 1
    assert len(sinks.mails) == 1


async def test_unexpected_errors_are_answered_451(directory: Directory) -> None:
    sinks = Sinks()
    intake, _ = make_intake(directory, sinks)

    async def broken(command: CaseCommand) -> None:
        raise RuntimeError("bug")

    intake.send_command = broken
    assert (await intake.process(raw(), NADIA)).startswith("451 ")
    assert intake.stats.errors == 1


async def test_smtp_relay_down_does_not_fail_the_mail(directory: Directory) -> None:
    sinks = Sinks(smtp_down=True)
    intake, _ = make_intake(directory, sinks)
    intake.answer_backoff_s = 0.0
    assert (await intake.process(raw(), NADIA)).startswith("250 ")
    await intake.drain()
    assert intake.stats.answers_failed == 1
    assert len(sinks.commands) == 1


async def test_named_customer_and_attachments(directory: Directory) -> None:
    sinks = Sinks()
    intake, _ = make_intake(directory, sinks)
    message = EmailMessage()
    message["From"] = NADIA
    message["Subject"] = "Slow"
    message["Message-ID"] = "<att@x>"
    message.set_content("customer: umbrella\nsee the log")
    message.add_attachment(b"x" * 300, maintype="application", subtype="zip", filename="logs.zip")
    await intake.process(message.as_bytes(), NADIA)
    [command] = sinks.commands
    assert command.customer_id == "umbrella"
    assert command.details["attachments"] == '[{"name": "logs.zip", "type": "application/zip", "size": 300}]'
    assert command.details["attachment_count"] == 1


async def test_the_case_engine_accepts_what_the_intake_sends(directory: Directory) -> None:
    """The commands fit the engine's contract: the open makes a NEW email case, the reply is not rejected,
    the redelivered open changes nothing."""
    from streams.cases import EngineConfig, apply

    sinks = Sinks()
    intake, clock = make_intake(directory, sinks)
    await intake.process(raw(), NADIA)
    await intake.process(raw(), NADIA)
    await intake.drain()
    ack_id = str(sinks.mails[0][0]["Message-ID"])
    clock.at = T0 + timedelta(minutes=5)
    await intake.process(raw(message_id="<m2@x>", extra=f"In-Reply-To: {ack_id}\r\n"), NADIA)
    opened, again, replied = sinks.commands
    config = EngineConfig()
    first = apply(None, opened, config, "FW-100000")
    assert first.case is not None
    assert first.case.state is CaseState.NEW
    assert first.case.source is CaseSource.EMAIL
    assert [e.type for e in first.events] == [CaseEventType.CASE_OPENED]
    assert first.events[0].details["message_id"] == "<m1@northwind.example>"
    assert apply(first.case, again, config, "FW-100001").events == []
    answer = apply(first.case, replied, config, "FW-100001")
    assert [e.type for e in answer.events] == [CaseEventType.CUSTOMER_REPLIED]


async def test_in_reply_to_found_through_the_read_model(directory: Directory) -> None:
    """A reply whose parent the thread store does not know (another machine filed it) is matched by the
    `message_id` the case's events record."""
    case_id = "eml-bbbbbbbbbbbbbbbbbbbb"
    view = CaseView(case_id=case_id)
    view.apply(
        CaseEvent(
            event_id=event_id_for(case_id, CaseEventType.CASE_OPENED),
            case_id=case_id,
            type=CaseEventType.CASE_OPENED,
            at=T0,
            actor=f"email:{NADIA}",
            source=CaseSource.EMAIL,
            customer_id="acme",
            partner_id="northwind-partners",
            severity=None,
            details={"message_id": "<elsewhere@northwind.example>"},
        )
    )
    sinks = Sinks()
    intake, _ = make_intake(directory, sinks, FakeLookup(view))
    extra = "In-Reply-To: <unknown@x>\r\nReferences: <elsewhere@northwind.example> <unknown@x>\r\n"
    await intake.process(raw(subject="Re: hello", message_id="<r@x>", extra=extra), NADIA)
    await intake.process(raw(sender=TOM, subject="Re: hello", message_id="<t@x>", extra=extra), TOM)
    first, second = sinks.commands
    assert (first.type, first.case_id) == (CommandType.CUSTOMER_REPLIED, case_id)
    assert (second.type, second.partner_id) == (CommandType.OPEN, "telco-isp")  # not Tom's case
