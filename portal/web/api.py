"""The portal's JSON API (/api/...): a partner's cases, one case with its timeline, new cases and messages.

Authentication: the session cookie (then POSTs need the `X-CSRF-Token` header) or `Authorization: Bearer
<token>`. Case state comes only from the read model; changes go to the case engine as `CaseCommand`s, so a
POST answers 202 (accepted) and the case shows up once the engine has written it. Isolation: every case
lookup goes through `_visible_case`, which answers 404 for cases the user may not see, exactly as for cases
that do not exist. Errors are JSON `{"error": ...}`. `ENDPOINTS` describes every route for the OpenAPI
document (`portal.web.openapi`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from casefile.audit import AuditReport
from casefile.view import CLOSED_STATES, CaseView, clock_of
from fleetcore.errors import FleetwatchError
from portal.directory import User, UserRole
from portal.readmodel import chain_marker, visible_events
from portal.web import auth
from portal.web.keys import KEYS
from schemas.cases import CaseEventType, CaseSource, CaseState, DetailValue, Visibility
from schemas.commands import CaseCommand, CommandType
from schemas.inventory import ID_PATTERN

CLOSED_WINDOW = timedelta(days=30)
"""How far back GET /api/cases/closed looks (by the time the case was resolved or closed)."""


# -- the API's models (also the OpenAPI schema components) -------------------------------------------------


class ApiError(BaseModel):
    """Every error answer."""

    error: str = Field(description="What went wrong, for people.")


class SlaFacts(BaseModel):
    """What the support policy's clocks say about a case so far."""

    breaches: list[str] = Field(description="SLA clocks that were breached (e.g. first_response).")
    first_response_at: datetime | None = Field(description="First status update the customer got.")
    last_customer_update_at: datetime | None = Field(description="Latest status update to the customer.")
    work_started_at: datetime | None = Field(description="When an engineer first acknowledged the case.")
    waiting_since: datetime | None = Field(description="Waiting on the customer since (clocks paused).")
    resolved_at: datetime | None = Field(description="When the case was last resolved.")
    deadlines: dict[str, datetime] = Field(
        default_factory=dict,
        description="Running SLA clocks and when each is due: sev1.work (work must start), status.update "
        "(next customer status update), first.response. Paused or met clocks are absent.",
    )


class CaseSummary(BaseModel):
    """One case as its list shows it."""

    case_id: str
    ticket: str | None = Field(description="Ticket number (FW-...), once support has triaged the case.")
    title: str
    state: CaseState
    severity: int | None = Field(description="1 (critical) to 4; none until triaged.")
    source: CaseSource | None
    customer_id: str | None
    partner_id: str | None
    server_id: str | None
    opened_at: datetime | None
    updated_at: datetime | None
    sla: SlaFacts


class TimelineEntry(BaseModel):
    """One event of a case's timeline (partners: customer-visible events only)."""

    seq: int
    at: datetime
    type: CaseEventType
    actor: str
    state: CaseState = Field(description="The case's state after this event.")
    reason: str
    message: str | None = Field(description="The text of an update, reply or note, if any.")
    visibility: Visibility
    details: dict[str, DetailValue]


class ChainInfo(BaseModel):
    """The verdict on the case's signed audit chain (the one `fleetwatch audit verify` gives)."""

    status: str = Field(
        description="verified (intact, every event signed by a published key, in the case's partition); "
        "unsigned (intact, but events from before signing); broken (not to be taken as fact)."
    )
    fault: str | None = Field(description="Why the chain is not verified (None when it is).")
    problems: list[str] = Field(description="Every problem found (empty unless broken).")
    head_seq: int | None = Field(description="The newest event's seq.")
    head_hash: str = Field(description="The newest event's hash (compare with your emails' chain head).")


class CaseDetail(CaseSummary):
    """A case with its timeline and the verdict on its audit chain."""

    timeline: list[TimelineEntry]
    chain: ChainInfo


class CaseList(BaseModel):
    """A list of cases, newest first."""

    cases: list[CaseSummary]


class NewCase(BaseModel):
    """A case a partner enters: it opens NEW and support triages it (severity, ticket)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=3, max_length=200, description="One line: what is wrong.")
    description: str = Field(min_length=1, max_length=20000, description="What you see, since when.")
    customer_id: str = Field(pattern=ID_PATTERN, description="One of your partner's customers.")
    server_id: str | None = Field(default=None, pattern=ID_PATTERN, description="The server, if one.")


class NewMessage(BaseModel):
    """A message from the partner on a case (the customer replied)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    message: str = Field(min_length=1, max_length=20000)


class Accepted(BaseModel):
    """The command was handed to the case engine; the case changes once it has applied it."""

    case_id: str
    command_id: str
    status: str = "accepted"
    location: str = Field(description="Where the case can be read (GET).")


# -- descriptions for the OpenAPI document ---------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """How one API route is described in the OpenAPI document."""

    summary: str
    responses: dict[int, tuple[str, type[BaseModel] | None]]
    body: type[BaseModel] | None = None
    tag: str = "cases"


_COMMON: dict[int, tuple[str, type[BaseModel] | None]] = {
    401: ("Not signed in, or an unknown API token", ApiError),
}
_CASE_404 = {404: ("No such case, or not one of yours", ApiError)}
_WRITE = {
    400: ("The body is not a JSON object (malformed, not UTF-8, or nested deeper than 1024)", ApiError),
    403: ("Missing CSRF token (cookie sessions), or not a partner user", ApiError),
    413: ("The body is larger than the portal accepts (2 MiB)", ApiError),
    415: ("The body is not sent as application/json", ApiError),
    422: ("The body does not fit (the message names the field)", ApiError),
    503: ("The case engine's topic could not be written; try again", ApiError),
}

ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("GET", "/api/cases"): Endpoint(
        "Your open cases (severity, state, ticket, SLA facts)", {200: ("Open cases", CaseList), **_COMMON}
    ),
    ("GET", "/api/cases/closed"): Endpoint(
        "Your cases resolved or closed in the last 30 days",
        {200: ("Closed cases", CaseList), **_COMMON},
    ),
    ("GET", "/api/cases/{ref}"): Endpoint(
        "One case by id or ticket number, with its timeline",
        {200: ("The case", CaseDetail), **_COMMON, **_CASE_404},
    ),
    ("POST", "/api/cases"): Endpoint(
        "Enter a case for one of your customers (opens NEW; support triages it)",
        {202: ("Accepted", Accepted), **_COMMON, **_WRITE},
        body=NewCase,
    ),
    ("POST", "/api/cases/{ref}/messages"): Endpoint(
        "Add a message to a case (the customer replied)",
        {202: ("Accepted", Accepted), **_COMMON, **_CASE_404, **_WRITE},
        body=NewMessage,
    ),
    ("GET", "/api/openapi.json"): Endpoint(
        "This document (OpenAPI 3.1)", {200: ("The OpenAPI document", None)}, tag="meta"
    ),
}


# -- shaping ------------------------------------------------------------------------------------------------


def summary_of(view: CaseView) -> CaseSummary:
    """A case view as the API lists it."""
    first_update = next(
        (
            e.at
            for e in view.timeline
            if e.type in (CaseEventType.CUSTOMER_UPDATE, CaseEventType.STATUS_NOTICE)
        ),
        None,
    )
    return CaseSummary(
        case_id=view.case_id,
        ticket=view.ticket,
        title=view.title,
        state=view.state,
        severity=int(view.severity) if view.severity is not None else None,
        source=view.source,
        customer_id=view.customer,
        partner_id=view.partner,
        server_id=view.server,
        opened_at=view.opened_at,
        updated_at=view.updated_at,
        sla=SlaFacts(
            breaches=[clock_of(e) for e in view.breaches],
            first_response_at=first_update,
            last_customer_update_at=view.last_customer_update_at,
            work_started_at=view.work_started_at,
            waiting_since=view.waiting_since,
            resolved_at=view.resolved_at,
            deadlines=dict(view.deadlines),
        ),
    )


def chain_info(report: AuditReport) -> ChainInfo:
    """The API's form of a chain verdict (`fault`: the pages' marker line)."""
    return ChainInfo(
        status=report.status.value,
        fault=chain_marker(report),
        problems=list(report.problems),
        head_seq=report.head_seq,
        head_hash=report.head_hash,
    )


def detail_of(view: CaseView, user: User, chain: AuditReport) -> CaseDetail:
    """A case with the timeline `user` may see and the verdict on its chain."""
    timeline = [
        TimelineEntry(
            seq=e.seq,
            at=e.at,
            type=e.type,
            actor=e.actor,
            state=e.state,
            reason=e.reason,
            message=str(e.details["message"]) if e.details.get("message") is not None else None,
            visibility=e.visibility,
            details=e.details,
        )
        for e in visible_events(view, user)
    ]
    return CaseDetail(**summary_of(view).model_dump(), timeline=timeline, chain=chain_info(chain))


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status, content_type="application/json")


def visible_case(request: web.Request, user: User, ref: str) -> CaseView:
    """The case `ref` (id or ticket) if `user` may see it; 404 otherwise (the same answer as for no case)."""
    view = request.app[KEYS.readmodel].get(ref)
    if view is None or not request.app[KEYS.directory].may_see(user, view.partner, view.customer):
        raise auth.json_error(web.HTTPNotFound, "no such case")
    return view


def _is_json_type(content_type: str) -> bool:
    kind, _, subtype = content_type.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    """The body as `model`.

    415 unless it is sent as JSON, 413 past the size limit, 400 unless it is a JSON object in UTF-8 nested at
    most 1024 deep (orjson's limit), 422 naming the first field that does not fit.
    """
    if not _is_json_type(request.content_type):
        raise auth.json_error(
            web.HTTPUnsupportedMediaType,
            f"send the body as application/json (not {request.content_type or 'no content type'})",
        )
    raw = await request.read()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise auth.json_error(web.HTTPBadRequest, f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise auth.json_error(web.HTTPBadRequest, "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise auth.json_error(web.HTTPUnprocessableEntity, f"{where}: {first['msg']}") from exc


async def _partner_writer(request: web.Request) -> User:
    user = await auth.require_user(request)
    auth.check_csrf_header(request)
    if user.role is not UserRole.PARTNER or user.partner_id is None:
        raise auth.json_error(web.HTTPForbidden, "only partner users enter cases and messages here")
    return user


async def _send(request: web.Request, command: CaseCommand) -> None:
    try:
        await request.app[KEYS.send_command](command)
    except FleetwatchError as exc:
        raise auth.json_error(
            web.HTTPServiceUnavailable, f"could not hand the case to support: {exc}"
        ) from exc


# -- handlers ----------------------------------------------------------------------------------------------


async def list_open(request: web.Request) -> web.Response:
    """GET /api/cases: the user's open cases."""
    user = await auth.require_user(request)
    views = request.app[KEYS.readmodel].for_user(user, request.app[KEYS.directory])
    return _json(CaseList(cases=[summary_of(v) for v in views if v.is_open]))


async def list_closed(request: web.Request) -> web.Response:
    """GET /api/cases/closed: the user's cases resolved or closed in the last 30 days."""
    user = await auth.require_user(request)
    since = request.app[KEYS.clock].now() - CLOSED_WINDOW
    views = request.app[KEYS.readmodel].for_user(user, request.app[KEYS.directory])
    closed = [
        v for v in views if v.state in CLOSED_STATES and (v.resolved_at or v.updated_at or since) >= since
    ]
    return _json(CaseList(cases=[summary_of(v) for v in closed]))


async def get_case(request: web.Request) -> web.Response:
    """GET /api/cases/{ref}: one case (id or ticket) with its timeline."""
    user = await auth.require_user(request)
    view = visible_case(request, user, request.match_info["ref"])
    return _json(detail_of(view, user, request.app[KEYS.readmodel].chain(view.case_id)))


async def create_case(request: web.Request) -> web.Response:
    """POST /api/cases: enter a case (OPEN, source portal); 202 with its id."""
    user = await _partner_writer(request)
    new: NewCase = await _body(request, NewCase)
    partner = request.app[KEYS.directory].partners[user.partner_id or ""]
    if new.customer_id not in partner.customers:
        raise auth.json_error(
            web.HTTPUnprocessableEntity,
            f"customer_id: {new.customer_id} is not one of {partner.name}'s customers "
            f"({', '.join(partner.customers) or 'none'})",
        )
    case_id = f"prt-{uuid.uuid4().hex[:20]}"
    command = CaseCommand(
        command_id=uuid.uuid4().hex,
        case_id=case_id,
        type=CommandType.OPEN,
        at=request.app[KEYS.clock].now(),
        actor=f"partner:{user.username}",
        reason="entered in the partner portal",
        source=CaseSource.PORTAL,
        customer_id=new.customer_id,
        partner_id=partner.partner_id,
        server_id=new.server_id,
        title=new.title,
        message=new.description,
    )
    await _send(request, command)
    return _json(
        Accepted(case_id=case_id, command_id=command.command_id, location=f"/api/cases/{case_id}"), 202
    )


async def add_message(request: web.Request) -> web.Response:
    """POST /api/cases/{ref}/messages: the partner's message on a case (CUSTOMER_REPLIED)."""
    user = await _partner_writer(request)
    view = visible_case(request, user, request.match_info["ref"])
    new: NewMessage = await _body(request, NewMessage)
    command = CaseCommand(
        command_id=uuid.uuid4().hex,
        case_id=view.case_id,
        type=CommandType.CUSTOMER_REPLIED,
        at=request.app[KEYS.clock].now(),
        actor=f"partner:{user.username}",
        reason="message from the partner portal",
        message=new.message,
    )
    await _send(request, command)
    return _json(
        Accepted(case_id=view.case_id, command_id=command.command_id, location=f"/api/cases/{view.case_id}"),
        202,
    )


def setup(app: web.Application) -> None:
    """Register the API routes and the OpenAPI document."""
    from portal.web import openapi

    app.router.add_get("/api/openapi.json", auth.public(openapi.document), name="api-openapi")
    app.router.add_get("/api/cases", list_open, name="api-cases")
    app.router.add_post("/api/cases", create_case)
    app.router.add_get("/api/cases/closed", list_closed, name="api-cases-closed")
    app.router.add_get("/api/cases/{ref}", get_case, name="api-case")
    app.router.add_post("/api/cases/{ref}/messages", add_message, name="api-case-messages")
