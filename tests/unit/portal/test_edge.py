"""No request makes the portal fail: EVERY route of the router (walked, so routes added later are covered)
with every method and with oversized, malformed, deeply nested, wrongly typed and non-UTF-8 bodies, from
anonymous visitors, a partner (session and API token) and staff. No answer is a 5xx, every answer carries
the security headers, and every error under /api/ is JSON."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy

from fleetcore.throttle import ThrottlePolicy
from portal.web import auth
from portal.web.app import SECURITY_HEADERS
from portal.web.keys import KEYS
from portal.web.openapi import app_routes
from portal.web.throttle import SignInGuard
from schemas.cases import CaseEvent, CaseEventType, CaseSource, CaseState, Severity, chained, event_id_for
from tests.unit.portal.rig import (
    NADIA_TOKEN,
    USERS,
    Client,
    Recorder,
    csrf_from_page,
    make_app,
    sign_in,
    start,
)

CASE_ID = "prt-0123456789abcdef0123"
TICKET = "FW-100004"
MAX_BODY = 2 * 1024 * 1024
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND")
"""PROPFIND: a method the HTTP parser knows but no route has."""
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
BODIES: dict[str, tuple[bytes, str]] = {
    "oversized": (b"x" * (MAX_BODY + 1), ""),  # content type: JSON under /api/, else a form
    "malformed JSON": (b'{"title": "half', JSON),
    "nested lists": (b"[" * 100_000, JSON),
    "nested objects": (b'{"a":' * 50_000, JSON),
    "wrong content type": (b'{"title": "Printer", "description": "x", "customer_id": "acme"}', "text/plain"),
    "no content type": (b'{"message": "hello"}', "-"),
    "JSON not UTF-8": (b'{"title": "\xff\xfe\xfa", "description": "d", "customer_id": "acme"}', JSON),
    "JSON in UTF-16": ('{"message": "hi"}'.encode("utf-16"), JSON),
    "form not UTF-8": (b"title=\xff\xfe&message=\xc3\x28&reason=\xe2\x82", FORM),
    "unknown charset": (b"message=hello", FORM + "; charset=no-such-charset"),
    "multipart without boundary": (b"--x\r\n\r\n", "multipart/form-data"),
    "broken multipart": (
        b"--xyz\r\nContent-Disposition: form-data\r\n\r\nno end",
        "multipart/form-data; boundary=xyz",
    ),
    "JSON array": (b"[1, 2, 3]", JSON),
    "JSON scalar": (b'"just a string"', JSON),
    "huge number": (b'{"message": ' + b"9" * 5000 + b"}", JSON),
}
_PARAM = re.compile(r"\{([^}]+)\}")
FILL = {"ref": TICKET, "action": "note", "slug": "no-such-article", "name": "portal.css"}


def _fill(path: str) -> str:
    return _PARAM.sub(lambda m: FILL.get(m.group(1), "x"), path)


def _seed() -> list[CaseEvent]:
    """One triaged case of nadia's customer acme, so routes with {ref} reach their body handling."""
    at = datetime.now(UTC) - timedelta(hours=1)
    base = {"case_id": CASE_ID, "source": CaseSource.PORTAL, "customer_id": "acme"}
    base["partner_id"] = "northwind-partners"
    events = [
        CaseEvent(
            event_id=event_id_for(CASE_ID, CaseEventType.CASE_OPENED),
            type=CaseEventType.CASE_OPENED,
            severity=None,
            at=at,
            details={"title": "Web shop down", "message": "since 9"},
            **base,
        ),
        CaseEvent(
            event_id=event_id_for(CASE_ID, CaseEventType.TRIAGED, "t"),
            type=CaseEventType.TRIAGED,
            severity=Severity.SEV2,
            state=CaseState.TRIAGED,
            ticket=TICKET,
            at=at + timedelta(minutes=1),
            **base,
        ),
    ]
    out, previous = [], ""
    for seq, event in enumerate(events):
        placed = chained(event, seq, previous)
        previous = placed.hash
        out.append(placed)
    return out


@dataclass
class Who:
    """One kind of caller: its client, how it authenticates, and whether it has a session to keep."""

    name: str
    client: Client
    headers: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    """Signed in with a session as this user (re-signed in when a walked /logout ends it)."""

    async def refresh(self) -> None:
        if self.user is not None:
            self.client.session.cookie_jar.clear()
            response = await sign_in(self.client, self.user, USERS[self.user])
            assert response.status == 302, await response.text()
        if self.user is not None or self.name == "visitor":
            self.headers[auth.CSRF_HEADER] = await csrf_from_page(
                self.client, "/" if self.user is not None else "/login"
            )


@pytest.fixture
async def callers() -> AsyncIterator[list[Who]]:
    # no limits in the way: walked POSTs to /login count as failed sign-ins
    state = auth.AuthState(
        secret=b"k" * 32,
        sessions=auth.SessionStore(3600.0),
        guard=SignInGuard(ThrottlePolicy(free_failures=10**9, account_failures=10**6), client_limit=10**9),
        secure_cookies=False,
    )
    app = make_app(Recorder(), state)
    app[KEYS.readmodel].apply(_seed())
    app[KEYS.readmodel].caught_up.set()  # /healthz answers 503 before (by design)
    server = TestServer(app)
    whos = [
        Who("anonymous", await start(server, "127.0.0.2")),
        Who("visitor", await start(server, "127.0.0.3")),
        Who("partner (session)", await start(server, "127.0.0.4"), user="nadia"),
        Who(
            "partner (API token)",
            await start(server, "127.0.0.5"),
            {"Authorization": f"Bearer {NADIA_TOKEN}"},
        ),
        Who("staff (session)", await start(server, "127.0.0.6"), user="sam"),
    ]
    try:
        for who in whos:
            await who.refresh()
        yield whos
    finally:
        for who in whos:
            await who.client.close()


def _check(where: str, path: str, status: int, headers: CIMultiDictProxy[str], body: bytes) -> None:
    assert status < 500, f"{where}: {status} {body[:300]!r}"
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, f"{where}: {status} without {name}"
    if path.startswith("/api/") and status >= 400:
        assert headers.get("Content-Type", "").startswith(JSON), f"{where}: {status} is not JSON"
        if body:
            assert body.startswith(b'{"error": '), f"{where}: {body[:200]!r}"
    if status == 405:
        assert headers.get("Allow"), f"{where}: 405 without Allow"


async def test_every_route_every_method_every_body(callers: list[Who]) -> None:
    app = callers[0].client.app
    assert app is not None
    paths = sorted({_fill(path) for _, path, _ in app_routes(app)})
    assert len(paths) >= 20, paths
    started = time.monotonic()
    statuses: dict[int, int] = {}
    requests = 0
    for who in callers:
        for path in paths:
            for method in METHODS:
                bodies: list[tuple[str, bytes | None, str]] = [("no body", None, "")]
                if method in BODY_METHODS:
                    bodies += [(name, data, kind) for name, (data, kind) in BODIES.items()]
                for name, data, kind in bodies:
                    headers = dict(who.headers)
                    if kind == "":
                        kind = JSON if path.startswith("/api/") else FORM
                    if data is not None and kind != "-":
                        headers["Content-Type"] = kind
                    where = f"{who.name}: {method} {path} ({name})"
                    async with who.client.request(
                        method, path, data=data, headers=headers, allow_redirects=False
                    ) as response:
                        body = await response.read()
                        _check(where, path, response.status, response.headers, body)
                        statuses[response.status] = statuses.get(response.status, 0) + 1
                    requests += 1
                    if path == "/logout" and method == "POST":
                        await who.refresh()
    print(f"{requests} requests in {time.monotonic() - started:.1f} s; statuses {sorted(statuses.items())}")
    for expected in (400, 401, 403, 404, 405, 413, 415):
        assert statuses.get(expected), f"no {expected} seen: the walk did not reach that code path"


async def test_api_errors_say_what_is_wrong(callers: list[Who]) -> None:
    bearer = next(w for w in callers if w.name == "partner (API token)")
    client = bearer.client
    cases: list[tuple[str, str, bytes | None, str, int, str]] = [
        ("DELETE", "/api/cases", None, "", 405, "DELETE is not allowed here; allowed: GET, HEAD, POST"),
        ("OPTIONS", "/api/cases/closed", None, "", 405, "OPTIONS is not allowed here; allowed: GET, HEAD"),
        ("POST", "/api/cases", b"x" * (MAX_BODY + 1), JSON, 413, "Maximum request body size"),
        ("POST", "/api/cases", b"[" * 100_000, JSON, 400, "the body is not JSON"),
        ("POST", "/api/cases", b'{"a":' * 50_000, JSON, 400, "the body is not JSON"),
        ("POST", "/api/cases", b'{"title": "\xff"}', JSON, 400, "the body is not JSON"),
        ("POST", "/api/cases", b"{}", "text/plain", 415, "send the body as application/json"),
        ("POST", "/api/cases", b"[]", JSON, 400, "the body must be a JSON object"),
    ]
    for method, path, data, kind, status, message in cases:
        headers = dict(bearer.headers)
        if kind:
            headers["Content-Type"] = kind
        response = await client.request(method, path, data=data, headers=headers)
        answer = await response.json()
        assert response.status == status, (method, path, answer)
        assert answer["error"].startswith(message), answer
        if status == 405:
            assert response.headers["Allow"] == message.rpartition("allowed: ")[2].replace(" ", "")
    # the page side: a form that cannot be decoded is a 400 with a message, not a crash
    partner = next(w for w in callers if w.name == "partner (session)")
    response = await partner.client.post(
        f"/cases/{TICKET}/messages",
        data=b"message=\xff\xfe",
        headers={**partner.headers, "Content-Type": FORM},
    )
    assert response.status == 400
    assert "the form cannot be read" in await response.text()


async def test_a_method_the_http_parser_rejects_is_a_400(callers: list[Who]) -> None:
    """JUNK never reaches the app: aiohttp's HTTP parser answers 400 itself (so without the app's
    security headers; there is no page in it to protect)."""
    response = await callers[0].client.request("JUNK", "/api/cases")
    assert response.status == 400


def test_request_bodies_are_capped_at_the_limit_the_walk_uses() -> None:
    app = make_app(Recorder())
    assert app._client_max_size == MAX_BODY  # the oversized bodies above are one byte over it


async def test_security_headers_on_files_and_redirects(callers: list[Who]) -> None:
    client = callers[0].client
    for path in ("/static/portal.css", "/", "/login", "/healthz", "/no-such-page", "/api/openapi.json"):
        response = await client.get(path, allow_redirects=False)
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (path, response.status, name)
