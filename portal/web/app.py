"""The portal's aiohttp application: sign-in, JSON API, partner pages, staff console, downloads.

`create_app` wires what handlers need into typed app keys (`portal.web.keys.KEYS`) and registers the parts:
`auth` (sessions, /login, /logout), `api` (/api/...), then `pages`, `staff` and `downloads` when those modules
exist (each has `setup(app)`). It does no IO itself; `portal.service.run` gives it a read model, a command
sender and an audit writer, and tests can give it fakes.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType

import jinja2
from aiohttp import web

from fleetcore.clock import Clock, clock_for
from fleetcore.settings import Settings
from portal.directory import Directory
from portal.readmodel import ReadModel
from portal.web import auth
from portal.web.audit_keys import audit_keys
from portal.web.keys import KEYS, Audit, SendCommand

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
PARTS = ("api", "pages", "staff", "downloads")
"""Modules of portal.web whose `setup(app)` adds routes, in this order; missing ones are skipped."""

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
}


def templates_env() -> jinja2.Environment:
    """Jinja2 over portal/templates/ with HTML autoescaping on."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "xml"], default_for_string=True),
    )


@web.middleware
async def edge_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Never a crash: an unexpected exception is a logged 500; under /api/ every error answer is JSON."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if auth.is_api(request) and exc.status >= 400 and exc.content_type != "application/json":
            response = web.json_response(
                {"error": _message(request, exc)}, status=exc.status, headers=_kept_headers(exc)
            )
            response.cookies.update(exc.cookies)
            return response
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        if auth.is_api(request):
            return web.json_response({"error": "internal error"}, status=500)
        return web.Response(text="internal error", status=500)


def _message(request: web.Request, exc: web.HTTPException) -> str:
    """What an error says: its own text when a handler or aiohttp wrote one, else its reason."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return f"{request.method} is not allowed here; allowed: {', '.join(sorted(exc.allowed_methods))}"
    text = exc.text or ""
    return text if text and not text.startswith(f"{exc.status}: ") else exc.reason


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k in ("Allow", "WWW-Authenticate", "Retry-After")}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the security headers on every answer the app sends (errors, files, streams)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


async def healthz(request: web.Request) -> web.Response:
    """200 once the read model has caught up with the cases topic, 503 before."""
    ready = request.app[KEYS.readmodel].caught_up.is_set()
    return web.json_response({"ok": ready, "caught_up": ready}, status=200 if ready else 503)


async def _index(request: web.Request) -> web.StreamResponse:
    """Fallback home page when the partner pages are not installed: where the API is."""
    await auth.require_user(request)
    page = request.app[KEYS.templates].from_string(
        '{% extends "base.html" %}{% block content %}<h1>Support portal</h1>'
        '<p>The JSON API is at <a href="/api/cases">/api/cases</a> '
        '(<a href="/api/openapi.json">OpenAPI</a>).</p>{% endblock %}'
    )
    user = await auth.current_user(request)
    body = page.render(user=user, csrf_token=auth.csrf_token(request), flashes=[], request=request)
    return web.Response(text=body, content_type="text/html")


def _part(name: str) -> ModuleType | None:
    qualified = f"portal.web.{name}"
    try:
        return importlib.import_module(qualified)
    except ModuleNotFoundError as exc:
        if exc.name == qualified:
            return None
        raise


def create_app(
    settings: Settings,
    directory: Directory,
    readmodel: ReadModel,
    send_command: SendCommand,
    audit: Audit,
    clock: Clock | None = None,
    auth_state: auth.AuthState | None = None,
) -> web.Application:
    """The portal app; `clock` defaults to the settings' policy clock, `auth_state` to one from settings."""
    app = web.Application(middlewares=[edge_middleware], client_max_size=2 * 1024 * 1024)
    app[KEYS.settings] = settings
    app[KEYS.directory] = directory
    app[KEYS.readmodel] = readmodel
    app[KEYS.send_command] = send_command
    app[KEYS.audit] = audit
    app[KEYS.clock] = clock or clock_for(settings.clock_scale, settings.clock_origin_ms)
    app[KEYS.templates] = templates_env()
    app[KEYS.auth] = auth_state or auth.AuthState.from_settings(settings)
    app.on_response_prepare.append(_security_headers)
    auth.setup(app)
    app.router.add_get("/healthz", auth.public(healthz), name="healthz")
    app.router.add_get("/audit/keys", auth.public(audit_keys), name="audit_keys")
    for name in PARTS:
        module = _part(name)
        if module is None:
            log.info("portal part %s not installed", name)
            continue
        module.setup(app)
    if not any(r.resource is not None and r.resource.canonical == "/" for r in app.router.routes()):
        app.router.add_get("/", _index, name="index")
    return app
