"""parse_mail on well-formed, broken and hostile emails: it returns clean bounded data or MalformedMail."""

from __future__ import annotations

import random
from email.message import EmailMessage

import pytest

from portal.intake.parse import (
    BODY_MAX,
    SUBJECT_MAX,
    MalformedMail,
    html_to_text,
    one_line,
    parse_mail,
    valid_address,
)

MAX_PARTS = 50


def raw_mail(body: bytes, headers: str = "", content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        "From: Nadia <Helpdesk@Northwind.example>\r\n"
        "To: support@fleetwatch.local\r\n"
        "Subject: Server down\r\n"
        "Message-ID: <m1@northwind.example>\r\n"
        f"Content-Type: {content_type}\r\n"
        f"{headers}"
    )
    return head.encode() + b"\r\n" + body


def test_plain_text_mail() -> None:
    mail = parse_mail(raw_mail(b"Our server acme-1 is down.\r\n"), max_parts=MAX_PARTS)
    assert mail.sender == "helpdesk@northwind.example"
    assert mail.sender_name == "Nadia"
    assert mail.subject == "Server down"
    assert mail.message_id == "<m1@northwind.example>"
    assert mail.body == "Our server acme-1 is down."
    assert mail.attachments == ()
    assert mail.key == "<m1@northwind.example>"


def test_multipart_alternative_prefers_text_plain() -> None:
    message = EmailMessage()
    message["From"] = "helpdesk@northwind.example"
    message["Subject"] = "alt"
    message.set_content("plain version")
    message.add_alternative("<p>html <b>version</b></p>", subtype="html")
    mail = parse_mail(message.as_bytes(), max_parts=MAX_PARTS)
    assert mail.body == "plain version"
    assert mail.content_type == "multipart/alternative"


def test_html_only_is_reduced_to_text() -> None:
    html = (
        b"<html><head><title>t</title><style>p{color:red}</style></head><body>"
        b"<p>Server <b>acme-1</b> is down</p><script>alert('x')</script><div>since 10:00 &amp; counting</div>"
        b"</body></html>"
    )
    mail = parse_mail(raw_mail(html, content_type="text/html; charset=utf-8"), max_parts=MAX_PARTS)
    assert mail.body == "Server acme-1 is down\nsince 10:00 & counting"
    assert "alert" not in mail.body
    assert "color" not in mail.body


def test_empty_text_plain_falls_back_to_html() -> None:
    message = EmailMessage()
    message["From"] = "helpdesk@northwind.example"
    message.set_content("   ")
    message.add_alternative("<p>only here</p>", subtype="html")
    assert parse_mail(message.as_bytes(), max_parts=MAX_PARTS).body == "only here"


@pytest.mark.parametrize(
    ("charset", "payload", "expected"),
    [
        ("iso-8859-1", "Caf\xe9 ferm\xe9".encode("latin-1"), "Café fermé"),
        ("utf-8", "Grüße".encode(), "Grüße"),
        ("utf-8", b"broken \xff\xfe bytes", "broken \ufffd\ufffd bytes"),
        ("x-no-such-charset", b"unknown \xc3\xa9 charset", "unknown é charset"),
        ("base64", b"not a text codec", "not a text codec"),
        ("zlib_codec", b"neither", "neither"),
        ("", b"no charset", "no charset"),
    ],
)
def test_charsets_decode_with_replacement(charset: str, payload: bytes, expected: str) -> None:
    ctype = f"text/plain; charset={charset}" if charset else "text/plain"
    mail = parse_mail(raw_mail(payload, content_type=ctype), max_parts=MAX_PARTS)
    assert mail.body == expected


def test_encoded_subject_and_broken_encoded_words() -> None:
    raw = raw_mail(b"x").replace(b"Subject: Server down", b"Subject: =?utf-8?b?U2VydmVyIGTDqWZhaWxsYW50?=")
    assert parse_mail(raw, max_parts=MAX_PARTS).subject == "Server défaillant"
    raw = raw_mail(b"x").replace(b"Subject: Server down", b"Subject: =?bogus-cs?q?=FF=FE?= tail")
    subject = parse_mail(raw, max_parts=MAX_PARTS).subject
    assert "tail" in subject
    assert "\n" not in subject


def test_attachments_are_metadata_only() -> None:
    message = EmailMessage()
    message["From"] = "helpdesk@northwind.example"
    message["Subject"] = "with files"
    message.set_content("see attached")
    message.add_attachment(
        b"\x00" * 1234, maintype="application", subtype="pdf", filename="../../etc/log.pdf"
    )
    message.add_attachment("a,b\n1,2\n", subtype="csv", filename="data.csv")
    message.add_attachment(b"\x89PNG....", maintype="image", subtype="png")
    mail = parse_mail(message.as_bytes(), max_parts=MAX_PARTS)
    assert mail.body == "see attached"
    names = [(a.name, a.content_type, a.size) for a in mail.attachments]
    assert names == [
        (".._.._etc_log.pdf", "application/pdf", 1234),
        ("data.csv", "text/csv", 8),
        ("(unnamed)", "image/png", 8),
    ]
    assert mail.attachments[0].as_dict() == {
        "name": ".._.._etc_log.pdf",
        "type": "application/pdf",
        "size": 1234,
    }


def test_forwarded_message_text_is_read_not_listed() -> None:
    inner = EmailMessage()
    inner["From"] = "user@acme.example"
    inner["Subject"] = "inner"
    inner.set_content("the end user's words")
    outer = EmailMessage()
    outer["From"] = "helpdesk@northwind.example"
    outer["Subject"] = "Fwd: inner"
    outer.set_content("")
    outer.add_attachment(inner)
    mail = parse_mail(outer.as_bytes(), max_parts=MAX_PARTS)
    assert mail.body == "the end user's words"
    assert mail.attachments == ()


def test_huge_subject_is_clipped_to_one_line() -> None:
    long = "word " * 20000
    raw = raw_mail(b"x").replace(b"Subject: Server down", f"Subject: {long}".encode())
    mail = parse_mail(raw, max_parts=MAX_PARTS)
    assert len(mail.subject) == SUBJECT_MAX
    assert mail.subject.endswith("…")


def test_body_is_clipped() -> None:
    mail = parse_mail(raw_mail(b"a" * (BODY_MAX * 2)), max_parts=MAX_PARTS)
    assert len(mail.body) == BODY_MAX
    assert mail.clipped


@pytest.mark.parametrize(
    "subject",
    [
        b"=?utf-8?q?hi=0D=0ABcc:_evil@attacker.example?=",
        b"=?utf-8?b?aGkNCkJjYzogZXZpbEBhdHRhY2tlci5leGFtcGxl?=",
        b"hi\r\n\tBcc: evil@attacker.example",
        b"hi =?utf-8?q?=00=1B[31m=E2=80=AEevil?=",
    ],
)
def test_header_injection_in_subject_is_neutralised(subject: bytes) -> None:
    raw = raw_mail(b"x").replace(b"Subject: Server down", b"Subject: " + subject)
    mail = parse_mail(raw, max_parts=MAX_PARTS)
    assert mail.subject == one_line(mail.subject)
    assert not any(ch in mail.subject for ch in "\r\n\x00\x1b\u202e")
    assert mail.subject.startswith("hi")


def test_message_ids_must_be_well_formed() -> None:
    raw = raw_mail(b"x", headers="In-Reply-To: <a@x>\r\nReferences: <root@x> junk <a@x> <b@x>\r\n").replace(
        b"Message-ID: <m1@northwind.example>", b"Message-ID: =?utf-8?q?<x=0D=0ABcc:_e@x>?="
    )
    mail = parse_mail(raw, max_parts=MAX_PARTS)
    assert mail.message_id is None
    assert mail.key.startswith("sha256:")
    assert mail.references == ("<a@x>", "<root@x>", "<b@x>")


def test_many_references_keep_root_and_latest() -> None:
    refs = " ".join(f"<r{i}@x>" for i in range(100))
    mail = parse_mail(raw_mail(b"x", headers=f"References: {refs}\r\n"), max_parts=MAX_PARTS)
    assert len(mail.references) == 40
    assert mail.references[0] == "<r0@x>"
    assert mail.references[-1] == "<r99@x>"


def test_loop_headers_are_kept() -> None:
    headers = "Auto-Submitted: auto-replied\r\nPrecedence: bulk\r\nX-Autoreply: yes\r\n"
    mail = parse_mail(raw_mail(b"x", headers=headers), max_parts=MAX_PARTS)
    assert mail.loop_headers == {"auto-submitted": "auto-replied", "precedence": "bulk", "x-autoreply": "yes"}


@pytest.mark.parametrize(
    "from_header",
    [
        None,
        "",
        "not an address",
        "<>",
        "a@b",
        "two@x.example@y.example",
        "evil@x.example\r\nBcc: y@z.example",
    ],
)
def test_no_usable_from_is_malformed(from_header: str | None) -> None:
    raw = raw_mail(b"x").replace(b"From: Nadia <Helpdesk@Northwind.example>\r\n", b"")
    if from_header is not None:
        raw = f"From: {from_header}\r\n".encode() + raw
    if from_header and "\r\nBcc" in from_header:
        # raw CRLF just starts another header (ignored): From holds one valid address
        mail = parse_mail(raw, max_parts=MAX_PARTS)
        assert valid_address(mail.sender)
        return
    with pytest.raises(MalformedMail, match="From"):
        parse_mail(raw, max_parts=MAX_PARTS)


def test_too_many_parts_is_malformed() -> None:
    parts = b"".join(b"--B\r\nContent-Type: text/plain\r\n\r\npart\r\n" for _ in range(10000))
    raw = raw_mail(parts + b"--B--\r\n", content_type="multipart/mixed; boundary=B")
    with pytest.raises(MalformedMail, match="too many MIME parts"):
        parse_mail(raw, max_parts=MAX_PARTS)


def test_truncated_multipart_still_parses() -> None:
    raw = raw_mail(
        b"--B\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--B\r\nContent-Type: text/ht",
        content_type="multipart/mixed; boundary=B",
    )
    assert parse_mail(raw, max_parts=MAX_PARTS).body == "first part"


def test_broken_base64_does_not_raise() -> None:
    raw = raw_mail(b"!!!not base64===\r\n", headers="Content-Transfer-Encoding: base64\r\n")
    mail = parse_mail(raw, max_parts=MAX_PARTS)
    assert isinstance(mail.body, str)


def test_random_bytes_never_raise_anything_but_malformed() -> None:
    rng = random.Random(4)
    seeds = [
        raw_mail(b"body"),
        raw_mail(b"--B\r\n\r\nx\r\n--B--", content_type="multipart/mixed; boundary=B"),
    ]
    for i in range(400):
        blob: bytearray
        if i % 2:
            blob = bytearray(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
        else:  # a real mail with random bytes flipped or cut off
            blob = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 20)):
                blob[rng.randrange(len(blob))] = rng.randrange(256)
            blob = blob[: rng.randrange(1, len(blob) + 1)]
        try:
            mail = parse_mail(bytes(blob), max_parts=MAX_PARTS)
        except MalformedMail:
            continue
        assert valid_address(mail.sender)
        assert "\n" not in mail.subject
        assert "\r" not in mail.subject


def test_html_to_text_survives_garbage() -> None:
    assert html_to_text("<<<>>><p <b>x</p></div></script>").endswith("x")
    assert html_to_text("<script>never closed") == ""
