"""Who the case engine notifies, on which channel, with what text (pure: no IO, no clock).

The engine (`streams.cases`) decides *when*; this module decides *who* and *what*. Each function returns the
`Notice`s one occurrence asks for; `notification()` turns a notice into the `Notification` sent to the
notifications topic, with its idempotency key `<case_id>:<purpose>:<role>:<channel>`. A purpose is unique per
occurrence within a case (`case.opened`, `status.notice:3`, `sla.breached:sev1.work:12`, ...), so the same
occurrence replayed after a crash yields the same key and the notifier delivers it once.

Who, per the support policy:

| occurrence | channel → role |
|---|---|
| Sev1 opened (or upgraded to Sev1) | page → operations_manager, email → support_team |
| ... of a monitor case, also | email → customer_technical |
| Sev1 not worked within 2 h | page → vp_operations, call → customer_technical |
| Sev2/Sev3 first response breached | email → support_lead |
| pre-breach warning (75 %) | email → oncall_engineers (internal roles only, never the customer) |
| hourly status notice (no staff update) | email → the customer's voice (below) |
| staff posted a customer update (a reply) | email → the customer's voice (below) |
| monitored server recovered | email → customer_technical |
| email/portal case triaged, partner reachable | email → partner_helpdesk (with the ticket number) |
| untriaged case closed as a referral | email → partner_helpdesk (the referral text), if reachable |

The customer's voice (`customer_roles`): who hears updates and status notices about a case. For an email or
portal case the partner wrote to us on the customer's behalf, so the partner's help desk is told and the
customer's technical staff are not (they did not write, and a second copy of every answer to them is noise);
an email/portal case with no reachable partner falls back to the customer's technical staff, as before. A
monitor or staff case tells the customer's technical staff, and also the partner's help desk when the case
names a partner. A partner is *reachable* when the case names one or the case's email came from an address
(`Case.requester`; the notifier writes to it when the partner's directory entry has no help desk contact).

Threading: every email to the partner help desk carries the case's `thread_message_id` (the Message-ID of
the partner's email that opened it) and `reply_to_address` (the requester); the notifier sets In-Reply-To
and References from it, so ticket numbers, answers and referrals land in the partner's own thread. Their
subjects carry `[FW-100123]`, or `[FW case <case id>]` before triage (the intake's tags), so a reply finds
the case even when the partner's mailer drops References.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from schemas.cases import CaseSource, CaseState
from schemas.notifications import Channel, Notification, Role

if TYPE_CHECKING:
    from streams.cases import Case

INTERNAL_ROLES = frozenset(
    {
        Role.OPERATIONS_MANAGER,
        Role.VP_OPERATIONS,
        Role.SUPPORT_TEAM,
        Role.ONCALL_ENGINEERS,
        Role.SUPPORT_LEAD,
    }
)
"""Roles inside the support organisation; internal-only notices (warnings) go to these alone."""

SUBJECT_MAX = 500
BODY_MAX = 20000

STATE_WORDS = {
    CaseState.NEW: "received, awaiting triage",
    CaseState.TRIAGED: "triaged, an engineer will pick it up",
    CaseState.WORKING: "an engineer is working on it",
    CaseState.WAITING: "waiting for information from you",
    CaseState.RESOLVED: "resolved",
    CaseState.CLOSED: "closed",
}
"""How a case's state reads to the customer."""


@dataclass(frozen=True)
class Notice:
    """One page, email or call for one role: what the engine asks the notifier to deliver."""

    channel: Channel
    role: Role
    purpose: str
    subject: str
    body: str


def notification_key(case_id: str, purpose: str, role: Role, channel: Channel) -> str:
    """The idempotency key of one notice: the same occurrence always yields the same key."""
    return f"{case_id}:{purpose}:{role.value}:{channel.value}"


def partner_reachable(case: Case) -> bool:
    """A partner help desk email about this case can reach someone: a partner, or the address that wrote."""
    return case.partner_id is not None or case.requester is not None


def customer_roles(case: Case) -> list[Role]:
    """Who hears updates and status notices about the case (see "the customer's voice" above)."""
    if case.source in (CaseSource.EMAIL, CaseSource.PORTAL):
        return [Role.PARTNER_HELPDESK] if partner_reachable(case) else [Role.CUSTOMER_TECHNICAL]
    if case.partner_id is not None:
        return [Role.CUSTOMER_TECHNICAL, Role.PARTNER_HELPDESK]
    return [Role.CUSTOMER_TECHNICAL]


def notification(case: Case, notice: Notice, at: datetime) -> Notification:
    """The Notification for the notifications topic; emails to the partner help desk are threaded."""
    threaded = notice.role is Role.PARTNER_HELPDESK and notice.channel is Channel.EMAIL
    return Notification(
        key=notification_key(case.case_id, notice.purpose, notice.role, notice.channel),
        case_id=case.case_id,
        ticket=case.ticket,
        customer_id=case.customer_id,
        partner_id=case.partner_id,
        server_id=case.server_id,
        severity=case.severity,
        channel=notice.channel,
        role=notice.role,
        purpose=notice.purpose,
        subject=_clip(notice.subject, SUBJECT_MAX),
        body=_clip(notice.body, BODY_MAX),
        at=at,
        thread_message_id=case.thread_message_id if threaded else None,
        reply_to_address=case.requester if threaded else None,
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ref(case: Case) -> str:
    return case.ticket or case.case_id


def _tag(case: Case, role: Role) -> str:
    """The subject tag: `[FW-100123]`; before a ticket, the partner help desk gets `[FW case <id>]`, the
    tag the email intake recognises, so a reply finds the case even without References."""
    if case.ticket is None and role is Role.PARTNER_HELPDESK:
        return f"[FW case {case.case_id}]"
    return f"[{_ref(case)}]"


def _sev(case: Case) -> str:
    return "unassigned severity" if case.severity is None else f"Sev{int(case.severity)}"


def _what(case: Case) -> str:
    server = f", server {case.server_id}" if case.server_id else ""
    return f"customer {case.customer_id}{server}: {case.title}"


def _hm(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def sev1_opened(case: Case, purpose: str, work_within: timedelta) -> list[Notice]:
    """A Sev1 opened or was upgraded to Sev1: Operations Manager paged, the whole support team mobilised;
    for a monitor case, the customer's technical staff are contacted at once."""
    ref = _ref(case)
    notices = [
        Notice(
            Channel.PAGE,
            Role.OPERATIONS_MANAGER,
            purpose,
            f"Sev1 {ref}: {case.title}",
            f"Severity 1 case {ref} for {_what(case)}. Work must start within {_hm(work_within)}.",
        ),
        Notice(
            Channel.EMAIL,
            Role.SUPPORT_TEAM,
            purpose,
            f"[{ref}] Sev1 — all hands: {case.title}",
            f"Severity 1 case {ref} is open for {_what(case)}.\n"
            f"The whole support team is mobilised; work must start within {_hm(work_within)}.",
        ),
    ]
    if case.source is CaseSource.MONITOR:
        server = case.server_id or "one of your servers"
        notices.append(
            Notice(
                Channel.EMAIL,
                Role.CUSTOMER_TECHNICAL,
                purpose,
                f"[{ref}] We detected an outage of {server}",
                f"Our monitoring found {server} not responding and opened Severity 1 case {ref}.\n"
                "Our operations team has been paged and is on it; we will keep you informed.",
            )
        )
    return notices


def sev1_work_breached(case: Case, purpose: str, due_at: datetime) -> list[Notice]:
    """Nobody worked a Sev1 within its budget: VP of Operations paged, the customer contact called."""
    ref = _ref(case)
    return [
        Notice(
            Channel.PAGE,
            Role.VP_OPERATIONS,
            purpose,
            f"Sev1 {ref} not worked in time",
            f"Severity 1 case {ref} ({_what(case)}) was due to be worked by {_when(due_at)} "
            f"and nobody has started. Current state: {case.state.value}.",
        ),
        Notice(
            Channel.CALL,
            Role.CUSTOMER_TECHNICAL,
            purpose,
            f"Case {ref}: escalated to our VP of Operations",
            f"This is a call about your Severity 1 case {ref}: {case.title}. It has been escalated to our "
            "Vice President of Operations, who is now personally following it.",
        ),
    ]


def first_response_breached(case: Case, purpose: str, due_at: datetime) -> list[Notice]:
    """A Sev2/Sev3 got no first response in time: the support lead is told."""
    ref = _ref(case)
    return [
        Notice(
            Channel.EMAIL,
            Role.SUPPORT_LEAD,
            purpose,
            f"[{ref}] {_sev(case)} first response overdue",
            f"Case {ref} ({_sev(case)}, {_what(case)}) was due a first response by {_when(due_at)}.\n"
            f"Current state: {case.state.value}; owner: {case.owner or 'nobody'}.",
        )
    ]


def warning(case: Case, purpose: str, clock: str, due_at: datetime, left: timedelta) -> list[Notice]:
    """Internal pre-breach warning: on-call engineers only, never the customer."""
    ref = _ref(case)
    return [
        Notice(
            Channel.EMAIL,
            Role.ONCALL_ENGINEERS,
            purpose,
            f"[{ref}] SLA warning: {clock} due in {_hm(left)}",
            f"Case {ref} ({_sev(case)}, {_what(case)}): the {clock} clock is due at {_when(due_at)}.\n"
            f"Current state: {case.state.value}; owner: {case.owner or 'nobody'}. (Internal; not sent to the "
            "customer.)",
        )
    ]


def status_text(case: Case, at: datetime) -> str:
    """The automatic status notice: the case's current state, in words the customer reads."""
    lines = [
        f"Case {_ref(case)} ({_sev(case)}): {case.title}",
        f"Status: {case.state.value} — {STATE_WORDS[case.state]}.",
        f"Opened {_when(case.opened_at)} ({_hm(at - case.opened_at)} ago).",
    ]
    if case.server_id:
        lines.append(f"Server {case.server_id}: {'still down' if case.server_down else 'responding'}.")
    if case.owner:
        lines.append(f"Owner: {case.owner}.")
    if case.last_update_at is not None:
        lines.append(f"Last update from our staff: {_when(case.last_update_at)}.")
    lines.append("You will receive another update within the hour.")
    return "\n".join(lines)


def status_notice(case: Case, purpose: str, at: datetime, number: int) -> list[Notice]:
    """An hourly update was due and staff posted none: the automatic notice to the customer's voice."""
    return [
        Notice(
            Channel.EMAIL,
            role,
            purpose,
            f"{_tag(case, role)} Status update {number}: {case.title}",
            status_text(case, at),
        )
        for role in customer_roles(case)
    ]


def customer_update(case: Case, purpose: str, message: str) -> list[Notice]:
    """Staff posted an update (or answered the partner): it goes to the customer's voice as written; the
    partner help desk's copy is threaded into the partner's email."""
    return [
        Notice(
            Channel.EMAIL,
            role,
            purpose,
            f"{_tag(case, role)} Update: {case.title}",
            message,
        )
        for role in customer_roles(case)
    ]


def server_recovered(case: Case, purpose: str, at: datetime) -> list[Notice]:
    """The monitored server answers again: the customer's technical staff are told."""
    server = case.server_id or "your server"
    down = f" after {_hm(at - case.opened_at)}" if at >= case.opened_at else ""
    return [
        Notice(
            Channel.EMAIL,
            Role.CUSTOMER_TECHNICAL,
            purpose,
            f"[{_ref(case)}] {server} is responding again",
            f"Our monitoring sees {server} responding again at {_when(at)}{down}.\n"
            f"Case {_ref(case)} stays open until our engineers confirm the cause is fixed.",
        )
    ]


def partner_triaged(case: Case, purpose: str) -> list[Notice]:
    """An email/portal case was triaged: the partner's help desk gets the ticket number."""
    ref = _ref(case)
    return [
        Notice(
            Channel.EMAIL,
            Role.PARTNER_HELPDESK,
            purpose,
            f"[{ref}] Case triaged for {case.customer_id}: {case.title}",
            f"The case for your customer {case.customer_id} is ticket {ref}, {_sev(case)}.\n"
            "Please quote the ticket number in any correspondence.",
        )
    ]


REFERRAL_TEXT = (
    "Thank you for your message. Our support works with our partners and with our customers' technical "
    "staff; end users must contact their own provider (their Solution Partner or internet service "
    "provider), who will open a case with us if it is needed.\n"
    "We have therefore closed this request without opening a ticket."
)
"""The policy's referral, sent when staff give no text of their own."""


def referral(case: Case, purpose: str, message: str) -> list[Notice]:
    """An untriaged email/portal case was closed as a referral (an end user's request): the partner help
    desk (or the address that wrote) gets the referral text, threaded; nobody else is told."""
    if not partner_reachable(case):
        return []
    return [
        Notice(
            Channel.EMAIL,
            Role.PARTNER_HELPDESK,
            purpose,
            f"{_tag(case, Role.PARTNER_HELPDESK)} Re: {case.title}",
            message.strip() or REFERRAL_TEXT,
        )
    ]
