"""Intake.process with in-memory sinks: what is filed, answered, threaded, dead-lettered, and what a failing
broker or SMTP relay does (no Kafka, no sockets)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from casefile.view import CaseView
from portal.directory import (
    UNAUTHENTICATED_CUSTOMER,
    Directory,
    MailAuth,
    MailAuthRequirement,
    load_directory,
)
from portal.intake.server import CommandNotSent, Intake, IntakeConfig
from portal.intake.threads import ThreadStore
from portal.intake.verify import DnsUnavailable, TxtLookup
from schemas.cases import CaseEvent, CaseEventType, CaseSource, CaseState, event_id_for
from schemas.commands import CaseCommand, CommandType
from schemas.deadletter import DeadLetter
from tests.mailauth import DkimKey

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
    directory: Directory,
    sinks: Sinks,
    lookup: FakeLookup | None = None,
    rate: int = 20,
    *,
    portal_url: str = "http://portal",
    dns_lookup: TxtLookup | None = None,
    trusted: tuple[str, ...] = (),
) -> tuple[Intake, FakeClock]:
    clock = FakeClock()
    config = IntakeConfig(
        support_address=SUPPORT,
        max_parts=20,
        rate_per_hour=rate,
        portal_url=portal_url,
        trusted_authserv_ids=trusted,
    )
    intake = Intake(
        config,
        directory,
        send_command=sinks.command,
        send_dead_letter=sinks.letter,
        send_mail=sinks.mail,
        threads=ThreadStore(None),
        lookup=lookup,
        clock=clock,
        wall_clock=clock,
        dns_lookup=dns_lookup,
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


# -- who is speaking, and whose thread it is -----------------------------------------------------------------


def requiring(directory: Directory, partner_id: str, require: MailAuthRequirement) -> Directory:
    partner = directory.partners[partner_id].model_copy(update={"mail_auth": MailAuth(require=require)})
    return directory.model_copy(update={"partners": {**directory.partners, partner_id: partner}})


async def test_spoofed_from_with_a_foreign_envelope_never_joins_the_partners_case(
    directory: Directory,
) -> None:
    """`From: helpdesk@northwind…` sent with a Telco envelope and Northwind's case tag: kept for staff as a
    new case of no partner, not added to Northwind's case, and nothing is written to the forged address."""
    sinks = Sinks()
    intake, _ = make_intake(directory, sinks)
    await intake.process(raw(), NADIA)
    await intake.drain()
    northwind_case = sinks.commands[0].case_id
    spoof = raw(
        subject=f"Re: [FW case {northwind_case}] please close it", message_id="<spoof@telco-isp.example>"
    )
    reply = await intake.process(spoof, TOM)
    await intake.drain()
    assert reply.startswith("250 ")
    kept = sinks.commands[1]
    assert kept.type is CommandType.OPEN
    assert kept.case_id != northwind_case
    assert (kept.customer_id, kept.partner_id) == (UNAUTHENTICATED_CUSTOMER, None)
    assert kept.details["unauthenticated"] == (
        "envelope sender domain telco-isp.example is not aligned with From domain northwind.example"
    )
    assert kept.details["claimed_from"] == NADIA
    assert kept.details["claimed_partner"] == "northwind-partners"
    assert kept.details["envelope_from"] == TOM
    assert "from" not in kept.details  # the engine writes to `from` (the requester): never to a forged one
    assert kept.message == "It stopped answering at 10:00."
    assert len(sinks.mails) == 1  # only the acknowledgement of the real case: no backscatter
    assert intake.stats.unauthenticated == 1
    # redelivered: the same ids again, still unanswered
    await intake.process(spoof, TOM)
    await intake.drain()
    assert sinks.commands[2] == kept
    assert len(sinks.mails) == 1
    # Northwind's real reply is still threaded into its case
    await intake.process(raw(subject=f"Re: [FW case {northwind_case}] more", message_id="<m9@x>"), NADIA)
    assert (sinks.commands[3].type, sinks.commands[3].case_id) == (
        CommandType.CUSTOMER_REPLIED,
        northwind_case,
    )


async def test_a_message_id_reused_by_another_partner_neither_silences_nor_takes_over(
    directory: Directory,
) -> None:
    sinks = Sinks()
    intake, _ = make_intake(directory, sinks)
    await intake.process(raw(), NADIA)  # <m1@northwind.example> opens Northwind's case
    telco_mail = raw(sender=TOM, subject="Our router is down", message_id="<m1@northwind.example>")
    await intake.process(telco_mail, TOM)
    await intake.drain()
    northwind, telco = sinks.commands
    assert (telco.type, telco.partner_id) == (CommandType.OPEN, "telco-isp")
    assert telco.case_id != northwind.case_id
    assert [to for _, to in sinks.mails] == [NADIA, TOM]  # Telco's mail is answered, not taken for a repeat
    extra = "In-Reply-To: <m1@northwind.example>\r\n"
    await intake.process(raw(subject="Re: Server acme-1 down", message_id="<m2@x>", extra=extra), NADIA)
    follow_up = sinks.commands[2]
    assert (follow_up.type, follow_up.case_id) == (CommandType.CUSTOMER_REPLIED, northwind.case_id)


async def test_the_read_model_only_offers_the_partners_own_cases_for_a_message_id(
    directory: Directory,
) -> None:
    """Two cases record the same Message-ID (Telco reused Northwind's): Northwind's reply finds its own,
    whichever the read model lists first."""
    mid = "<shared@northwind.example>"
    telco, northwind = (
        _opened_view(case_id, partner, customer, mid)
        for case_id, partner, customer in (
            ("eml-cccccccccccccccccccc", "telco-isp", "globex"),
            ("eml-dddddddddddddddddddd", "northwind-partners", "acme"),
        )
    )
    sinks = Sinks()
    intake, _ = make_intake(directory, sinks, FakeLookup(telco, northwind))
    await intake.process(raw(subject="Re: hello", message_id="<r@x>", extra=f"In-Reply-To: {mid}\r\n"), NADIA)
    [command] = sinks.commands
    assert (command.type, command.case_id) == (CommandType.CUSTOMER_REPLIED, northwind.case_id)


def _opened_view(case_id: str, partner: str, customer: str, message_id: str) -> CaseView:
    view = CaseView(case_id=case_id)
    view.apply(
        CaseEvent(
            event_id=event_id_for(case_id, CaseEventType.CASE_OPENED),
            case_id=case_id,
            type=CaseEventType.CASE_OPENED,
            at=T0,
            source=CaseSource.EMAIL,
            customer_id=customer,
            partner_id=partner,
            severity=None,
            details={"message_id": message_id},
        )
    )
    return view


async def test_dkim_policy_files_signed_mail_and_keeps_unsigned_mail_for_staff(directory: Directory) -> None:
    key = DkimKey("northwind.example")
    strict = requiring(directory, "northwind-partners", MailAuthRequirement.DKIM)
    sinks = Sinks()
    intake, _ = make_intake(strict, sinks, dns_lookup=key.lookup)
    await intake.process(key.sign(raw()), NADIA)
    await intake.process(raw(message_id="<unsigned@x>"), NADIA)  # aligned envelope, but no signature
    forged = DkimKey("northwind.example").sign(raw(message_id="<forged@x>"))  # a key DNS does not publish
    await intake.process(forged, NADIA)
    await intake.drain()
    signed, unsigned, bad = sinks.commands
    assert (signed.partner_id, signed.customer_id) == ("northwind-partners", "acme")
    assert unsigned.customer_id == bad.customer_id == UNAUTHENTICATED_CUSTOMER
    assert unsigned.details["unauthenticated"] == "policy require=dkim not met: no DKIM signature"
    assert "DKIM d=northwind.example failed" in str(bad.details["unauthenticated"])
    assert [to for _, to in sinks.mails] == [NADIA]  # only the signed mail is acknowledged
    # the other partner keeps its own policy (none): its mail is filed as before
    await intake.process(raw(sender=TOM, message_id="<t@x>"), TOM)
    assert sinks.commands[-1].partner_id == "telco-isp"


async def test_authres_policy_honours_only_the_trusted_receiving_mta(directory: Directory) -> None:
    strict = requiring(directory, "northwind-partners", MailAuthRequirement.AUTHRES)
    sinks = Sinks()
    intake, _ = make_intake(strict, sinks, trusted=("mx.fleetwatch.local",))
    passed = "Authentication-Results: mx.fleetwatch.local; dmarc=pass header.from=northwind.example\r\n"
    received = (
        "Received: from mail.northwind.example by mx.fleetwatch.local; Mon, 7 Dec 2026 10:00:00 +0000\r\n"
    )
    await intake.process(received.encode() + passed.encode() + raw(), NADIA)
    forged = raw(message_id="<forged@x>", extra=passed)  # written by the sender, below its own From
    await intake.process(received.encode() + forged, NADIA)
    ok, kept = sinks.commands
    assert ok.partner_id == "northwind-partners"
    assert kept.customer_id == UNAUTHENTICATED_CUSTOMER
    assert "no Authentication-Results from a trusted receiving MTA" in str(kept.details["unauthenticated"])


async def test_dns_outage_is_answered_451_and_files_nothing(directory: Directory) -> None:
    def outage(name: bytes | str, timeout: float = 5) -> bytes | None:
        raise DnsUnavailable("DNS lookup failed: Timeout")

    strict = requiring(directory, "northwind-partners", MailAuthRequirement.DKIM)
    sinks = Sinks()
    intake, _ = make_intake(strict, sinks, dns_lookup=outage)
    reply = await intake.process(DkimKey("northwind.example").sign(raw()), NADIA)
    assert reply.startswith("451 4.7.5")
    assert sinks.commands == []
    assert sinks.mails == []


async def test_the_engine_opens_the_kept_case_and_only_staff_may_see_it(directory: Directory) -> None:
    from streams.cases import EngineConfig, apply

    sinks = Sinks()
    intake, _ = make_intake(directory, sinks)
    await intake.process(raw(), TOM)
    [kept] = sinks.commands
    decision = apply(None, kept, EngineConfig(), "FW-100000")
    assert decision.case is not None
    assert decision.case.requester is None  # nobody to write to
    assert decision.notifications == []
    [opened] = decision.events
    assert opened.details["unauthenticated"] == kept.details["unauthenticated"]
    view = CaseView(case_id=kept.case_id)
    view.apply(opened)
    for partner_user in ("nadia", "tom"):
        assert not directory.may_see(directory.users[partner_user], view.partner, view.customer)
    assert directory.may_see(directory.users["sam"], view.partner, view.customer)


async def test_acknowledgement_links_follow_the_portal_url(directory: Directory) -> None:
    sinks = Sinks()
    intake, _ = make_intake(directory, sinks, portal_url="https://support.example.com")
    await intake.process(raw(), NADIA)
    await intake.drain()
    [(ack, _)] = sinks.mails
    text = str(ack.get_body().get_content())  # type: ignore[union-attr]
    assert "https://support.example.com/kb/server-unreachable" in text
    assert "https://support.example.com/kb/slow-responses" in text
    assert "127.0.0.1" not in text
