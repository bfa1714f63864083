"""The partner portal's pages: dashboard of open cases, filing a case, a case's timeline, recently closed
cases, and the knowledge base (server-rendered jinja2, autoescaped; every form carries the CSRF token).

Every page needs a signed-in user (`require_user`), and every case lookup goes through
`Directory.may_see`: a case the user may not see answers 404 exactly like a case that does not exist, so
ids and tickets cannot be probed. Timelines come from `portal.readmodel.visible_events` (the one rule shared
with the JSON API): partners see only customer-visible events, without staff contact ids.

Filing sends an OPEN command (source PORTAL, no severity: the case waits for triage) through
`app[KEYS.send_command]` and redirects to the case page. The read model learns of the case a moment later;
until then the page shows the filing from `PendingFilings` (what this portal sent, bounded), checked by
the same isolation rule.

The pure helpers (rows, SLA facts, timelines, the commands a form asks for) take `now` and are tested
without a server; the handlers only fetch, check and render.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from casefile.view import CLOSED_STATES, CaseView, age
from portal.directory import Directory, User, UserRole
from portal.readmodel import chain_marker, visible_events
from portal.web.auth import check_csrf, flash, public, render, require_user
from portal.web.kb import KnowledgeBase, load_knowledge_base
from portal.web.keys import KEYS
from schemas.cases import CaseEventType, CaseSource, CaseState, Severity, Visibility
from schemas.commands import CaseCommand, CommandType

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "static"
CLOSED_WINDOW = timedelta(days=30)
"""How far back "recently closed" looks."""
MAX_PENDING = 10_000
"""Filings remembered until the read model has them (oldest forgotten first)."""
PENDING_FOR = timedelta(hours=1)
"""A filing the read model never shows (the engine dead-lettered it) is forgotten after this long."""
TITLE_MAX = 500
MESSAGE_MAX = 20_000
SEARCH_LIMIT = 5

KB: web.AppKey[KnowledgeBase] = web.AppKey("fw_kb", KnowledgeBase)


class FormError(ValueError):
    """A form the portal cannot act on; `errors` says what to fix, field by field."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


# -- pending filings -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """A case this portal filed that the read model has not shown yet."""

    case_id: str
    partner_id: str | None
    customer_id: str
    title: str
    filed_at: datetime
    """Policy-clock time of the filing."""


class PendingFilings:
    """Filings by case id, bounded (MAX_PENDING); forgotten after PENDING_FOR or once the read model has
    them."""

    def __init__(self, limit: int = MAX_PENDING) -> None:
        self.limit = limit
        self._items: OrderedDict[str, Pending] = OrderedDict()

    def add(self, item: Pending) -> None:
        self._items[item.case_id] = item
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def get(self, case_id: str, now: datetime) -> Pending | None:
        item = self._items.get(case_id)
        if item is not None and now - item.filed_at > PENDING_FOR:
            del self._items[case_id]
            return None
        return item

    def drop(self, case_id: str) -> None:
        self._items.pop(case_id, None)

    def visible(self, user: User, directory: Directory, now: datetime) -> list[Pending]:
        """The user's filings still pending, newest first."""
        for case_id in [i.case_id for i in self._items.values() if now - i.filed_at > PENDING_FOR]:
            del self._items[case_id]
        mine = [i for i in self._items.values() if directory.may_see(user, i.partner_id, i.customer_id)]
        return sorted(mine, key=lambda i: i.filed_at, reverse=True)


PENDING: web.AppKey[PendingFilings] = web.AppKey("fw_pending_filings", PendingFilings)


# -- pure presentation ------------------------------------------------------------------------------------


def stamp(moment: datetime | None) -> str:
    """A UTC time as people read it: 2026-11-26 21:12Z."""
    return moment.strftime("%Y-%m-%d %H:%MZ") if moment is not None else "-"


STATE_LABELS = {
    CaseState.NEW: "awaiting triage",
    CaseState.TRIAGED: "triaged",
    CaseState.WORKING: "being worked",
    CaseState.WAITING: "waiting on you",
    CaseState.RESOLVED: "resolved",
    CaseState.CLOSED: "closed",
}


def severity_label(severity: Severity | None) -> str:
    return f"Sev{int(severity)}" if severity is not None else "untriaged"


def sla_facts(view: CaseView, now: datetime) -> list[str]:
    """What the case view says about its SLA clocks, in the partner's words."""
    facts: list[str] = []
    for event in view.breaches:
        if event.visibility.value == "customer":
            clock = str(event.details.get("clock") or event.reason)
            facts.append(f"SLA breached: {clock.replace('.', ' ')}")
    if view.state is CaseState.WAITING and view.waiting_since is not None:
        facts.append(f"waiting on you for {age(now - view.waiting_since)} (SLA clocks paused)")
    if view.last_customer_update_at is not None:
        facts.append(f"last update {age(now - view.last_customer_update_at)} ago")
    if view.severity is Severity.SEV1 and view.is_open and view.work_started_at is None:
        facts.append("Sev1: not worked yet")
    if view.is_open and view.state is not CaseState.WAITING:
        for kind, due in sorted(view.deadlines.items(), key=lambda item: item[1]):
            what = DEADLINE_LABELS.get(kind, kind.replace(".", " "))
            left = due - now
            facts.append(f"{what} due in {age(left)}" if left.total_seconds() > 0 else f"{what} due now")
    return facts


DEADLINE_LABELS = {
    "sev1.work": "work on it",
    "status.update": "next status update",
    "first.response": "first response",
}


@dataclass(frozen=True)
class CaseRow:
    """One line of a case list."""

    case_id: str
    ticket: str | None
    title: str
    severity: str
    state: str
    customer: str
    server: str
    age: str
    opened: str
    facts: list[str] = field(default_factory=list)
    sev1: bool = False
    breached: bool = False
    closed_at: str = ""


def case_row(view: CaseView, now: datetime) -> CaseRow:
    opened = view.opened_at or now
    closed = closed_at(view)
    return CaseRow(
        case_id=view.case_id,
        ticket=view.ticket,
        title=view.title or "(no title)",
        severity=severity_label(view.severity),
        state=STATE_LABELS.get(view.state, view.state.value),
        customer=view.customer or "-",
        server=view.server or "-",
        age=age(now - opened),
        opened=stamp(view.opened_at),
        facts=sla_facts(view, now),
        sev1=view.severity is Severity.SEV1 and view.is_open,
        breached=bool(view.breaches),
        closed_at=stamp(closed),
    )


def pending_row(item: Pending, now: datetime) -> CaseRow:
    return CaseRow(
        case_id=item.case_id,
        ticket=None,
        title=item.title,
        severity=severity_label(None),
        state="filed, awaiting triage",
        customer=item.customer_id,
        server="-",
        age=age(now - item.filed_at),
        opened=stamp(item.filed_at),
    )


def open_rows(views: Iterable[CaseView], now: datetime) -> list[CaseRow]:
    """Open cases: Sev1 first, then cases awaiting triage, then the rest; newest first within each."""
    live = [v for v in views if v.is_case and v.is_open]

    def rank(view: CaseView) -> tuple[int, float]:
        group = 0 if view.severity is Severity.SEV1 else 1 if view.severity is None else 2
        opened = view.opened_at.timestamp() if view.opened_at is not None else 0.0
        return group, -opened

    return [case_row(v, now) for v in sorted(live, key=rank)]


def closed_at(view: CaseView) -> datetime | None:
    """When the case was last resolved or closed (None while it is open)."""
    if view.is_open:
        return None
    for event in reversed(view.timeline):
        if event.type in (CaseEventType.RESOLVED, CaseEventType.CLOSED):
            return event.at
    return view.updated_at


def recently_closed(
    views: Iterable[CaseView], now: datetime, window: timedelta = CLOSED_WINDOW
) -> list[CaseRow]:
    """Cases resolved or closed within `window` before `now`, most recently closed first."""
    done = []
    for view in views:
        when = closed_at(view) if view.is_case and view.state in CLOSED_STATES else None
        if when is not None and now - window <= when:
            done.append((when, view))
    done.sort(key=lambda pair: pair[0], reverse=True)
    return [case_row(view, now) for _, view in done]


EVENT_LABELS = {
    CaseEventType.CASE_OPENED: "Case opened",
    CaseEventType.SERVER_RECOVERED: "Server recovered",
    CaseEventType.TRIAGED: "Triaged",
    CaseEventType.ASSIGNED: "Assigned",
    CaseEventType.WORK_STARTED: "Work started",
    CaseEventType.CUSTOMER_UPDATE: "Update from support",
    CaseEventType.STATUS_NOTICE: "Status notice",
    CaseEventType.WAITING: "Waiting on you",
    CaseEventType.CUSTOMER_REPLIED: "Message from you",
    CaseEventType.SEVERITY_CHANGED: "Severity changed",
    CaseEventType.RESOLVED: "Resolved",
    CaseEventType.CLOSED: "Closed",
    CaseEventType.REOPENED: "Reopened",
    CaseEventType.SLA_BREACHED: "SLA breached",
    CaseEventType.NOTIFICATION_REQUESTED: "Notification",
    CaseEventType.NOTIFICATION_SENT: "Notification sent",
    CaseEventType.NOTIFICATION_RETRYING: "Notification retrying",
    CaseEventType.NOTIFICATION_FAILED: "Notification failed",
    CaseEventType.NOTE: "Note",
    CaseEventType.SLA_WARNING: "SLA warning",
    CaseEventType.COMMAND_REJECTED: "Command rejected",
}


@dataclass(frozen=True)
class TimelineEntry:
    at: str
    label: str
    text: str
    message: str
    actor: str
    kind: str
    """css class: message, notice, system, internal (staff only)."""


ACTORS = {"timer": "SLA timer", "monitor": "monitor", "notifier": "notifier"}


def _actor(actor: str, user: User) -> str:
    kind, _, name = actor.partition(":")
    if kind == "partner":
        return "you" if name == user.username else name
    if kind == "staff":
        return "support"
    if kind == "email":
        return name
    return ACTORS.get(actor, actor)


def partner_timeline(view: CaseView, user: User) -> list[TimelineEntry]:
    """The events `user` may see (`portal.readmodel.visible_events`: partners only customer-visible ones,
    staff contact ids removed), oldest first, in words."""
    entries = []
    for event in visible_events(view, user):
        message = event.details.get("message")
        text = event.reason
        if event.type.value.startswith("notification."):
            # the reason of a delivery event may quote a delivery error naming a contact: never shown
            role, channel, contact = (event.details.get(k) for k in ("role", "channel", "contact"))
            text = " ".join(
                str(p) for p in (channel, "to" if role else "", role, f"({contact})" if contact else "") if p
            )
        internal = event.visibility is Visibility.INTERNAL
        kind = (
            "internal"
            if internal
            else "message"
            if event.type in (CaseEventType.CUSTOMER_REPLIED, CaseEventType.CUSTOMER_UPDATE)
            else "notice"
            if event.type.value.startswith("notification.")
            else "system"
        )
        label = EVENT_LABELS.get(event.type, event.type.value)
        entries.append(
            TimelineEntry(
                at=stamp(event.at),
                label=f"{label} (internal)" if internal else label,
                text=text,
                message=message if isinstance(message, str) else "",
                actor=_actor(event.actor, user),
                kind=kind,
            )
        )
    return entries


# -- pure: what a form asks for ---------------------------------------------------------------------------


def customers_for(user: User, directory: Directory) -> list[tuple[str, str]]:
    """(customer id, partner id) pairs the user may file for: its partner's customers; every one for staff."""
    if user.role is UserRole.STAFF:
        partners = list(directory.partners.values())
    else:
        partner = directory.partners.get(user.partner_id or "")
        partners = [partner] if partner is not None else []
    return [(customer, p.partner_id) for p in partners for customer in p.customers]


def actor_for(user: User) -> str:
    return f"{'staff' if user.role is UserRole.STAFF else 'partner'}:{user.username}"


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def open_command(
    user: User, directory: Directory, form: Mapping[str, Any], case_id: str, command_id: str, at: datetime
) -> CaseCommand:
    """The OPEN command the new-case form asks for; FormError (field -> problem) when it cannot be sent."""
    errors: dict[str, str] = {}
    allowed = dict(customers_for(user, directory))
    customer = _text(form, "customer")
    if customer not in allowed:
        errors["customer"] = "Choose one of your customers."
    title = " ".join(_text(form, "title").split())
    if not title:
        errors["title"] = "Say in a line what is wrong."
    elif len(title) > TITLE_MAX:
        errors["title"] = f"At most {TITLE_MAX} characters."
    description = _text(form, "description")
    if len(description) > MESSAGE_MAX:
        errors["description"] = f"At most {MESSAGE_MAX} characters."
    server = _text(form, "server") or None
    urgency = _text(form, "urgency")
    severity: Severity | None = None
    if urgency:
        try:
            severity = Severity(int(urgency))
        except ValueError:
            errors["urgency"] = "Choose Sev1, Sev2 or Sev3, or leave it to support."
    if errors:
        raise FormError(errors)
    try:
        return CaseCommand(
            command_id=command_id,
            case_id=case_id,
            type=CommandType.OPEN,
            at=at,
            actor=actor_for(user),
            reason="filed in the partner portal",
            source=CaseSource.PORTAL,
            customer_id=customer,
            partner_id=allowed[customer],
            server_id=server,
            severity=severity,
            title=title,
            message=description,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = str(first["loc"][0]) if first["loc"] else "form"
        name = {"server_id": "server", "message": "description"}.get(where, where)
        raise FormError({name: str(first["msg"])}) from exc


def reply_command(
    user: User, case_id: str, form: Mapping[str, Any], command_id: str, at: datetime
) -> CaseCommand:
    """The CUSTOMER_REPLIED command of the add-a-message form; FormError when the message is empty or long."""
    message = _text(form, "message")
    if not message:
        raise FormError({"message": "Write a message first."})
    if len(message) > MESSAGE_MAX:
        raise FormError({"message": f"At most {MESSAGE_MAX} characters."})
    return CaseCommand(
        command_id=command_id,
        case_id=case_id,
        type=CommandType.CUSTOMER_REPLIED,
        at=at,
        actor=actor_for(user),
        reason="message from the partner portal",
        message=message,
    )


def accepts_messages(state: CaseState) -> bool:
    """Whether the engine takes a customer message in this state (not after close: reopen or file anew)."""
    return state is not CaseState.CLOSED


def new_case_id() -> str:
    """Id of a portal-filed case (random: a person files it)."""
    return "prt-" + uuid.uuid4().hex[:20]


# -- handlers ---------------------------------------------------------------------------------------------


def _now(request: web.Request) -> datetime:
    return request.app[KEYS.clock].now()


def _lookup(request: web.Request, user: User, ref: str) -> CaseView | Pending | None:
    """The case `ref` (id or ticket) if this user may see it; a pending filing if that is all there is."""
    directory = request.app[KEYS.directory]
    view = request.app[KEYS.readmodel].get(ref)
    pending = request.app[PENDING]
    if view is not None:
        pending.drop(view.case_id)
        return view if directory.may_see(user, view.partner, view.customer) else None
    item = pending.get(ref, _now(request))
    if item is not None and directory.may_see(user, item.partner_id, item.customer_id):
        return item
    return None


async def _not_found(request: web.Request) -> web.Response:
    return await render(request, "not_found.html", status=404, what="case")


async def dashboard(request: web.Request) -> web.Response:
    """GET /: the user's open cases (and filings the read model does not show yet)."""
    user = await require_user(request)
    directory = request.app[KEYS.directory]
    now = _now(request)
    views = request.app[KEYS.readmodel].for_user(user, directory)
    known = {v.case_id for v in views}
    pending = [pending_row(p, now) for p in request.app[PENDING].visible(user, directory, now)]
    rows = [p for p in pending if p.case_id not in known] + open_rows(views, now)
    return await render(request, "dashboard.html", rows=rows, now=stamp(now))


async def new_case_form(request: web.Request) -> web.Response:
    """GET /cases/new: the form."""
    user = await require_user(request)
    return await _new_case_page(request, user, {}, {})


async def _new_case_page(
    request: web.Request, user: User, values: Mapping[str, Any], errors: Mapping[str, str], status: int = 200
) -> web.Response:
    customers = customers_for(user, request.app[KEYS.directory])
    return await render(
        request, "case_new.html", status=status, customers=customers, values=values, errors=errors
    )


async def new_case_submit(request: web.Request) -> web.StreamResponse:
    """POST /cases/new: send OPEN (source portal) and go to the case page."""
    user = await require_user(request)
    form = await check_csrf(request)
    values = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    directory = request.app[KEYS.directory]
    now = _now(request)
    case_id = new_case_id()
    try:
        command = open_command(user, directory, values, case_id, str(uuid.uuid4()), now)
    except FormError as exc:
        return await _new_case_page(request, user, values, exc.errors, status=400)
    try:
        await request.app[KEYS.send_command](command)
    except Exception:  # the broker or the network: say so, keep what the partner typed
        log.exception("could not send the open command of %s", case_id)
        return await _new_case_page(
            request, user, values, {"form": "Support could not be reached. Please try again."}, status=503
        )
    request.app[PENDING].add(
        Pending(case_id, command.partner_id, command.customer_id or "", command.title, now)
    )
    flash(request, "Your case was filed. Support will triage it and give it a ticket number.")
    raise web.HTTPSeeOther(request.app.router["case"].url_for(ref=case_id))


async def case_page(request: web.Request) -> web.Response:
    """GET /cases/{ref}: header, customer-visible timeline, the add-a-message form."""
    user = await require_user(request)
    found = _lookup(request, user, request.match_info["ref"])
    if found is None:
        return await _not_found(request)
    now = _now(request)
    if isinstance(found, Pending):
        return await render(
            request,
            "case.html",
            row=pending_row(found, now),
            pending=True,
            timeline=[],
            can_reply=False,
            errors={},
            values={},
        )
    return await render(
        request,
        "case.html",
        row=case_row(found, now),
        pending=False,
        chain_marker=chain_marker(request.app[KEYS.readmodel].chain(found.case_id)),
        owner=found.owner,
        timeline=partner_timeline(found, user),
        can_reply=accepts_messages(found.state) and user.role is UserRole.PARTNER,
        errors={},
        values={},
    )


async def case_message(request: web.Request) -> web.StreamResponse:
    """POST /cases/{ref}/messages: the partner writes to support (CUSTOMER_REPLIED)."""
    user = await require_user(request)
    form = await check_csrf(request)
    found = _lookup(request, user, request.match_info["ref"])
    if found is None:
        return await _not_found(request)
    if user.role is not UserRole.PARTNER:
        flash(request, "Staff answer partners from the staff console.")
        raise web.HTTPSeeOther(request.app.router["case"].url_for(ref=found.case_id))
    if isinstance(found, CaseView) and not accepts_messages(found.state):
        flash(request, "This case is closed. Please file a new case.")
        raise web.HTTPSeeOther(request.app.router["case"].url_for(ref=found.case_id))
    now = _now(request)
    values = {"message": form.get("message", "") if isinstance(form.get("message"), str) else ""}
    try:
        command = reply_command(user, found.case_id, values, str(uuid.uuid4()), now)
    except FormError as exc:
        flash(request, exc.errors["message"])
        raise web.HTTPSeeOther(request.app.router["case"].url_for(ref=found.case_id)) from None
    try:
        await request.app[KEYS.send_command](command)
    except Exception:
        log.exception("could not send a message to case %s", found.case_id)
        flash(request, "Support could not be reached; your message was not sent. Please try again.")
    else:
        flash(request, "Your message was sent to support.")
    raise web.HTTPSeeOther(request.app.router["case"].url_for(ref=found.case_id))


async def closed_cases(request: web.Request) -> web.Response:
    """GET /cases/closed: cases resolved or closed within the last 30 days."""
    user = await require_user(request)
    now = _now(request)
    views = request.app[KEYS.readmodel].for_user(user, request.app[KEYS.directory])
    return await render(
        request, "cases_closed.html", rows=recently_closed(views, now), days=CLOSED_WINDOW.days
    )


async def kb_index(request: web.Request) -> web.Response:
    """GET /kb: every article, or the search results for ?q=."""
    await require_user(request)
    kb = request.app[KB]
    query = request.query.get("q", "").strip()[:200]
    hits = kb.search(query, limit=20) if query else []
    return await render(request, "kb_index.html", articles=list(kb.articles.values()), query=query, hits=hits)


async def kb_search(request: web.Request) -> web.Response:
    """GET /kb/search?q=...: the best articles as JSON [{slug, title, snippet}] (for suggestions)."""
    await require_user(request)
    try:
        limit = min(10, max(1, int(request.query.get("limit", SEARCH_LIMIT))))
    except ValueError:
        limit = SEARCH_LIMIT
    hits = request.app[KB].search(request.query.get("q", ""), limit=limit)
    return web.json_response([hit.as_json() for hit in hits])


async def kb_article(request: web.Request) -> web.Response:
    """GET /kb/{slug}: one article."""
    await require_user(request)
    article = request.app[KB].get(request.match_info["slug"])
    if article is None:
        return await render(request, "not_found.html", status=404, what="article")
    return await render(request, "kb_article.html", article=article)


STATIC_FILES = {"portal.css": "text/css", "portal.js": "text/javascript"}
"""The only files under /static/ (no directory listing, no path tricks)."""


async def static_file(request: web.Request) -> web.StreamResponse:
    """GET /static/{name}: the pages' stylesheet and suggestion script (public: the sign-in page may use
    them; they hold nothing private)."""
    name = request.match_info["name"]
    kind = STATIC_FILES.get(name)
    if kind is None:
        raise web.HTTPNotFound(text="not found")
    return web.FileResponse(STATIC / name, headers={"Content-Type": kind, "Cache-Control": "max-age=300"})


def setup(app: web.Application) -> None:
    """Register the partner pages and the knowledge base (loaded once from settings.kb_dir)."""
    app[KB] = load_knowledge_base(app[KEYS.settings].kb_dir)
    app[PENDING] = PendingFilings()
    app.router.add_get("/", dashboard, name="dashboard")
    app.router.add_get("/cases/new", new_case_form, name="case_new")
    app.router.add_post("/cases/new", new_case_submit)
    app.router.add_get("/cases/closed", closed_cases, name="cases_closed")
    app.router.add_get("/cases/{ref}", case_page, name="case")
    app.router.add_post("/cases/{ref}/messages", case_message, name="case_message")
    app.router.add_get("/kb", kb_index, name="kb")
    app.router.add_get("/kb/search", kb_search, name="kb_search")
    app.router.add_get("/kb/{slug}", kb_article, name="kb_article")
    app.router.add_get("/static/{name}", public(static_file), name="static")
