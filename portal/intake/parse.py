"""Read one raw email defensively into a `ParsedMail` (pure: bytes in, data out).

Hostile or broken input is the normal case here, so every step has a fallback:

* the stdlib parser (`email.policy.default`) never sees a header it may choke on unguarded: each header is
  read through `_header`, which falls back to the raw value when the structured one raises;
* header values that reach anything else (subject, addresses, Message-IDs, file names) are reduced to one
  clean line: CR, LF and other control characters become spaces, so they can never inject a header into a
  reply; Message-IDs and addresses must match a strict shape or are dropped;
* bodies are decoded with their declared charset and `errors="replace"`; an unknown or non-text charset
  (`x-unknown`, `base64`) falls back to UTF-8 with replacement;
* text/plain is preferred; else text/html is reduced to its text; attachments are kept as metadata only
  (name, type, size);
* more MIME parts than `max_parts` (a part bomb), no usable From address, or a message the parser cannot
  walk at all raise `MalformedMail` with a reason a person can act on (the caller dead-letters it).
"""

from __future__ import annotations

import codecs
import contextlib
import email
import email.policy
import email.utils
import hashlib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from html.parser import HTMLParser
from typing import TypeVar

from fleetcore.errors import FleetwatchError

SUBJECT_MAX = 300
"""Characters of a subject kept (the case title); longer ones end in an ellipsis."""
BODY_MAX = 10000
"""Characters of body text kept (the case message)."""
NAME_MAX = 200
"""Characters of an attachment's file name kept."""
REFS_MAX = 40
"""Message-IDs kept from In-Reply-To and References together."""
LOOP_HEADERS = (
    "auto-submitted",
    "precedence",
    "x-autoreply",
    "x-autorespond",
    "x-auto-response-suppress",
    "list-id",
    "list-unsubscribe",
)
"""Headers the loop rules read (kept, one clean line each, lower-case names)."""

_MESSAGE_ID = re.compile(r"<[!-;=?-~]{1,250}>")
"""`<id>` of printable ASCII without spaces, `<` or `>` (what RFC 5322 msg-id allows, loosely)."""
_ADDRESS = re.compile(r"[^\s@<>()\[\],;:\\\"]{1,64}@[^\s@<>()\[\],;:\\\"]{1,190}")
T = TypeVar("T")
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class MalformedMail(FleetwatchError):
    """The email cannot become a case (reason in the message); it goes to the dead-letter topic."""


@dataclass(frozen=True)
class Attachment:
    """An attachment's metadata; its content is not kept."""

    name: str
    content_type: str
    size: int
    """Decoded bytes."""

    def as_dict(self) -> dict[str, str | int]:
        return {"name": self.name, "type": self.content_type, "size": self.size}


@dataclass(frozen=True)
class ParsedMail:
    """What the intake needs of one email, every text field clean and bounded."""

    sender: str
    """The From address, lower case (the reply goes here; the partner is found by it)."""
    sender_name: str
    subject: str
    """One line, no control characters, at most SUBJECT_MAX characters."""
    message_id: str | None
    """`<...>` when the email had a well-formed Message-ID, else None."""
    references: tuple[str, ...]
    """Message-IDs of In-Reply-To first, then References (well-formed ones, de-duplicated)."""
    body: str
    """The text: text/plain preferred, else the text of text/html; at most BODY_MAX characters."""
    attachments: tuple[Attachment, ...]
    content_type: str
    """The top-level content type (e.g. multipart/report for delivery reports)."""
    loop_headers: dict[str, str] = field(default_factory=dict)
    """LOOP_HEADERS present in the email: lower-case name -> clean value."""
    parts: int = 1
    digest: str = ""
    """sha256 (hex) of the raw bytes: identifies an email that has no Message-ID."""
    clipped: bool = False
    """Whether the body text was cut at BODY_MAX."""

    @property
    def key(self) -> str:
        """What identifies this email across redeliveries: its Message-ID, else the digest of its bytes."""
        return self.message_id or f"sha256:{self.digest}"


def parse_mail(raw: bytes, *, max_parts: int, body_max: int = BODY_MAX) -> ParsedMail:
    """Parse `raw` (the DATA of one SMTP transaction). Raises `MalformedMail` when it cannot become a case."""
    digest = hashlib.sha256(raw).hexdigest()
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        parts = _walk(message, max_parts)
    except MalformedMail:
        raise
    except RecursionError as exc:
        raise MalformedMail("MIME structure nested too deeply to read") from exc
    except Exception as exc:  # the stdlib parser on hostile input: anything may surface
        raise MalformedMail(f"unreadable MIME structure ({type(exc).__name__}: {exc})"[:300]) from exc
    sender_name, sender = _from_address(message)
    if not sender:
        raise MalformedMail("no usable From address")
    body, clipped, attachments = _content(parts, body_max)
    references: list[str] = []
    for name in ("in-reply-to", "references"):
        for mid in _MESSAGE_ID.findall(_header(message, name)):
            if mid not in references:
                references.append(mid)
    if len(references) > REFS_MAX:  # the thread's root and the latest parents are what matter
        half = REFS_MAX // 2
        references = references[:half] + references[-half:]
    loop_headers = {name: value for name in LOOP_HEADERS if (value := _header(message, name))}
    return ParsedMail(
        sender=sender,
        sender_name=sender_name,
        subject=clip(one_line(_header(message, "subject")), SUBJECT_MAX),
        message_id=valid_message_id(_header(message, "message-id")),
        references=tuple(references),
        body=body,
        attachments=tuple(attachments),
        content_type=_safe(lambda: message.get_content_type(), "text/plain"),
        loop_headers=loop_headers,
        parts=len(parts),
        digest=digest,
        clipped=clipped,
    )


# -- headers ----------------------------------------------------------------------------------------------


def _header(message: Message, name: str) -> str:
    """The header's decoded value as one clean line ('' when absent); never raises."""
    structured = _safe(lambda: _structured(message, name), None)
    if structured is not None:
        return structured
    empty: list[tuple[str, str]] = []
    for key, raw in _safe(lambda: list(message.raw_items()), empty):
        if key.lower() == name:
            return one_line(_decode_words(str(raw)))
    return ""


def _structured(message: Message, name: str) -> str:
    value = message.get(name)
    return one_line(str(value)) if value is not None else ""


def _decode_words(raw: str) -> str:
    """RFC 2047 encoded words decoded (with replacement), or the raw text when they are broken."""
    try:
        return str(make_header(decode_header(raw)))
    except Exception:
        return raw


def _from_address(message: Message) -> tuple[str, str]:
    """(display name, address) of the first From address, or ('', '') when there is none usable."""
    value = _header(message, "from")
    if not value:
        return "", ""
    name, address = email.utils.parseaddr(value)
    address = address.strip().lower()
    if not valid_address(address):
        return "", ""
    return clip(one_line(name), NAME_MAX), address


def valid_address(address: str) -> bool:
    """Whether `address` is a plain `local@domain` safe to put in a header or an SMTP envelope."""
    return len(address) <= 254 and _ADDRESS.fullmatch(address) is not None and "." in address.split("@")[1]


def valid_message_id(value: str) -> str | None:
    """The first well-formed `<id>` in a Message-ID header value, else None."""
    match = _MESSAGE_ID.search(value)
    return match.group(0) if match else None


def one_line(text: str) -> str:
    """`text` with every control character (CR and LF included) and bidi override as a space, spaces
    collapsed: safe in any header and in one line of a log."""
    cleaned = "".join(
        " " if (unicodedata.category(ch) == "Cc" or ch in _BIDI) else ch for ch in text if ch != "\x00"
    )
    return " ".join(cleaned.split())


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


# -- body and attachments ---------------------------------------------------------------------------------


def _walk(message: Message, max_parts: int) -> list[Message]:
    """Every part (containers included), refusing more than `max_parts`."""
    parts: list[Message] = []
    for part in message.walk():
        parts.append(part)
        if len(parts) > max_parts:
            raise MalformedMail(f"too many MIME parts (more than {max_parts})")
    return parts


def _content(parts: list[Message], body_max: int) -> tuple[str, bool, list[Attachment]]:
    plain: str | None = None
    html: str | None = None
    attachments: list[Attachment] = []
    for part in parts:
        if _safe(part.is_multipart, True):
            continue
        ctype = _safe(part.get_content_type, "application/octet-stream")
        disposition = _safe(part.get_content_disposition, None)
        filename = _safe(part.get_filename, None)
        if disposition == "attachment" or filename or not ctype.startswith("text/"):
            if ctype != "message/rfc822":  # its parts come next in the walk
                attachments.append(_attachment(part, ctype, filename))
            continue
        if ctype == "text/plain" and not plain:  # the first text/plain with any text in it
            plain = _text_of(part).strip()
        elif ctype == "text/html" and not html:
            html = html_to_text(_text_of(part)).strip()
    text = plain or html or ""
    text = clean_body(text)
    return clip(text, body_max), len(text) > body_max, attachments


def _attachment(part: Message, ctype: str, filename: str | None) -> Attachment:
    payload = _payload(part)
    size = len(payload)
    name = one_line(filename or "").replace("/", "_").replace("\\", "_")
    return Attachment(name=clip(name, NAME_MAX) or "(unnamed)", content_type=ctype[:100], size=size)


def _text_of(part: Message) -> str:
    """A text part decoded with its charset, with replacement; UTF-8 when the charset is unusable."""
    payload = _payload(part)
    charset = _safe(lambda: part.get_content_charset("utf-8"), "utf-8") or "utf-8"
    try:
        if not codecs.lookup(charset)._is_text_encoding:
            charset = "utf-8"
        return payload.decode(charset, errors="replace")
    except Exception:  # unknown charset (LookupError) or a codec that misbehaves
        return payload.decode("utf-8", errors="replace")


def _payload(part: Message) -> bytes:
    """The part's decoded content bytes (b"" when there are none or decoding fails)."""
    default: object = b""
    payload = _safe(lambda: part.get_payload(decode=True), default)
    return payload if isinstance(payload, bytes) else b""


def clean_body(text: str) -> str:
    """Body text with normalised line ends, no control characters but tab and newline, at most one blank
    line in a row, no trailing spaces."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    lines = [line.rstrip() for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


class _HtmlText(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "title", "template"})
    _BLOCK = frozenset(
        {"br", "p", "div", "li", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skipping += 1
        elif tag in self._BLOCK:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self._BLOCK:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.chunks.append(data)


def html_to_text(html: str) -> str:
    """The readable text of an HTML body (scripts and styles dropped, block elements as line breaks)."""
    parser = _HtmlText()
    with contextlib.suppress(Exception):  # HTMLParser is lenient; this only guards against the unexpected
        parser.feed(html)
        parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.chunks).split("\n"))
    return "\n".join(line for line in lines if line)


def _safe(call: Callable[[], T], default: T) -> T:
    """`call()` or `default` when it raises (the parser's accessors on hostile input)."""
    try:
        return call()
    except Exception:
        return default
