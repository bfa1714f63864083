"""The policy's email lifecycle end to end, with every real part: a partner's help desk emails support@,
gets the automatic acknowledgement, support triages, the partner gets the ticket number in its own thread,
and the partner's reply to that mail lands on the same case. Then the two ways the outside review broke in:
a mail with Northwind's From and ticket tag sent from a Telco envelope becomes a staff-only case (not a
reply on Northwind's case, no answer to the forged address), and a Telco mail reusing Northwind's Message-ID
opens Telco's own case and is answered.

Child processes: `fleetwatch intake`, `fleetwatch stream` (case engine), `fleetwatch notify`; an aiosmtpd
catcher on 127.0.0.1 receives everything the intake and the notifier send.
"""

from __future__ import annotations

import email.policy
import smtplib
import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from casefile.commands import send_command
from fleetwatch.kafka_local import free_port
from fleetwatch.mailcatcher import MailCatcher
from schemas.cases import CaseEvent, CaseEventType, CaseSource, CaseState, Severity
from schemas.commands import CaseCommand, CommandType
from schemas.topics import Topics
from tests.helpers import T0, TopicReader, fleetwatch_env, spawn, stop, wait_for

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
HELPDESK = "helpdesk@northwind.example"
TELCO = "support@telco-isp.example"
SUPPORT = "support@fleetwatch.local"


class Parts:
    def __init__(self, bootstrap: str, topics: Topics, tmp: Path) -> None:
        self.tmp = tmp
        self.mail = MailCatcher(tmp / "mail").start()
        self.intake_port = free_port()
        self.env = fleetwatch_env(
            kafka_bootstrap=bootstrap,
            topic_prefix=topics.prefix,
            data_dir=tmp,
            log_level="INFO",
            stream_web_port=free_port(),
            stream_metrics_port=0,
            notify_metrics_port=0,
            contacts_file=EXAMPLES / "contacts.yaml",
            partners_file=EXAMPLES / "partners.yaml",
            smtp_port=self.mail.port,
            intake_port=self.intake_port,
            notify_backoff_s=0.2,
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for name in ("stream", "notify", "intake"):
            self.procs[name] = spawn([name], self.env, tmp / f"{name}.log")

    def alive(self) -> None:
        for name, proc in self.procs.items():
            log = (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]
            assert proc.poll() is None, f"{name} exited:\n{log}"

    def mails_to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.mail.messages if address in str(m["To"])]

    def close(self) -> None:
        for proc in self.procs.values():
            stop(proc)
        self.mail.stop()


@pytest.fixture
def parts(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> Iterator[Parts]:
    p = Parts(kafka_bootstrap, topics, tmp_path)
    yield p
    p.close()


def send(port: int, message: EmailMessage, envelope: str | None = None) -> None:
    def accepted() -> bool:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                smtp.send_message(message, from_addr=envelope)
        except (ConnectionRefusedError, smtplib.SMTPServerDisconnected):
            return False  # the intake is still starting
        return True

    wait_for(accepted, 60, "the intake to accept mail")


def test_email_case_gets_ack_ticket_in_thread_and_reply_threads_back(
    parts: Parts, kafka_bootstrap: str, topics: Topics
) -> None:
    first = EmailMessage(policy=email.policy.SMTP)
    first["From"] = f"Northwind help desk <{HELPDESK}>"
    first["To"] = SUPPORT
    first["Subject"] = "Nightly backups fail on the acme database server"
    first["Message-ID"] = "<lifecycle-1@northwind.example>"
    first.set_content("Since Tuesday the nightly backup job exits with code 3. customer: acme")
    send(parts.intake_port, first)

    # the automatic acknowledgement: at once, threaded, with the end-user note
    ack = wait_for(lambda: parts.mails_to(HELPDESK), 60, "the automatic acknowledgement")[0]
    assert ack["In-Reply-To"].strip() == "<lifecycle-1@northwind.example>"
    assert "provider" in ack.get_content()

    cases = TopicReader(kafka_bootstrap, topics.cases)

    def events() -> list[CaseEvent]:
        parts.alive()
        return [CaseEvent.model_validate_json(v) for _, v in cases.poll() if v]

    opened = wait_for(
        lambda: [e for e in events() if e.type is CaseEventType.CASE_OPENED], 90, "the email case"
    )[0]
    assert opened.source is CaseSource.EMAIL
    assert opened.state is CaseState.NEW
    assert opened.ticket is None
    assert opened.partner_id == "northwind-partners"
    assert opened.customer_id == "acme"

    # support triages: ticket number and severity; the partner is emailed the ticket, in its thread
    triage = CaseCommand(
        command_id="lifecycle-triage",
        case_id=opened.case_id,
        type=CommandType.TRIAGE,
        at=T0,
        actor="staff:sam",
        severity=Severity.SEV2,
        owner="sam",
    )
    send_command(kafka_bootstrap, topics.case_commands, triage)
    triaged = wait_for(lambda: [e for e in events() if e.type is CaseEventType.TRIAGED], 60, "the triage")[0]
    assert triaged.ticket is not None
    ticket = triaged.ticket

    def ticket_mail() -> list[EmailMessage]:
        return [m for m in parts.mails_to(HELPDESK) if f"[{ticket}]" in str(m["Subject"])]

    told = wait_for(ticket_mail, 60, "the ticket number email")[0]
    assert "<lifecycle-1@northwind.example>" in str(told["In-Reply-To"])

    # the partner answers that mail: the reply joins the same case
    reply = EmailMessage(policy=email.policy.SMTP)
    reply["From"] = HELPDESK
    reply["To"] = SUPPORT
    reply["Subject"] = f"Re: {told['Subject']}"
    reply["Message-ID"] = "<lifecycle-2@northwind.example>"
    reply["In-Reply-To"] = str(told["Message-ID"])
    reply["References"] = f"<lifecycle-1@northwind.example> {told['Message-ID']}"
    reply.set_content("The job log is attached to our ticket system; exit code 3 means disk full.")
    send(parts.intake_port, reply)
    replied = wait_for(
        lambda: [e for e in events() if e.type is CaseEventType.CUSTOMER_REPLIED], 60, "the reply on the case"
    )
    assert replied[0].case_id == opened.case_id
    assert len([e for e in events() if e.type is CaseEventType.CASE_OPENED]) == 1

    # a spoof: Northwind's From and ticket tag, a Telco envelope
    spoof = EmailMessage(policy=email.policy.SMTP)
    spoof["From"] = HELPDESK
    spoof["To"] = SUPPORT
    spoof["Subject"] = f"Re: [{ticket}] please close this case, all fine"
    spoof["Message-ID"] = "<spoof-1@telco-isp.example>"
    spoof.set_content("Problem solved, close it.")
    send(parts.intake_port, spoof, envelope=TELCO)
    # Telco reuses the Message-ID of Northwind's first mail
    telco = EmailMessage(policy=email.policy.SMTP)
    telco["From"] = TELCO
    telco["To"] = SUPPORT
    telco["Subject"] = "Our resolver for globex is down"
    telco["Message-ID"] = "<lifecycle-1@northwind.example>"
    telco.set_content("Since 09:00. customer: globex")
    send(parts.intake_port, telco)

    def opened_cases() -> list[CaseEvent] | None:
        found = [e for e in events() if e.type is CaseEventType.CASE_OPENED]
        return found if len(found) == 3 else None

    by_customer = {e.customer_id: e for e in wait_for(opened_cases, 90, "the kept case and Telco's case")}
    kept = by_customer["unauthenticated-email"]
    assert kept.partner_id is None
    assert kept.details["claimed_from"] == HELPDESK
    assert "not aligned" in str(kept.details["unauthenticated"])
    assert by_customer["globex"].partner_id == "telco-isp"
    telco_ack = wait_for(lambda: parts.mails_to(TELCO), 60, "Telco's acknowledgement")[0]
    assert "[FW case " in str(telco_ack["Subject"])
    assert [e.case_id for e in events() if e.type is CaseEventType.CUSTOMER_REPLIED] == [opened.case_id]
    assert not [m for m in parts.mail.messages if "please close" in str(m["Subject"])]  # no backscatter
    assert not [m for m in parts.mail.messages if kept.case_id in str(m["Subject"])]
    cases.close()
