"""The email intake over real SMTP on 127.0.0.1 against the real broker.

The intake (`IntakeServer`, read model included) runs on its own event loop in a thread; emails go in with
smtplib; its answers go out through a `MailCatcher` (the outbound SMTP server); commands and dead letters
are read back from the test's topics. No case engine runs: a ticket is made known by writing a case event
to the cases topic, as the engine would (or the engine's own pure `apply` turns the intake's commands into
the events).

Sender authentication with real parts: DKIM signatures made with a generated key, verified by the intake
through `intake_dns_resolver` pointing at a DNS server on 127.0.0.1 (`tests.mailauth.DnsStub`); spoofed mail
kept for staff and shown by a real portal's staff console, never to a partner.
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
import yaml
from kafka import KafkaProducer

from casefile.view import CaseView
from fleetcore.settings import Settings
from fleetwatch.mailcatcher import MailCatcher
from portal.directory import UNAUTHENTICATED_CUSTOMER
from portal.intake.server import IntakeServer
from schemas.cases import CaseEvent, CaseEventType, CaseSource, CaseState, Severity, chained, event_id_for
from schemas.commands import CaseCommand, CommandType
from schemas.deadletter import DeadLetter
from schemas.topics import Topics
from streams.cases import Case, EngineConfig, apply
from tests.helpers import T0, TopicReader, wait_for
from tests.integration.portal.client import PortalClient
from tests.integration.portal.conftest import USERS, RunningPortal
from tests.mailauth import DkimKey, DnsStub

pytestmark = pytest.mark.integration

PARTNERS = Path(__file__).resolve().parents[4] / "examples" / "partners.yaml"
SUPPORT = "support@fleetwatch.local"
NADIA = "helpdesk@northwind.example"
TOM = "support@telco-isp.example"
PORTAL_URL = "https://support.fleetwatch.example"
LINKS = (f"{PORTAL_URL}/kb/server-unreachable", f"{PORTAL_URL}/kb/slow-responses")


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


def intake_settings(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, smtp_port: int, **extra: object
) -> Settings:
    values: dict[str, object] = {
        "kafka_bootstrap": kafka_bootstrap,
        "topic_prefix": topics.prefix,
        "create_topics": False,
        "data_dir": tmp_path / "data",
        "partners_file": PARTNERS,
        "intake_host": "127.0.0.1",
        "intake_port": 0,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "portal_public_url": PORTAL_URL,
    }
    return Settings.model_validate({**values, **extra})


@pytest.fixture
def intake(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> Iterator[Running]:
    catcher = MailCatcher(tmp_path / "mail").start()
    settings = intake_settings(kafka_bootstrap, topics, tmp_path, catcher.port)
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


# -- who is speaking -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def northwind_key() -> DkimKey:
    return DkimKey("northwind.example")


@pytest.fixture
def signed_intake(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, northwind_key: DkimKey
) -> Iterator[Running]:
    """An intake whose directory requires DKIM of Northwind, its keys served by a DNS server on 127.0.0.1."""
    dns = DnsStub({northwind_key.name: northwind_key.txt}).start()
    data = yaml.safe_load(PARTNERS.read_text())
    data["partners"]["northwind-partners"]["mail_auth"] = {"require": "dkim"}
    partners = tmp_path / "partners.yaml"
    partners.write_text(yaml.safe_dump(data))
    catcher = MailCatcher(tmp_path / "mail").start()
    settings = intake_settings(
        kafka_bootstrap,
        topics,
        tmp_path,
        catcher.port,
        partners_file=partners,
        intake_dns_resolver=dns.address,
        intake_dns_timeout_s=2.0,
    )
    running = Running(settings, catcher, kafka_bootstrap, topics)
    running.start()
    try:
        yield running
    finally:
        running.stop()
        catcher.stop()
        dns.stop()


def test_dkim_signed_mail_is_filed_and_unsigned_or_forged_mail_is_kept(
    signed_intake: Running, northwind_key: DkimKey
) -> None:
    signed = northwind_key.sign(partner_mail().as_bytes())
    signed_intake.send(signed)
    signed_intake.send(partner_mail(message_id="<unsigned@northwind.example>"))
    forged = DkimKey("northwind.example").sign(
        partner_mail(message_id="<forged@northwind.example>").as_bytes()
    )
    signed_intake.send(forged)
    signed_intake.send(partner_mail(sender=TOM, message_id="<marker@telco-isp.example>"), sender=TOM)
    by_id = {c.details["message_id"]: c for c in signed_intake.commands(4)}  # partitions: any order
    names = ("first@northwind.example", "unsigned@northwind.example", "forged@northwind.example")
    filed, unsigned, bad = (by_id[f"<{name}>"] for name in names)
    telco = by_id["<marker@telco-isp.example>"]
    assert (filed.type, filed.partner_id, filed.customer_id) == (
        CommandType.OPEN,
        "northwind-partners",
        "acme",
    )
    for kept in (unsigned, bad):
        assert (kept.partner_id, kept.customer_id) == (None, UNAUTHENTICATED_CUSTOMER)
    assert unsigned.details["unauthenticated"] == "policy require=dkim not met: no DKIM signature"
    assert "DKIM d=northwind.example failed" in str(bad.details["unauthenticated"])
    assert telco.partner_id == "telco-isp"
    answers = signed_intake.answers(2)
    assert sorted(str(a["To"]) for a in answers) == [NADIA, TOM]  # the kept mails got nothing
    assert signed_intake.server.intake.stats.unauthenticated == 2


def publish_decisions(portal: RunningPortal, commands: list[CaseCommand]) -> list[str]:
    """The case engine's events for `commands` (each opening a case or answering one) on the cases topic;
    the case ids, once the portal's read model shows them."""
    config = EngineConfig()
    cases: dict[str, Case | None] = {}
    producer = KafkaProducer(bootstrap_servers=portal.settings.kafka_bootstrap, acks="all")
    for number, command in enumerate(commands):
        decision = apply(cases.get(command.case_id), command, config, f"FW-{100000 + number}")
        cases[command.case_id] = decision.case
        for event in decision.events:
            producer.send(
                portal.topics.cases, key=event.case_id.encode(), value=event.model_dump_json().encode()
            )
    producer.flush(30)
    producer.close()
    for case_id in cases:

        def shown(wanted: str = case_id) -> CaseView | None:
            return portal.readmodel.get(wanted)

        wait_for(shown, 60, f"the read model to show {case_id}")
    return list(cases)


async def test_spoofed_mail_is_kept_for_staff_and_partners_never_see_it(
    intake: Running, portal: RunningPortal
) -> None:
    intake.send(partner_mail())
    [opened] = intake.commands(1)
    spoof = partner_mail(f"Re: [FW case {opened.case_id}] please close this case", message_id="<spoof@x>")
    intake.send(spoof, sender=TOM)  # a Telco envelope, Northwind's From and case tag
    reused = partner_mail("Telco router down", message_id="<first@northwind.example>", sender=TOM)
    intake.send(reused, sender=TOM)  # Telco reuses Northwind's Message-ID
    follow = partner_mail("Re: Server acme-1 down", "still down", "<second@northwind.example>")
    follow["In-Reply-To"] = "<first@northwind.example>"
    intake.send(follow)
    commands = intake.commands(4)  # partitions: in any order

    def the(type_: CommandType, partner: str | None, customer: str | None = None) -> CaseCommand:
        [found] = [
            c
            for c in commands
            if c.type is type_ and c.partner_id == partner and (customer is None or c.customer_id == customer)
        ]
        return found

    kept = the(CommandType.OPEN, None, UNAUTHENTICATED_CUSTOMER)
    telco = the(CommandType.OPEN, "telco-isp")
    reply = the(CommandType.CUSTOMER_REPLIED, None)
    assert (kept.type, kept.partner_id, kept.customer_id) == (
        CommandType.OPEN,
        None,
        UNAUTHENTICATED_CUSTOMER,
    )
    assert kept.case_id != opened.case_id
    assert (telco.type, telco.partner_id) == (CommandType.OPEN, "telco-isp")
    assert (reply.type, reply.case_id) == (CommandType.CUSTOMER_REPLIED, opened.case_id)
    answers = intake.answers(3)
    assert sorted(str(a["To"]) for a in answers) == [NADIA, NADIA, TOM]  # ack, Telco's ack, "added"
    [ack] = [a for a in answers if str(a["Subject"]).startswith(f"[FW case {opened.case_id}] Received")]
    assert all(link in body_of(ack) for link in LINKS)
    stats = intake.server.intake.stats
    assert (stats.unauthenticated, stats.opened, stats.replies) == (1, 2, 1)

    publish_decisions(portal, commands)
    reason = "envelope sender domain telco-isp.example is not aligned with From domain northwind.example"
    async with PortalClient(portal.url) as sam:
        assert (await sam.sign_in("sam", USERS["sam"]))[0] == 302
        status, queue, _ = await sam.get("/staff")
        assert status == 200
        assert f'data-case="{kept.case_id}"' in queue
        assert f'<span class="badge unauthenticated" title="{reason}">unauthenticated</span>' in queue
        status, page, _ = await sam.get(f"/staff/cases/{kept.case_id}")
        assert status == 200
        assert 'id="unauthenticated"' in page
        assert reason in page
        assert f"<code>{TOM}</code>" in page  # the envelope sender
        status, page, _ = await sam.get(f"/staff/cases/{opened.case_id}")
        assert 'id="unauthenticated"' not in page
    for user in ("nadia", "tom"):
        async with PortalClient(portal.url) as partner:
            assert (await partner.sign_in(user, USERS[user]))[0] == 302
            status, listing, _ = await partner.get("/api/cases")
            assert status == 200
            assert kept.case_id not in listing
            status, dashboard, _ = await partner.get("/")
            assert kept.case_id not in dashboard
            assert (await partner.get(f"/api/cases/{kept.case_id}"))[0] == 404
            assert (await partner.get(f"/cases/{kept.case_id}"))[0] == 404
    async with PortalClient(portal.url) as nadia:
        await nadia.sign_in("nadia", USERS["nadia"])
        status, listing, _ = await nadia.get("/api/cases")
        assert opened.case_id in listing  # her own case is there (the negative checks can fail)
