"""What the intake does with a parsed email: pure decisions, time passed in.

* `loop_check` — mail we must never answer (RFC 3834): automatic replies, bounces, bulk and list mail,
  mail from ourselves. Automatic *replies* (out-of-office, delivery reports, null sender) are not filed
  either: an out-of-office answering our ticket email is not the customer replying, and filing it would
  restart paused SLA clocks. Other automatic mail (a partner's ticket system: `Auto-Submitted:
  auto-generated`, bulk) is filed but never answered.
* `RateLimiter` — at most N answers per sender in any hour (sliding window), so two autoresponders that
  slip through the header checks still stop after N rounds.
* `references_of` / `case_tag` / `ticket_tags` — how a reply names its case: `[FW case eml-…]` (our
  acknowledgement's subject), `[FW-100123]` (the ticket email's subject), or In-Reply-To / References.
* `named_customer` — `customer: <id>` in the subject or body picks one of the partner's customers.
* `decide` — the whole matrix: open a case, add to one, or neither; which answer, if any. Email that
  failed sender authentication (`auth.verdict`) never joins an existing case and is never answered (the
  From may be forged: no backscatter); it is kept as a new case of no partner under the reserved customer
  `UNAUTHENTICATED_CUSTOMER` (staff only), the reason on it. An unknown sender whose envelope is not
  aligned with its From gets no polite reply either.
* `case_id_for` / `command_id_for` — deterministic ids from the email's Message-ID (or the digest of its
  bytes), so a redelivered email opens nothing new.
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from portal.directory import UNAUTHENTICATED_CUSTOMER, Partner
from portal.intake.auth import Verdict
from portal.intake.parse import ParsedMail

CASE_PREFIX = "eml-"
_CASE_TAG = re.compile(r"\[FW case (eml-[0-9a-f]{20})\]", re.IGNORECASE)
_TICKET_TAG = re.compile(r"\[(FW-\d{6,9})\]", re.IGNORECASE)
_CUSTOMER = re.compile(r"\bcustomer:\s*([A-Za-z0-9][A-Za-z0-9._:-]{0,127})", re.IGNORECASE)
_AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond")
_NO_REPLY_LOCALS = frozenset({"noreply", "no-reply", "do-not-reply", "donotreply", "bounce", "bounces"})
_SILENT_PRECEDENCE = frozenset({"bulk", "junk", "list"})


# -- loops --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoopCheck:
    """Whether an email may be answered and filed."""

    answer: bool = True
    """False: never send anything back."""
    file: bool = True
    """False: not even filed (automatic replies, bounces, our own mail)."""
    reason: str = ""
    """Why not (empty when both are True)."""


def loop_check(mail: ParsedMail, envelope_sender: str, support_address: str) -> LoopCheck:
    """The loop rules for one email (`envelope_sender` is SMTP MAIL FROM, `<>` or '' for the null sender)."""
    ours = support_address.strip().lower()
    envelope = envelope_sender.strip().lower()
    headers = mail.loop_headers
    auto = headers.get("auto-submitted", "").split(";")[0].strip().lower()
    if mail.sender == ours or envelope == ours:
        return LoopCheck(False, False, "sent from our own support address")
    if envelope in ("", "<>"):
        return LoopCheck(False, False, "null envelope sender (a bounce or notification)")
    if mail.content_type == "multipart/report":
        return LoopCheck(False, False, "delivery or disposition report")
    if auto.startswith("auto-replied"):
        return LoopCheck(False, False, f"Auto-Submitted: {auto}")
    for name in _AUTO_REPLY_HEADERS:
        if name in headers:
            return LoopCheck(False, False, f"{name} header")
    local = mail.sender.partition("@")[0]
    if local.startswith("mailer-daemon") or local == "postmaster":
        return LoopCheck(False, False, f"{local} sender (a bounce)")
    if local in _NO_REPLY_LOCALS:
        return LoopCheck(False, True, f"{local} sender")
    if auto and auto != "no":
        return LoopCheck(False, True, f"Auto-Submitted: {auto}")
    precedence = headers.get("precedence", "").strip().lower()
    if precedence in _SILENT_PRECEDENCE:
        return LoopCheck(False, True, f"Precedence: {precedence}")
    suppress = headers.get("x-auto-response-suppress", "").lower()
    if any(token in suppress for token in ("all", "oof", "autoreply")):
        return LoopCheck(False, True, f"X-Auto-Response-Suppress: {suppress}")
    if "list-id" in headers or "list-unsubscribe" in headers:
        return LoopCheck(False, True, "mailing-list mail")
    return LoopCheck()


# -- rate limit ------------------------------------------------------------------------------------------


@dataclass
class RateLimiter:
    """At most `per_hour` answers per sender within any hour (sliding window), time passed in."""

    per_hour: int
    window: timedelta = timedelta(hours=1)
    max_senders: int = 10000
    """Senders remembered at most (the oldest-quiet ones are forgotten first)."""
    _sent: dict[str, deque[datetime]] = field(default_factory=dict)

    def allow(self, sender: str, now: datetime) -> bool:
        """Whether `sender` may get one more answer at `now`; counts it when yes."""
        times = self._sent.get(sender)
        if times is None:
            times = deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.per_hour:
            self._sent[sender] = times
            return False
        times.append(now)
        self._sent.pop(sender, None)
        self._sent[sender] = times  # most recently active last (dict order)
        while len(self._sent) > self.max_senders:
            del self._sent[next(iter(self._sent))]
        return True


# -- threading and customers -----------------------------------------------------------------------------


def case_tag(case_id: str) -> str:
    """The tag our answers put in the subject, e.g. `[FW case eml-0123456789abcdef0123]`."""
    return f"[FW case {case_id}]"


def case_tags(subject: str) -> list[str]:
    """Case ids named by `[FW case eml-…]` tags in a subject."""
    return [m.lower() for m in _CASE_TAG.findall(subject)]


def ticket_tags(subject: str) -> list[str]:
    """Tickets named by `[FW-100123]` tags in a subject (upper case)."""
    return [m.upper() for m in _TICKET_TAG.findall(subject)]


class RefKind(StrEnum):
    CASE = "case"
    TICKET = "ticket"
    MESSAGE_ID = "message_id"


def references_of(mail: ParsedMail) -> list[tuple[RefKind, str]]:
    """Everything in `mail` that may name its case, strongest first: case tags, ticket tags, then the
    Message-IDs it answers (In-Reply-To before References)."""
    refs: list[tuple[RefKind, str]] = [(RefKind.CASE, c) for c in case_tags(mail.subject)]
    refs += [(RefKind.TICKET, t) for t in ticket_tags(mail.subject)]
    refs += [(RefKind.MESSAGE_ID, m) for m in mail.references]
    return refs


def named_customer(mail: ParsedMail, partner: Partner) -> str | None:
    """The partner's customer named as `customer: <id>` in the subject or body (first match), else None."""
    wanted = {c.lower(): c for c in partner.customers}
    for text in (mail.subject, mail.body):
        for name in _CUSTOMER.findall(text):
            name = name.rstrip(".,;:")
            if name.lower() in wanted:
                return wanted[name.lower()]
    return None


# -- ids ---------------------------------------------------------------------------------------------------


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode("utf-8", errors="replace")).hexdigest()


def case_id_for(mail: ParsedMail, partner_id: str) -> str:
    """The case an email opens: the same for the same email from the same partner, however often it comes."""
    return CASE_PREFIX + _digest(partner_id, mail.key)[:20]


def command_id_for(mail: ParsedMail, kind: str) -> str:
    """The command id of what an email asks (`open`, `reply`): deterministic, so a redelivery is a no-op."""
    return f"email-{kind}:{_digest(mail.key)[:32]}"


# -- the decision ----------------------------------------------------------------------------------------


class Action(StrEnum):
    OPEN = "open"
    """Open a new case."""
    REPLY = "reply"
    """Add the email to an existing case (customer_replied)."""
    NONE = "none"
    """No case command."""


class Answer(StrEnum):
    ACK = "ack"
    """The automatic acknowledgement of a new case."""
    ADDED = "added"
    """A short note that the email was added to the case."""
    UNKNOWN_SENDER = "unknown_sender"
    """The polite reply to a sender who is not a partner."""
    NONE = "none"


@dataclass(frozen=True)
class Thread:
    """An existing case an email refers to."""

    case_id: str
    partner_id: str | None
    open: bool = True
    """False when the case is closed (a new email then opens a new case)."""


@dataclass(frozen=True)
class Plan:
    """What to do with one email."""

    action: Action
    answer: Answer
    case_id: str | None = None
    customer_id: str | None = None
    partner_id: str | None = None
    note: str = ""
    """Why (for the log line)."""
    follows: str | None = None
    """A closed case the email referred to (the new case follows it)."""
    unauthenticated: str | None = None
    """Why the sender could not be authenticated (the case is kept for staff, the email not answered)."""
    claimed_partner: str | None = None
    """The partner an unauthenticated email's From address names."""


def decide(
    mail: ParsedMail,
    *,
    partner: Partner | None,
    loop: LoopCheck,
    thread: Thread | None,
    duplicate: bool,
    auth: Verdict,
) -> Plan:
    """The plan for one email before the rate limit (`thread`: the case it refers to, already checked to
    belong to `partner`; `duplicate`: its Message-ID was handled before; `auth`: the sender's verdict
    under the partner's policy, or alignment only for a sender of no partner)."""
    if not loop.file:
        return Plan(Action.NONE, Answer.NONE, note=f"ignored: {loop.reason}")
    answer_ok = loop.answer and not duplicate
    quiet = "" if loop.answer else f"; not answered: {loop.reason}"
    if duplicate:
        quiet = "; redelivered, answered before"
    if partner is None:
        if not auth.authenticated:
            answer_ok, quiet = False, f"; not answered: {auth.reason}"
        answer = Answer.UNKNOWN_SENDER if answer_ok else Answer.NONE
        return Plan(Action.NONE, answer, note=f"unknown sender {mail.sender}{quiet}")
    if not auth.authenticated:
        case_id = case_id_for(mail, f"unauthenticated:{partner.partner_id}")
        return Plan(
            Action.OPEN,
            Answer.NONE,
            case_id=case_id,
            customer_id=UNAUTHENTICATED_CUSTOMER,
            partner_id=None,
            note=f"unauthenticated (claims {partner.partner_id}): {auth.reason}; "
            f"kept for staff in {case_id}, not answered",
            unauthenticated=auth.reason or "sender not authenticated",
            claimed_partner=partner.partner_id,
        )
    if thread is not None and thread.open:
        return Plan(
            Action.REPLY,
            Answer.ADDED if answer_ok else Answer.NONE,
            case_id=thread.case_id,
            partner_id=partner.partner_id,
            note=f"reply to case {thread.case_id}{quiet}",
        )
    customer = named_customer(mail, partner) or partner.filing_customer()
    case_id = case_id_for(mail, partner.partner_id)
    follows = thread.case_id if thread is not None else None
    after = f" (follows closed {follows})" if follows else ""
    return Plan(
        Action.OPEN,
        Answer.ACK if answer_ok else Answer.NONE,
        case_id=case_id,
        customer_id=customer,
        partner_id=partner.partner_id,
        note=f"new case {case_id} for {customer}{after}{quiet}",
        follows=follows,
    )


def rate_limited(plan: Plan) -> Plan:
    """`plan` without its answer: the sender had all the answers the rate limit allows this hour."""
    return replace(plan, answer=Answer.NONE, note=f"{plan.note}; not answered: rate limit")
