"""Who is asking: sessions (signed cookie + server-side store), CSRF tokens, API tokens, sign-in and sign-out.

A session is a random id in an HttpOnly, SameSite=Lax cookie (Secure unless
`FLEETWATCH_PORTAL_SECURE_COOKIES=false`), signed with the portal key, naming an entry of the in-memory store
that expires after `portal_session_hours`. Visitors who have not signed in get an anonymous session the first
time a form needs a CSRF token (the sign-in form), so every form POST, sign-in included, carries a token
tied to a session; signing in replaces that session with a fresh id (no fixation). The CSRF token is an
HMAC of the session id, so it dies with the session.

The JSON API also takes `Authorization: Bearer <token>` (tokens stored as sha256 in the directory); bearer
requests carry no ambient credentials, so they are exempt from CSRF. Failed sign-ins are throttled per (user,
client) and per client, and slow a user under attack down for everyone without locking the account
(`portal.web.throttle`); sign-ins, failures and sign-outs are audited (PortalAuditEvent on portal-audit).

Handlers use: `current_user`, `require_user`, `require_staff`, `csrf_token`, `check_csrf`, `render`, `flash`;
a route open to anonymous visitors is registered with its handler wrapped in `public(...)`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import secrets
import time
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from aiohttp import web
from multidict import MultiDictProxy

from fleetcore.errors import ConfigError
from fleetcore.settings import Settings
from fleetcore.throttle import client_key
from portal.directory import User, UserRole
from portal.web.keys import KEYS
from portal.web.throttle import SignInGuard
from schemas.portal import PortalAction, PortalAuditEvent

log = logging.getLogger(__name__)

COOKIE = "fw_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
ANONYMOUS_LIFETIME_S = 3600.0
"""How long a visitor's pre-sign-in session (it only holds the sign-in form's CSRF token) lives."""
MAX_SESSIONS = 100_000
"""Store bound: beyond it, expired sessions go first, then the oldest anonymous ones."""


# -- the signing key -------------------------------------------------------------------------------------


def load_secret(settings: Settings) -> bytes:
    """The key that signs cookies and CSRF tokens: the configured one, else a random one kept in data_dir."""
    if settings.portal_secret:
        return settings.portal_secret.encode("utf-8")
    path = Path(settings.data_dir) / "portal-secret"
    try:
        if path.exists():
            key = path.read_text().strip()
            if len(key) >= 32:
                return key.encode("utf-8")
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        path.write_text(key + "\n")
        path.chmod(0o600)
    except OSError as exc:
        raise ConfigError(f"cannot keep the portal key in {path}: {exc}") from exc
    return key.encode("utf-8")


# -- sessions ---------------------------------------------------------------------------------------------


@dataclass
class Session:
    """One browser session: anonymous (username None) until sign-in."""

    sid: str
    username: str | None
    expires: float
    """time.monotonic() deadline."""
    flashes: list[str] = field(default_factory=list)


class SessionStore:
    """Sessions by id, in memory (a portal restart signs everyone out). Time (monotonic s) is passed in."""

    def __init__(self, lifetime_s: float, max_sessions: int = MAX_SESSIONS) -> None:
        self.lifetime_s = lifetime_s
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, username: str | None, now: float) -> Session:
        if len(self._sessions) >= self.max_sessions:
            self._evict(now)
        lifetime = self.lifetime_s if username else min(self.lifetime_s, ANONYMOUS_LIFETIME_S)
        session = Session(sid=secrets.token_urlsafe(32), username=username, expires=now + lifetime)
        self._sessions[session.sid] = session
        return session

    def get(self, sid: str, now: float) -> Session | None:
        session = self._sessions.get(sid)
        if session is None:
            return None
        if session.expires <= now:
            del self._sessions[sid]
            return None
        return session

    def drop(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    def _evict(self, now: float) -> None:
        for sid in [s.sid for s in self._sessions.values() if s.expires <= now]:
            del self._sessions[sid]
        anonymous = [s.sid for s in self._sessions.values() if s.username is None]
        for sid in anonymous[: max(0, len(self._sessions) - self.max_sessions + 1)]:
            del self._sessions[sid]
        while len(self._sessions) >= self.max_sessions:
            del self._sessions[next(iter(self._sessions))]


@dataclass
class AuthState:
    """What the auth layer keeps per app (`app[KEYS.auth]`)."""

    secret: bytes
    sessions: SessionStore
    guard: SignInGuard = field(default_factory=SignInGuard)
    """The failed sign-in throttle (portal.web.throttle)."""
    secure_cookies: bool = True
    monotonic: Callable[[], float] = time.monotonic
    """Session expiry and the throttle's time (tests set a hand-moved clock)."""
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    """How the sign-in tarpit waits (tests record the wait and move their clock instead)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthState:
        return cls(
            secret=load_secret(settings),
            sessions=SessionStore(settings.portal_session_hours * 3600.0),
            secure_cookies=settings.portal_secure_cookies,
        )

    def sign(self, sid: str) -> str:
        """The cookie value: the session id and its HMAC."""
        mac = hmac.new(self.secret, b"session|" + sid.encode(), hashlib.sha256).hexdigest()
        return f"{sid}.{mac}"

    def unsign(self, value: str) -> str | None:
        """The session id of a cookie value, or None when the signature is wrong."""
        sid, _, _mac = value.rpartition(".")
        if not sid or not hmac.compare_digest(self.sign(sid), value):
            return None
        return sid

    def csrf_for(self, sid: str) -> str:
        return hmac.new(self.secret, b"csrf|" + sid.encode(), hashlib.sha256).hexdigest()


_REQ_SESSION: web.RequestKey[Session] = web.RequestKey("fw_session", Session)
_REQ_NEW_COOKIE: web.RequestKey[Session] = web.RequestKey("fw_new_cookie", Session)
_REQ_DROP_COOKIE: web.RequestKey[bool] = web.RequestKey("fw_drop_cookie", bool)
_REQ_USER: web.RequestKey[User | None] = web.RequestKey("fw_user")
_REQ_BEARER: web.RequestKey[bool] = web.RequestKey("fw_bearer", bool)


def _state(request: web.Request) -> AuthState:
    return request.app[KEYS.auth]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC_MARK = "__fleetwatch_public__"


def public(handler: Handler) -> Handler:
    """Mark a handler as open to everyone (sign-in page, health, OpenAPI): the isolation tests skip it.

    Every other route must refuse anonymous requests (302 to /login for pages, 401 under /api/).
    """
    setattr(handler, PUBLIC_MARK, True)
    return handler


def is_public(handler: object) -> bool:
    """Whether `public` marked this handler."""
    return bool(getattr(handler, PUBLIC_MARK, False))


def is_api(request: web.Request) -> bool:
    """Whether the request is for the JSON API (answers are JSON, never redirects)."""
    return request.path == "/api" or request.path.startswith("/api/")


def json_error(status: type[web.HTTPException], message: str, **headers: str) -> web.HTTPException:
    """An HTTP error whose body is `{"error": message}`."""
    return status(
        text=web.json_response({"error": message}).text,
        content_type="application/json",
        headers=headers or None,
    )


@web.middleware
async def session_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Loads the session named by the cookie; afterwards sets or drops the cookie as handlers asked."""
    state = _state(request)
    raw = request.cookies.get(COOKIE)
    if raw:
        sid = state.unsign(raw)
        session = state.sessions.get(sid, state.monotonic()) if sid else None
        if session is not None:
            request[_REQ_SESSION] = session
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _apply_cookie(request, exc, state)
        raise
    _apply_cookie(request, response, state)
    return response


def _apply_cookie(request: web.Request, response: web.StreamResponse, state: AuthState) -> None:
    if response.prepared:
        return
    new = request.get(_REQ_NEW_COOKIE)
    if new is not None:
        response.set_cookie(
            COOKIE,
            state.sign(new.sid),
            httponly=True,
            samesite="Lax",
            secure=state.secure_cookies,
            path="/",
        )
    elif request.get(_REQ_DROP_COOKIE):
        response.del_cookie(COOKIE, path="/")


def _session(request: web.Request) -> Session | None:
    return request.get(_REQ_SESSION)


def _start_session(request: web.Request, username: str | None) -> Session:
    state = _state(request)
    old = _session(request)
    if old is not None:
        state.sessions.drop(old.sid)
    session = state.sessions.create(username, state.monotonic())
    request[_REQ_SESSION] = session
    request[_REQ_NEW_COOKIE] = session
    request.pop(_REQ_USER, None)
    return session


def _end_session(request: web.Request) -> None:
    session = _session(request)
    if session is not None:
        _state(request).sessions.drop(session.sid)
    request.pop(_REQ_SESSION, None)
    request.pop(_REQ_NEW_COOKIE, None)
    request.pop(_REQ_USER, None)
    request[_REQ_DROP_COOKIE] = True


# -- the contract for handlers -----------------------------------------------------------------------------


async def current_user(request: web.Request) -> User | None:
    """The signed-in user (session cookie, or `Authorization: Bearer <token>`), or None."""
    if _REQ_USER in request:
        return request[_REQ_USER]
    directory = request.app[KEYS.directory]
    user: User | None = None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        user = directory.user_for_token(token.strip())
        request[_REQ_BEARER] = user is not None
    else:
        session = _session(request)
        if session is not None and session.username is not None:
            user = directory.users.get(session.username)
    request[_REQ_USER] = user
    return user


def via_bearer(request: web.Request) -> bool:
    """Whether the request authenticated with an API token (after `current_user`)."""
    return bool(request.get(_REQ_BEARER))


async def require_user(request: web.Request) -> User:
    """The signed-in user; otherwise 302 to /login?next=... (pages) or 401 JSON (under /api/)."""
    user = await current_user(request)
    if user is not None:
        return user
    if is_api(request):
        raise json_error(
            web.HTTPUnauthorized, "sign in or send an API token", **{"WWW-Authenticate": "Bearer"}
        )
    location = request.app.router["login"].url_for().with_query(next=request.path_qs)
    raise web.HTTPFound(location)


async def require_staff(request: web.Request) -> User:
    """The signed-in staff user; 403 for partner users."""
    user = await require_user(request)
    if user.role is not UserRole.STAFF:
        if is_api(request):
            raise json_error(web.HTTPForbidden, "staff only")
        raise web.HTTPForbidden(text="staff only")
    return user


def csrf_token(request: web.Request) -> str:
    """The CSRF token of this request's session (starting an anonymous session if there is none)."""
    session = _session(request) or _start_session(request, None)
    return _state(request).csrf_for(session.sid)


def _csrf_ok(request: web.Request, token: str) -> bool:
    session = _session(request)
    if session is None or request.get(_REQ_NEW_COOKIE) is session or not token:
        return False
    return hmac.compare_digest(_state(request).csrf_for(session.sid), token)


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    """The POSTed form (empty for other content types); 413 past the size limit, 400 when it cannot be read
    (not UTF-8, an unknown charset, a broken multipart body)."""
    try:
        return await request.post()
    except (ValueError, LookupError) as exc:
        if is_api(request):
            raise json_error(web.HTTPBadRequest, f"the form cannot be read: {exc}") from exc
        raise web.HTTPBadRequest(text=f"the form cannot be read: {exc}") from exc


async def check_csrf(request: web.Request) -> MultiDictProxy[Any]:
    """The POSTed form, after checking its `csrf_token` (or X-CSRF-Token header); 403 when it is wrong.

    Requests authenticated by an API token are exempt (no ambient credentials to abuse).
    """
    await current_user(request)
    form = await read_form(request)
    if via_bearer(request):
        return form
    token = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, "")
    if not isinstance(token, str) or not _csrf_ok(request, token):
        if is_api(request):
            raise json_error(web.HTTPForbidden, "missing or wrong CSRF token")
        raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page and try again")
    return form


def check_csrf_header(request: web.Request) -> None:
    """For JSON POSTs: a session-authenticated request must carry the X-CSRF-Token header (bearer: exempt)."""
    if via_bearer(request):
        return
    if not _csrf_ok(request, request.headers.get(CSRF_HEADER, "")):
        raise json_error(web.HTTPForbidden, "missing or wrong CSRF token (X-CSRF-Token header)")


def flash(request: web.Request, message: str) -> None:
    """A one-time message for the next page this session renders."""
    session = _session(request) or _start_session(request, None)
    session.flashes.append(message)


async def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    """Render a template with `user`, `csrf_token` and `flashes` (one-time messages) added to the context."""
    user = await current_user(request)
    session = _session(request)
    flashes: list[str] = []
    if session is not None:
        flashes, session.flashes = session.flashes, []
    page = request.app[KEYS.templates].get_template(template)
    body = page.render(user=user, csrf_token=csrf_token(request), flashes=flashes, request=request, **context)
    return web.Response(text=body, status=status, content_type="text/html")


# -- sign-in and sign-out ----------------------------------------------------------------------------------


MAX_NEXT = 2048
"""Longest `next` target kept after a sign-in; longer ones fall back to "/"."""


def _plain_local(text: str) -> bool:
    """Starts with exactly one "/" and holds no backslash, whitespace, control or format character."""
    if not text.startswith("/") or text.startswith("//"):
        return False
    return not any(c == "\\" or c.isspace() or unicodedata.category(c).startswith("C") for c in text)


def safe_next(target: str | None) -> str:
    """Where a sign-in may send the browser: `target` when it is a path on this site, else "/".

    Accepted only when, as written, it starts with a single "/" and holds no backslash, whitespace or control
    character (browsers drop tabs and newlines and read "\\" as "/", so "/\\t/evil.example" means
    "//evil.example"); when urllib's parser finds no scheme and no host in it; and when its path,
    percent-decoded, passes the same test and has no "." or ".." segment (so no decoding or normalising step
    on the way can turn it into "//host"). aiohttp then writes it to the Location header unchanged but for
    percent-quoting.
    """
    if not target or len(target) > MAX_NEXT or not _plain_local(target):
        return "/"
    try:
        parts = urlsplit(target)
    except ValueError:
        return "/"
    path = unquote(parts.path)
    if parts.scheme or parts.netloc or not _plain_local(path):
        return "/"
    if any(segment in (".", "..") for segment in path.split("/")):
        return "/"
    return target


async def _audit(request: web.Request, action: PortalAction, username: str, **details: str) -> None:
    directory = request.app[KEYS.directory]
    user = directory.users.get(username)
    event = PortalAuditEvent(
        event_id=uuid.uuid4().hex,
        at=request.app[KEYS.clock].now(),
        action=action,
        username=username[:200] or "-",
        partner_id=user.partner_id if user is not None else None,
        remote=(request.remote or "")[:200] or None,
        details=dict(details),
    )
    try:
        await request.app[KEYS.audit](event)
    except Exception:  # the audit trail must not lock people out; it is logged loudly instead
        log.exception("could not write the portal audit event %s for %s", action.value, username)


async def login_page(request: web.Request) -> web.Response:
    """GET /login: the sign-in form."""
    return await render(request, "login.html", next=safe_next(request.query.get("next")), error=None)


async def login_submit(request: web.Request) -> web.StreamResponse:
    """POST /login: check CSRF, throttle, password; start a fresh session; audit either way.

    The throttle (`portal.web.throttle.SignInGuard` over `fleetcore.throttle`) refuses a client that failed
    too often (429 with Retry-After) and makes every attempt on a user under attack wait first; it never
    refuses a client that has not failed.
    """
    form = await check_csrf(request)
    username = str(form.get("username", "")).strip().lower()[:64]
    password = str(form.get("password", ""))
    target = safe_next(str(form.get("next", "")))
    state = _state(request)
    client = client_key(request.remote or "-")
    verdict = state.guard.check(username, client, state.monotonic())
    if verdict.refused:
        await _audit(request, PortalAction.SIGN_IN_FAILED, username or "-", reason="throttled")
        response = await render(
            request,
            "login.html",
            status=429,
            next=target,
            error="Too many failed sign-ins from here. Wait a few minutes and try again.",
        )
        response.headers["Retry-After"] = str(max(1, math.ceil(verdict.retry_after_s)))
        return response
    slowed = {"delay_s": f"{verdict.delay_s:g}"} if verdict.delay_s > 0 else {}
    if verdict.delay_s > 0:
        await state.sleep(verdict.delay_s)
    user = request.app[KEYS.directory].authenticate(username, password) if username and password else None
    if user is None:
        state.guard.failed(username, client, state.monotonic())
        await _audit(
            request, PortalAction.SIGN_IN_FAILED, username or "-", reason="bad credentials", **slowed
        )
        return await render(
            request, "login.html", status=401, next=target, error="Wrong user name or password."
        )
    state.guard.succeeded(username, client)
    _start_session(request, user.username)
    await _audit(request, PortalAction.SIGN_IN, user.username, **slowed)
    raise web.HTTPFound(target)


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /logout: end the session (CSRF-checked, so other sites cannot sign people out)."""
    await check_csrf(request)
    user = await current_user(request)
    _end_session(request)
    if user is not None:
        await _audit(request, PortalAction.SIGN_OUT, user.username)
    raise web.HTTPFound(request.app.router["login"].url_for())


def setup(app: web.Application) -> None:
    """Register the sign-in routes and the session middleware (the app needs KEYS.auth set)."""
    app.middlewares.append(session_middleware)
    app.router.add_get("/login", public(login_page), name="login")
    app.router.add_post("/login", public(login_submit))
    app.router.add_post("/logout", logout, name="logout")
