"""The staff console: the triage queue and the work on one case (every route needs a staff user).

`/staff` is the queue: untriaged cases (state new) first, then the oldest; Sev1 cases stand out, and so do
cases the email intake kept from email that failed sender authentication (`unauthenticated_mail`: the
reason, the From it claimed and its envelope sender; only staff see them). Filters:
state (`open` by default, `all`, or one state), severity (1, 2, 3, `none`) and partner. `/staff/cases/{ref}`
(case id or ticket) shows the whole timeline, internal events included, and the forms that act on the case;
each form POSTs to `/staff/cases/{ref}/{action}` with the CSRF token.

Actions become `CaseCommand`s (actor `staff:<username>`, a uuid4 command id, `at` from the policy clock) for
the case engine, which decides; the console only checks that a form is complete. After sending, the handler
watches the read model for the engine's answer (an event carrying the command id) for up to
`ANSWER_WAIT_S`, then redirects back to the case (POST/redirect/GET) with a one-time message: what was done,
the engine's reason when it rejected the command, or that the answer is still on its way.

| action | command | form fields |
|---|---|---|
| refer | CLOSE + details.referral (untriaged only: no ticket, partner gets the referral) | reason, message |
| triage | TRIAGE (assigns the ticket; the partner help desk is emailed it) | severity, owner, message |
| assign | ASSIGN | owner |
| start_work | START_WORK (mark worked) | owner |
| reply | POST_UPDATE (email/portal case: the partner help desk, threaded; else the customer) | message |
| phone | NOTE, details.kind = "phone" | message, contact, visible |
| note | NOTE, details.kind = "note" | message, visible |
| severity | CHANGE_SEVERITY | severity, reason |
| wait | WAIT_ON_CUSTOMER | message |
| resolve / close / reopen | RESOLVE / CLOSE / REOPEN | reason |

The queue, the actions offered per state and the command a form asks for are pure functions (tested without a
server); the handlers fetch, check, send and render.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from casefile.view import CLOSED_STATES, CaseView, clock_of
from fleetcore.errors import FleetwatchError
from portal.directory import User, UserRole
from portal.readmodel import chain_marker
from portal.web.auth import check_csrf, flash, render, require_staff
from portal.web.keys import KEYS
from schemas.cases import CaseEvent, CaseEventType, CaseSource, CaseState, DetailValue, Severity
from schemas.commands import CaseCommand, CommandType

log = logging.getLogger(__name__)

ANSWER_WAIT_S = 5.0
"""How long a POST waits for the engine's answer before redirecting anyway."""
ANSWER_POLL_S = 0.1

_S = CaseState
OPEN = frozenset({_S.NEW, _S.TRIAGED, _S.WORKING, _S.WAITING})
TRIAGED = frozenset({_S.TRIAGED, _S.WORKING, _S.WAITING})
EVERY = frozenset(CaseState)
_NEVER = datetime.max.replace(tzinfo=UTC)


class ActionError(ValueError):
    """A form the console cannot turn into a command (the message says what is missing)."""


# -- the queue ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFilter:
    """What the queue shows: states (empty: all), severity ("1".."3", "none" or None: any), partner."""

    states: frozenset[CaseState] = OPEN
    severity: str | None = None
    partner: str | None = None
    state_choice: str = "open"
    """The state filter as chosen ("open", "all" or a state value), for the form."""

    def admits(self, view: CaseView) -> bool:
        if self.states and view.state not in self.states:
            return False
        if self.severity == "none" and view.severity is not None:
            return False
        if self.severity in ("1", "2", "3") and (
            view.severity is None or str(int(view.severity)) != self.severity
        ):
            return False
        return not (self.partner and view.partner != self.partner)


def parse_filter(query: Mapping[str, str]) -> QueueFilter:
    """The filter a query string asks for; unknown values fall back to the defaults (never an error)."""
    choice = query.get("state", "open") or "open"
    if choice == "all":
        states: frozenset[CaseState] = frozenset()
    elif choice in {s.value for s in CaseState}:
        states = frozenset({CaseState(choice)})
    else:
        choice, states = "open", OPEN
    severity = query.get("severity") or None
    if severity not in (None, "1", "2", "3", "none"):
        severity = None
    partner = (query.get("partner") or "").strip() or None
    return QueueFilter(states=states, severity=severity, partner=partner, state_choice=choice)


def queue_key(view: CaseView) -> tuple[bool, datetime, str]:
    """Untriaged first, then the oldest (by opening time), then by id for a stable order."""
    return view.state is not CaseState.NEW, view.opened_at or _NEVER, view.case_id


def triage_queue(views: Iterable[CaseView], wanted: QueueFilter | None = None) -> list[CaseView]:
    """The cases the filter admits, in queue order (`queue_key`)."""
    wanted = wanted or QueueFilter()
    return sorted((v for v in views if v.is_case and wanted.admits(v)), key=queue_key)


def age(since: datetime | None, now: datetime) -> str:
    """A short age: "45m", "3h 12m", "2d 4h" ("-" when unknown)."""
    if since is None:
        return "-"
    minutes = max(0, int((now - since).total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {mins}m"
    return f"{mins}m"


def unauthenticated_mail(view: CaseView) -> dict[str, str] | None:
    """Why the email that opened the case failed sender authentication, with the From it claimed and its
    envelope sender (`details` of the intake's open), or None for any other case."""
    for event in view.timeline:
        if event.type is CaseEventType.CASE_OPENED:
            reason = event.details.get("unauthenticated")
            if not isinstance(reason, str) or not reason:
                return None
            facts = ("claimed_from", "claimed_partner", "envelope_from")
            return {"reason": reason} | {k: str(event.details.get(k) or "-") for k in facts}
    return None


def queue_row(view: CaseView, now: datetime) -> dict[str, Any]:
    """What the queue shows of one case."""
    return {
        "case_id": view.case_id,
        "ref": view.ticket or view.case_id,
        "ticket": view.ticket,
        "title": view.title,
        "state": view.state.value,
        "new": view.state is CaseState.NEW,
        "severity": int(view.severity) if view.severity is not None else None,
        "sev1": view.severity is Severity.SEV1 and view.state not in CLOSED_STATES,
        "source": view.source.value if view.source is not None else "-",
        "customer": view.customer or "-",
        "partner": view.partner or "-",
        "owner": view.owner or "-",
        "age": age(view.opened_at, now),
        "opened_at": view.opened_at.isoformat() if view.opened_at else "",
        "breaches": sorted({clock_of(e) for e in view.breaches}),
        "unauthenticated": unauthenticated_mail(view),
    }


# -- actions --------------------------------------------------------------------------------------------


def _text(form: Mapping[str, str], name: str, limit: int) -> str:
    value = str(form.get(name, "")).replace("\r\n", "\n").strip()
    if len(value) > limit:
        raise ActionError(f"{name} is too long (at most {limit} characters)")
    return value


def _required(form: Mapping[str, str], name: str, limit: int, what: str) -> str:
    value = _text(form, name, limit)
    if not value:
        raise ActionError(f"{what} is required")
    return value


def _severity(form: Mapping[str, str]) -> Severity:
    raw = str(form.get("severity", "")).strip().lower().removeprefix("sev")
    if raw not in ("1", "2", "3"):
        raise ActionError("choose a severity (Sev1, Sev2 or Sev3)")
    return Severity(int(raw))


def _flag(form: Mapping[str, str], name: str) -> bool:
    return str(form.get(name, "")).strip().lower() in ("on", "true", "1", "yes")


Fields = dict[str, Any]


def _refer(form: Mapping[str, str]) -> Fields:
    return {
        "reason": _required(form, "reason", 4000, "the reason for the referral"),
        "message": _text(form, "message", 20000),
        "details": {"referral": True},
    }


def _triage(form: Mapping[str, str]) -> Fields:
    return {
        "severity": _severity(form),
        "owner": _text(form, "owner", 200) or None,
        "message": _text(form, "message", 20000),
    }


def _assign(form: Mapping[str, str]) -> Fields:
    return {"owner": _required(form, "owner", 200, "the new owner")}


def _start_work(form: Mapping[str, str]) -> Fields:
    return {"owner": _text(form, "owner", 200) or None}


def _reply(form: Mapping[str, str]) -> Fields:
    return {"message": _required(form, "message", 20000, "the message")}


def _note(kind: str) -> Callable[[Mapping[str, str]], Fields]:
    def build(form: Mapping[str, str]) -> Fields:
        details: dict[str, DetailValue] = {"kind": kind}
        if _flag(form, "visible"):
            details["visible"] = True
        if kind == "phone" and (contact := _text(form, "contact", 200)):
            details["contact"] = contact
        what = "what was said" if kind == "phone" else "the note"
        return {"message": _required(form, "message", 20000, what), "details": details}

    return build


def _change_severity(form: Mapping[str, str]) -> Fields:
    return {"severity": _severity(form), "reason": _text(form, "reason", 4000)}


def _wait(form: Mapping[str, str]) -> Fields:
    return {"message": _text(form, "message", 20000)}


def _reason_only(form: Mapping[str, str]) -> Fields:
    return {"reason": _text(form, "reason", 4000)}


@dataclass(frozen=True)
class Action:
    """One thing staff can do to a case from the console."""

    name: str
    label: str
    type: CommandType
    states: frozenset[CaseState]
    """States in which the console offers it (the engine has the last word)."""
    build: Callable[[Mapping[str, str]], Fields]
    done: str
    """What the flash message says when the engine accepted it."""


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action(
            "refer",
            "Refer the end user to their provider (no ticket)",
            CommandType.CLOSE,
            frozenset({_S.NEW}),
            _refer,
            "Closed as a referral; the partner was sent the referral.",
        ),
        Action("triage", "Triage", CommandType.TRIAGE, frozenset({_S.NEW}), _triage, "Triaged."),
        Action("assign", "Assign", CommandType.ASSIGN, OPEN | {_S.RESOLVED}, _assign, "Assigned."),
        Action(
            "start_work",
            "Mark worked",
            CommandType.START_WORK,
            frozenset({_S.TRIAGED, _S.WAITING}),
            _start_work,
            "Marked as worked.",
        ),
        Action("reply", "Reply", CommandType.POST_UPDATE, OPEN | {_S.RESOLVED}, _reply, "Reply sent."),
        Action(
            "phone", "Log a phone follow-up", CommandType.NOTE, EVERY, _note("phone"), "Phone call logged."
        ),
        Action("note", "Add a note", CommandType.NOTE, EVERY, _note("note"), "Note added."),
        Action(
            "severity",
            "Change severity",
            CommandType.CHANGE_SEVERITY,
            TRIAGED,
            _change_severity,
            "Severity changed.",
        ),
        Action(
            "wait",
            "Wait on the customer",
            CommandType.WAIT_ON_CUSTOMER,
            frozenset({_S.TRIAGED, _S.WORKING}),
            _wait,
            "Waiting on the customer.",
        ),
        Action("resolve", "Resolve", CommandType.RESOLVE, OPEN, _reason_only, "Resolved."),
        Action("close", "Close", CommandType.CLOSE, OPEN | {_S.RESOLVED}, _reason_only, "Closed."),
        Action(
            "reopen",
            "Reopen",
            CommandType.REOPEN,
            frozenset({_S.RESOLVED, _S.CLOSED}),
            _reason_only,
            "Reopened.",
        ),
    )
}


def actions_for(view: CaseView) -> list[str]:
    """The actions the console offers for the case's state."""
    return [name for name, action in ACTIONS.items() if view.state in action.states]


def reply_label(view: CaseView) -> str:
    """Who a reply (POST_UPDATE) reaches, as the engine routes it."""
    if view.source in (CaseSource.EMAIL, CaseSource.PORTAL):
        return "Reply to the partner by email (in the partner's thread)"
    if view.partner:
        return "Post a customer update (emailed to the customer's technical staff and the partner)"
    return "Post a customer update (emailed to the customer's technical staff)"


def build_command(
    action: str, form: Mapping[str, str], view: CaseView, user: User, at: datetime, command_id: str
) -> CaseCommand:
    """The command a console form asks for; `ActionError` when the form is incomplete or invalid."""
    chosen = ACTIONS.get(action)
    if chosen is None:
        raise ActionError(f"no such action: {action}")
    fields = chosen.build(form)
    try:
        return CaseCommand(
            command_id=command_id,
            case_id=view.case_id,
            type=chosen.type,
            at=at,
            actor=f"staff:{user.username}",
            **fields,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ActionError(f"{where}: {error['msg']}") from exc


def answer_of(view: CaseView | None, command_id: str) -> list[CaseEvent]:
    """The events the engine wrote for the command (empty: no answer yet)."""
    if view is None:
        return []
    return [e for e in view.timeline if e.command_id == command_id]


def outcome(action: Action, events: list[CaseEvent]) -> str:
    """The one-time message after a POST."""
    if not events:
        return (
            f"{action.label}: sent to the case engine; its answer has not arrived yet. "
            "Reload the page in a moment."
        )
    rejected = next((e for e in events if e.type is CaseEventType.COMMAND_REJECTED), None)
    if rejected is not None:
        return f"{action.label} was rejected by the case engine: {rejected.reason}"
    ticket = next((e.ticket for e in events if e.ticket), None)
    if action.type is CommandType.TRIAGE and ticket:
        return f"{action.done} Ticket {ticket}."
    return action.done


# -- timeline -------------------------------------------------------------------------------------------


_SHOWN = ("message", "title")


def timeline_rows(view: CaseView) -> list[dict[str, Any]]:
    """Every event, internal ones included, newest last; text and the other details apart."""
    rows = []
    for event in view.timeline:
        text = next((str(event.details[k]) for k in _SHOWN if event.details.get(k)), "")
        rows.append(
            {
                "at": event.at.isoformat(timespec="seconds"),
                "type": event.type.value,
                "actor": event.actor,
                "internal": event.visibility.value == "internal",
                "rejected": event.type is CaseEventType.COMMAND_REJECTED,
                "reason": event.reason,
                "text": text,
                "details": {k: v for k, v in event.details.items() if k not in _SHOWN},
                "state": event.state.value,
                "seq": event.seq,
            }
        )
    return rows


# -- handlers -------------------------------------------------------------------------------------------


def _view_or_404(request: web.Request) -> CaseView:
    view = request.app[KEYS.readmodel].get(request.match_info["ref"])
    if view is None:
        raise web.HTTPNotFound(text="no such case")
    return view


def _staff_names(request: web.Request) -> list[str]:
    users = request.app[KEYS.directory].users.values()
    return sorted(u.username for u in users if u.role is UserRole.STAFF)


async def queue_page(request: web.Request) -> web.Response:
    """GET /staff: the triage queue."""
    await require_staff(request)
    wanted = parse_filter(request.query)
    now = request.app[KEYS.clock].now()
    views = triage_queue(request.app[KEYS.readmodel].views(), wanted)
    directory = request.app[KEYS.directory]
    return await render(
        request,
        "staff_queue.html",
        rows=[queue_row(v, now) for v in views],
        filter=wanted,
        states=[s.value for s in CaseState],
        partners=sorted(directory.partners.values(), key=lambda p: p.partner_id),
    )


async def case_page(request: web.Request) -> web.Response:
    """GET /staff/cases/{ref}: the case, its whole timeline and the action forms."""
    user = await require_staff(request)
    view = _view_or_404(request)
    now = request.app[KEYS.clock].now()
    return await render(
        request,
        "staff_case.html",
        case=queue_row(view, now),
        chain_marker=chain_marker(request.app[KEYS.readmodel].chain(view.case_id)),
        view=view,
        timeline=timeline_rows(view),
        actions=actions_for(view),
        labels={name: a.label for name, a in ACTIONS.items()},
        reply_label=reply_label(view),
        staff_names=_staff_names(request),
        me=user.username,
        waiting_since=view.waiting_since.isoformat(timespec="seconds") if view.waiting_since else None,
    )


async def act(request: web.Request) -> web.StreamResponse:
    """POST /staff/cases/{ref}/{action}: send the command, wait briefly for the answer, redirect back."""
    user = await require_staff(request)
    form = await check_csrf(request)
    view = _view_or_404(request)
    action = ACTIONS.get(request.match_info["action"])
    if action is None:
        raise web.HTTPNotFound(text="no such action")
    back = request.app.router["staff_case"].url_for(ref=view.case_id)
    app = request.app
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        command = build_command(action.name, fields, view, user, app[KEYS.clock].now(), str(uuid.uuid4()))
    except ActionError as exc:
        flash(request, f"{action.label}: not sent: {exc}.")
        raise web.HTTPSeeOther(back) from None
    try:
        await app[KEYS.send_command](command)
    except FleetwatchError as exc:
        log.error("staff %s: %s on %s not sent: %s", user.username, action.name, view.case_id, exc)
        flash(request, f"{action.label}: not sent, the case engine cannot be reached now. Try again.")
        raise web.HTTPSeeOther(back) from None
    log.info("staff %s: %s on %s (command %s)", user.username, action.name, view.case_id, command.command_id)
    events = await wait_answer(request, view.case_id, command.command_id, ANSWER_WAIT_S)
    flash(request, outcome(action, events))
    raise web.HTTPSeeOther(back)


async def wait_answer(
    request: web.Request, case_id: str, command_id: str, timeout_s: float
) -> list[CaseEvent]:
    """Poll the read model for the engine's answer to a command, up to `timeout_s`."""
    readmodel = request.app[KEYS.readmodel]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        events = answer_of(readmodel.get(case_id), command_id)
        if events or loop.time() >= deadline:
            return events
        await asyncio.sleep(ANSWER_POLL_S)


def setup(app: web.Application) -> None:
    """Register the staff console's routes."""
    app.router.add_get("/staff", queue_page, name="staff_queue")
    app.router.add_get("/staff/cases/{ref}", case_page, name="staff_case")
    app.router.add_post("/staff/cases/{ref}/{action}", act, name="staff_action")
