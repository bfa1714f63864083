"""The email intake over real SMTP on 127.0.0.1 against the real broker.

The intake (`IntakeServer`, read model included) runs on its own event loop in a thread; emails go in with
smtplib; its answers go out through a `MailCatcher` (the outbound SMTP server); commands and dead letters
are read back from the test's topics. No case engine runs: a ticket is made known by writing a case event
to the cases topic, as the engine would.
"""

from __future__ import annotations

import asyncio
import email.policy
import random
import smtplib
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from kafka import KafkaProducer

from fleetcore.settings import Settings
from fleetwatch.mailcatcher import MailCatcher
from portal.intake.server import IntakeServer
from schemas.cases import CaseEvent, CaseEventType, CaseSource, CaseState, Severity, chained, event_id_for
from schemas.commands import CaseCommand, CommandType
from schemas.deadletter import DeadLetter
from schemas.topics import Topics
from tests.helpers import T0, TopicReader, wait_for

pytestmark = pytest.mark.integration

PARTNERS = Path(__file__).resolve().parents[4] / "examples" / "partners.yaml"
SUPPORT = "support@fleetwatch.local"
NADIA = "helpdesk@northwind.example"
LINKS = ("http://127.0.0.1:8080/kb/server-unreachable", "http://127.0.0.1:8080/kb/slow-responses")


class Running:
    """An IntakeServer on its own loop in a daemon thread, plus the catcher it answers through."""

    def __init__(self, settings: Settings, catcher: MailCatcher, bootstrap: str, topics: Topics) -> None:
        self.catcher = catcher
        self.bootstrap = bootstrap
        self.topics = topics
        self.server = IntakeServer(settings)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="intake-test", daemon=True)
        self._commands: TopicReader | None = None
        self._letters: TopicReader | None = None

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(60)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        for reader in (self._commands, self._letters):
            if reader is not None:
                reader.close()

    def send(self, message: bytes | EmailMessage, sender: str = NADIA, to: str = SUPPORT) -> None:
        """Deliver one email with smtplib (raises on a refusal, like any SMTP client)."""
        raw = message.as_bytes() if isinstance(message, EmailMessage) else message
        with smtplib.SMTP("127.0.0.1", self.server.port, timeout=60) as client:
            client.sendmail(sender, [to], raw)

    def commands(self, count: int) -> list[CaseCommand]:
        if self._commands is None:
            self._commands = TopicReader(self.bootstrap, self.topics.case_commands)
        reader = self._commands
        wait_for(lambda: len(reader.poll()) >= count, 60, f"{count} commands")
        return [CaseCommand.model_validate_json(value or b"") for _, value in reader.messages]

    def dead_letters(self, count: int) -> list[DeadLetter]:
        if self._letters is None:
            self._letters = TopicReader(self.bootstrap, self.topics.dead_letter)
        reader = self._letters
        wait_for(lambda: len(reader.poll()) >= count, 60, f"{count} dead letters")
        return [DeadLetter.model_validate_json(value or b"") for _, value in reader.messages]

    def answers(self, count: int) -> list[EmailMessage]:
        def enough() -> list[EmailMessage] | None:
            messages = self.catcher.messages
            return messages if len(messages) >= count else None

        return wait_for(enough, 60, f"{count} answers from intake")

    def send_undeclared(self, raw: bytes, sender: str = NADIA) -> tuple[int, bytes]:
        """MAIL FROM without SIZE, so only the DATA phase can find the message too big."""
        with smtplib.SMTP("127.0.0.1", self.server.port, timeout=60) as client:
            client.ehlo()
            client.mail(sender)
            client.rcpt(SUPPORT)
            client.putcmd("data")
            code, _ = client.getreply()
            assert code == 354
            client.send(raw + b"\r\n.\r\n")
            return client.getreply()


@pytest.fixture
def intake(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> Iterator[Running]:
    catcher = MailCatcher(tmp_path / "mail").start()
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topics.prefix,
        create_topics=False,
        data_dir=tmp_path / "data",
        partners_file=PARTNERS,
        intake_host="127.0.0.1",
        intake_port=0,
        smtp_host="127.0.0.1",
        smtp_port=catcher.port,
    )
    running = Running(settings, catcher, kafka_bootstrap, topics)
    running.start()
    try:
        yield running
    finally:
        running.stop()
        catcher.stop()


def partner_mail(
    subject: str = "Server acme-1 down",
    body: str = "acme-1 has not answered since 10:00.",
    message_id: str = "<first@northwind.example>",
    sender: str = NADIA,
    **headers: str,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Nadia <{sender}>"
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Message-ID"] = message_id
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def body_of(message: EmailMessage) -> str:
    part = message.get_body()
    assert part is not None
    return str(part.get_content())


def test_partner_email_opens_a_case_and_is_acknowledged(intake: Running) -> None:
    intake.send(partner_mail())
    [command] = intake.commands(1)
    assert command.type is CommandType.OPEN
    assert command.source is CaseSource.EMAIL
    assert command.severity is None
    assert command.customer_id == "acme"
    assert command.partner_id == "northwind-partners"
    assert command.title == "Server acme-1 down"
    assert command.message == "acme-1 has not answered since 10:00."
    assert command.details["from"] == NADIA
    assert command.details["message_id"] == "<first@northwind.example>"
    assert command.case_id.startswith("eml-")
    [ack] = intake.answers(1)
    assert ack["To"] == NADIA
    assert ack["Subject"] == f"[FW case {command.case_id}] Received: Server acme-1 down"
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == "<first@northwind.example>"
    assert "<first@northwind.example>" in ack["References"]
    text = body_of(ack)
    assert all(link in text for link in LINKS)
    assert "contact your own provider" in text


def test_replies_thread_into_the_case(intake: Running, kafka_bootstrap: str, topics: Topics) -> None:
    intake.send(partner_mail())
    [opened] = intake.commands(1)
    [ack] = intake.answers(1)
    reply = partner_mail(
        "Re: " + str(ack["Subject"]),
        "It is back since 11:00.",
        "<second@northwind.example>",
        In_Reply_To=str(ack["Message-ID"]),
        References=f"<first@northwind.example> {ack['Message-ID']}",
    )
    intake.send(reply)
    tagged = partner_mail(f"[FW case {opened.case_id}] one more thing", "logs attached", "<third@x>")
    intake.send(tagged)
    # the engine triaged the case and emailed ticket FW-100123 (written here as the engine would)
    event = CaseEvent(
        event_id=event_id_for(opened.case_id, CaseEventType.TRIAGED),
        case_id=opened.case_id,
        type=CaseEventType.TRIAGED,
        at=T0,
        actor="staff:sam",
        source=CaseSource.EMAIL,
        customer_id="acme",
        partner_id="northwind-partners",
        severity=Severity.SEV2,
        state=CaseState.TRIAGED,
        ticket="FW-100123",
    )
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    producer.send(
        topics.cases, key=opened.case_id.encode(), value=chained(event, 0, "").model_dump_json().encode()
    ).get(30)
    producer.close()
    readmodel = intake.server._readmodel
    wait_for(lambda: readmodel.get("FW-100123"), 60, "the read model to know the ticket")
    intake.send(partner_mail("Re: [FW-100123] Ticket assigned", "thanks", "<fourth@x>"))
    commands = intake.commands(4)
    assert [c.type for c in commands] == [CommandType.OPEN] + [CommandType.CUSTOMER_REPLIED] * 3
    assert {c.case_id for c in commands} == {opened.case_id}
    assert [c.message for c in commands[1:]] == ["It is back since 11:00.", "logs attached", "thanks"]
    answers = intake.answers(4)
    assert all(str(a["Subject"]).startswith(f"[FW case {opened.case_id}] Added") for a in answers[1:])


def test_unknown_sender_gets_a_polite_reply_and_no_case(intake: Running, kafka_bootstrap: str) -> None:
    intake.send(partner_mail(sender="enduser@gmail.example"), sender="enduser@gmail.example")
    [answer] = intake.answers(1)
    assert answer["To"] == "enduser@gmail.example"
    assert "contact your own provider" in body_of(answer)
    assert "register" in body_of(answer)
    assert intake.server.intake.stats.unknown == 1
    assert _end_offset(kafka_bootstrap, intake.topics.case_commands) == 0


def test_auto_replied_mail_gets_no_reply(intake: Running) -> None:
    intake.send(partner_mail("Out of office", Auto_Submitted="auto-replied"))
    intake.send(partner_mail("Out of office", message_id="<oof2@x>", X_Autoreply="yes"))
    intake.send(partner_mail("bulk", message_id="<bulk@x>", Precedence="bulk"))
    intake.send(partner_mail(sender="someone@else.example"), sender="someone@else.example")  # the marker
    answers = intake.answers(1)
    assert [a["To"] for a in answers] == ["someone@else.example"]
    [filed] = intake.commands(1)  # the bulk mail is filed, silently; the auto-replies are not
    assert filed.title == "bulk"
    assert intake.server.intake.stats.ignored == 2


def test_hostile_mail_never_crashes_the_server(intake: Running) -> None:
    rng = random.Random(7)
    codes: list[int] = []

    def attempt(raw: bytes) -> None:
        try:
            intake.send(raw)
            codes.append(250)
        except smtplib.SMTPResponseException as exc:
            codes.append(exc.smtp_code)

    for i in range(10):  # random bytes, half of them in short lines so they reach the parser
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(10, 5000)))
        if i % 2:
            noise = b"\r\n".join(noise[k : k + 80] for k in range(0, len(noise), 80))
        attempt(noise)
    good = partner_mail(message_id="<fuzz@x>").as_bytes()
    multipart = (
        b"From: helpdesk@northwind.example\r\nSubject: cut\r\nMessage-ID: <cut@x>\r\n"
        b"Content-Type: multipart/mixed; boundary=ZZ\r\n\r\n"
        b"--ZZ\r\nContent-Type: text/plain\r\n\r\nbody\r\n--ZZ\r\n"
    )
    for cut in (5, 60, len(multipart) - 3):  # truncated multiparts
        attempt(multipart[:cut])
    attempt(good[: len(good) // 2])
    part = b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    bomb = (
        b"From: helpdesk@northwind.example\r\nSubject: bomb\r\nMessage-ID: <bomb@x>\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n" + part * 10000 + b"--B--\r\n"
    )
    with pytest.raises(smtplib.SMTPDataError) as too_many:
        intake.send(bomb)
    assert too_many.value.smtp_code == 550
    head = partner_mail(message_id="<huge@x>").as_bytes(policy=email.policy.SMTP)
    huge = head + (b"x" * 998 + b"\r\n") * 21000  # 21 MB
    with pytest.raises(smtplib.SMTPSenderRefused) as declared:  # smtplib declares SIZE: refused at MAIL
        intake.send(huge)
    assert declared.value.smtp_code == 552
    assert intake.send_undeclared(huge)[0] == 552  # refused after DATA
    injected = (
        b"From: helpdesk@northwind.example\r\nSubject: =?utf-8?q?hi=0D=0ABcc:_victim@example.com?=\r\n"
        b"Message-ID: <inj@x>\r\n\r\nbody\r\n"
    )
    intake.send(injected)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        intake.send(partner_mail(message_id="<other@x>"), to="someone@fleetwatch.local")

    intake.send(partner_mail("after the storm", message_id="<good@x>"))
    titles = [c.title for c in intake.commands(2) if c.type is CommandType.OPEN]
    assert "after the storm" in titles
    injected_ack = next(a for a in intake.answers(2) if "hi Bcc" in str(a["Subject"]))
    assert injected_ack["Bcc"] is None
    letters = intake.dead_letters(2)
    reasons = {letter.reason for letter in letters}
    assert "too many MIME parts (more than 50)" in reasons
    assert "no usable From address" in reasons
    assert all(letter.consumer == "intake" for letter in letters)
    assert set(codes) <= {250, 500, 550}, codes  # 500: a line over 1000 bytes (aiosmtpd), 550: unusable
    assert 250 not in codes[:10], codes
    assert intake.server.intake.stats.errors == 0


def _end_offset(bootstrap: str, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()
