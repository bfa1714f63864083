"""The automatic answers: threading and loop headers, the case tag, links and the end-user note; no header
an email's content could inject."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

from portal.intake import replies
from portal.intake.parse import parse_mail

SUPPORT = "support@fleetwatch.local"
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
CASE = "eml-0123456789abcdef0123"


def incoming(subject: bytes = b"Server down", message_id: bytes = b"<m1@northwind.example>") -> bytes:
    return (
        b"From: Nadia <helpdesk@northwind.example>\r\nSubject: " + subject + b"\r\n"
        b"Message-ID: " + message_id + b"\r\nReferences: <root@northwind.example>\r\n\r\nbody\r\n"
    )


def reparse(message: email.message.EmailMessage) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def test_acknowledgement() -> None:
    mail = parse_mail(incoming(), max_parts=10)
    links = ("http://127.0.0.1:8080/kb/server-unreachable", "http://127.0.0.1:8080/kb/slow-responses")
    ack = reparse(
        replies.acknowledgement(
            mail,
            case_id=CASE,
            partner_name="Northwind Partners",
            customer_id="acme",
            links=links,
            support_address=SUPPORT,
            now=NOW,
        )
    )
    assert ack["To"] == "helpdesk@northwind.example"
    assert ack["From"] == SUPPORT
    assert ack["Subject"] == f"[FW case {CASE}] Received: Server down"
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == "<m1@northwind.example>"
    assert ack["References"] == "<root@northwind.example> <m1@northwind.example>"
    assert ack["Message-ID"] == replies.message_id_for("ack", CASE, mail, SUPPORT)
    body = ack.get_body().get_content()  # type: ignore[union-attr]
    assert all(link in body for link in links)
    assert "contact your own provider" in body
    assert CASE in body
    assert "acme" in body


def test_answers_without_a_message_id_do_not_thread() -> None:
    mail = parse_mail(incoming(message_id=b"garbage"), max_parts=10)
    added = reparse(replies.added_to_case(mail, case_id=CASE, support_address=SUPPORT, now=NOW))
    assert added["In-Reply-To"] is None
    assert added["References"] is None
    assert added["Subject"].startswith(f"[FW case {CASE}] Added to your case")


def test_unknown_sender_reply() -> None:
    mail = parse_mail(incoming(), max_parts=10)
    answer = reparse(
        replies.unknown_sender(mail, support_address=SUPPORT, portal_url="http://portal.example", now=NOW)
    )
    body = answer.get_body().get_content()  # type: ignore[union-attr]
    assert "contact your own provider" in body
    assert "register" in body
    assert "http://portal.example" in body
    assert answer["Auto-Submitted"] == "auto-replied"
    assert "FW case" not in answer["Subject"]


def test_hostile_subject_injects_no_header() -> None:
    hostile = b"=?utf-8?q?x=0D=0ABcc:_victim@example.com=0D=0A=0D=0Abody?="
    mail = parse_mail(incoming(subject=hostile), max_parts=10)
    ack = replies.acknowledgement(
        mail, case_id=CASE, partner_name="N", customer_id="acme", links=(), support_address=SUPPORT, now=NOW
    )
    raw = ack.as_bytes()
    parsed = reparse(ack)
    assert parsed["Bcc"] is None
    assert b"\nBcc:" not in raw
    assert parsed["Subject"] == f"[FW case {CASE}] Received: x Bcc: victim@example.com body"


def test_long_subject_is_shortened_in_answers() -> None:
    mail = parse_mail(incoming(subject=b"x" * 290), max_parts=10)
    added = replies.added_to_case(mail, case_id=CASE, support_address=SUPPORT, now=NOW)
    assert len(str(added["Subject"])) < 260


def test_link_paths_join_the_portal_url_and_full_urls_stay() -> None:
    links = ("/kb/server-unreachable", "https://docs.example.com/guide")
    assert replies.absolute_links(links, "https://support.example.com/") == [
        "https://support.example.com/kb/server-unreachable",
        "https://docs.example.com/guide",
    ]
    assert replies.absolute_links(links, "") == list(links)
