"""The intake's automatic answers as ready-to-send emails (pure: text and headers, no IO).

Every answer is an automatic reply in the sense of RFC 3834, so other robots do not answer it back:
`Auto-Submitted: auto-replied`, `X-Auto-Response-Suppress: All`, and threading headers (`In-Reply-To` and
`References` = the original's Message-ID) so it lands in the sender's thread. Its own Message-ID is
deterministic (`<kind.case.key-digest@support-domain>`), so a reply to the answer threads back into the
case. Subjects carry the case tag `[FW case eml-…]`; the ticket number comes later, after triage, in the
case engine's email to the partner's help desk.

Troubleshooting links in the partner directory may be paths (`/kb/server-unreachable`): the acknowledgement
joins them to the portal's public URL (`absolute_links`), so the links follow `portal_public_url`.

Only clean values reach a header: the subject and addresses come from `parse` (one line, no control
characters), Message-IDs were matched against a strict pattern.
"""

from __future__ import annotations

import email.policy
import hashlib
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from portal.intake.parse import ParsedMail, clip
from portal.intake.rules import case_tag

_POLICY = email.policy.default.clone(max_line_length=998)
"""RFC 5322's line limit: a tagged subject stays on one line (folding it leaves a leading space in some
readers' view of it)."""
SUBJECT_MAX = 200
"""Characters of the original subject quoted in an answer's subject."""

END_USER_NOTE = (
    "Please note: we support our partners (Solution Partners and ISPs), not their end users. If you are an "
    "end user of a service, please contact your own provider; they will reach us if needed."
)


def message_id_for(kind: str, ref: str, mail: ParsedMail, support_address: str) -> str:
    """The deterministic Message-ID of our answer of `kind` to `mail` about `ref` (a case id or '')."""
    domain = support_address.rpartition("@")[2] or "fleetwatch.local"
    digest = hashlib.sha256(mail.key.encode("utf-8", errors="replace")).hexdigest()[:16]
    return f"<{kind}.{ref or 'none'}.{digest}@{domain}>"


def _base(
    mail: ParsedMail, kind: str, ref: str, subject: str, body: str, support_address: str, now: datetime
) -> EmailMessage:
    message = EmailMessage(policy=_POLICY)
    message["From"] = support_address
    message["To"] = mail.sender
    message["Subject"] = subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id_for(kind, ref, mail, support_address)
    message["Auto-Submitted"] = "auto-replied"
    message["X-Auto-Response-Suppress"] = "All"
    if mail.message_id:
        message["In-Reply-To"] = mail.message_id
        message["References"] = " ".join([*mail.references[-10:], mail.message_id])
    message.set_content(body)
    return message


def absolute_links(links: Sequence[str], base_url: str) -> list[str]:
    """Troubleshooting links as the partner can follow them: a link that is a path (`/kb/slow-responses`)
    is joined to the portal's public URL (`portal_public_url`); a full URL is kept as it is."""
    base = base_url.rstrip("/")
    return [f"{base}{link}" if link.startswith("/") and base else link for link in links]


def _quoted(mail: ParsedMail) -> str:
    return clip(mail.subject, SUBJECT_MAX) or "(no subject)"


def acknowledgement(
    mail: ParsedMail,
    *,
    case_id: str,
    partner_name: str,
    customer_id: str,
    links: Sequence[str],
    support_address: str,
    now: datetime,
) -> EmailMessage:
    """The automatic acknowledgement of a new case: receipt, troubleshooting links, the end-user note."""
    lines = [
        f"Hello {partner_name},",
        "",
        f"we have received your email \u201c{_quoted(mail)}\u201d and opened case {case_id} for your "
        f"customer {customer_id}. Support will triage it shortly; you will then get its ticket number "
        "by email.",
        "",
        "To add to this case, reply to this email and keep the case tag in the subject.",
    ]
    if links:
        lines += ["", "While you wait, these troubleshooting guides often help:"]
        lines += [f"  - {link}" for link in links]
    lines += ["", END_USER_NOTE, "", "-- ", "Fleetwatch support (automatic reply)"]
    subject = f"{case_tag(case_id)} Received: {_quoted(mail)}"
    return _base(mail, "ack", case_id, subject, "\n".join(lines) + "\n", support_address, now)


def added_to_case(mail: ParsedMail, *, case_id: str, support_address: str, now: datetime) -> EmailMessage:
    """The short note that a reply was added to its case."""
    body = (
        f"Thank you: your email \u201c{_quoted(mail)}\u201d was added to case {case_id}.\n"
        "\n-- \nFleetwatch support (automatic reply)\n"
    )
    subject = f"{case_tag(case_id)} Added to your case: {_quoted(mail)}"
    return _base(mail, "added", case_id, subject, body, support_address, now)


def unknown_sender(mail: ParsedMail, *, support_address: str, portal_url: str, now: datetime) -> EmailMessage:
    """The polite answer to a sender who is not a registered partner (no case is opened)."""
    lines = [
        "Hello,",
        "",
        f"thank you for your email \u201c{_quoted(mail)}\u201d. This address takes support cases from our "
        "registered partners only, and your address is not registered with us, so no case was opened.",
        "",
        END_USER_NOTE,
        "",
        "If you are a partner, please ask us to register this address"
        + (f" or file the case in the partner portal: {portal_url}" if portal_url else "")
        + ".",
        "",
        "-- ",
        "Fleetwatch support (automatic reply)",
    ]
    subject = f"Re: {_quoted(mail)}"
    return _base(mail, "unknown", "", subject, "\n".join(lines) + "\n", support_address, now)
