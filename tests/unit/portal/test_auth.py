"""The portal's auth layer without Kafka: throttle, session store, cookie signing, the portal key, and the
request helpers in an app with fake command and audit writers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fleetcore.settings import Settings
from portal.directory import load_directory
from portal.readmodel import ReadModel
from portal.web import auth
from portal.web.app import create_app
from portal.web.keys import KEYS
from schemas.commands import CaseCommand
from schemas.portal import PortalAction, PortalAuditEvent

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "partners.yaml"
TOKEN_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def test_throttle_blocks_after_the_limit_and_forgets_after_the_window() -> None:
    throttle = auth.LoginThrottle(limit=3, window_s=60)
    for at in (0.0, 1.0):
        throttle.fail(["user:tom"], at)
    assert not throttle.blocked(["user:tom"], 2.0)
    throttle.fail(["user:tom"], 2.0)
    assert throttle.blocked(["user:tom"], 3.0)
    assert throttle.blocked(["user:nadia", "user:tom"], 3.0), "any key blocked blocks"
    assert not throttle.blocked(["user:nadia"], 3.0)
    assert not throttle.blocked(["user:tom"], 60.5), "the first failure left the window"
    throttle.fail(["user:tom"], 60.6)
    assert throttle.blocked(["user:tom"], 60.7)
    throttle.clear("user:tom")
    assert not throttle.blocked(["user:tom"], 60.7)


def test_throttle_memory_is_bounded() -> None:
    throttle = auth.LoginThrottle(limit=2, window_s=60, max_keys=10)
    for n in range(100):
        throttle.fail([f"user:guess{n}"], float(n) / 10)
    assert len(throttle) <= 10
    assert throttle.blocked(["user:guess99"], 10.0) is False
    throttle.fail(["user:guess99"], 10.0)
    assert throttle.blocked(["user:guess99"], 10.0)


def test_session_store_expiry_and_bound() -> None:
    store = auth.SessionStore(lifetime_s=7200, max_sessions=3)
    user = store.create("nadia", now=0.0)
    anonymous = store.create(None, now=0.0)
    assert store.get(user.sid, 7199.0) is user
    assert store.get(anonymous.sid, 3599.0) is anonymous
    assert store.get(anonymous.sid, 3600.0) is None, "anonymous sessions live an hour at most"
    assert store.get(user.sid, 7200.0) is None
    assert len(store) == 0, "expired sessions are removed when looked up"

    users = [store.create(f"u{i}", now=0.0) for i in range(3)]
    store.create(None, now=0.0)
    assert len(store) == 3
    assert store.get(users[0].sid, 1.0) is None, "the oldest goes when the store is full"
    kept = store.create("u9", now=1.0)
    assert store.get(kept.sid, 2.0) is kept
    store.drop(kept.sid)
    assert store.get(kept.sid, 2.0) is None
    assert len({s.sid for s in users}) == 3


def test_cookie_signature() -> None:
    state = auth.AuthState(secret=b"k" * 32, sessions=auth.SessionStore(60))
    value = state.sign("abc")
    assert state.unsign(value) == "abc"
    assert state.unsign(value[:-1] + ("0" if value[-1] != "0" else "1")) is None
    assert state.unsign("abd" + value[3:]) is None
    assert state.unsign("abc") is None
    assert state.unsign("") is None
    other = auth.AuthState(secret=b"j" * 32, sessions=auth.SessionStore(60))
    assert other.unsign(value) is None
    assert state.csrf_for("abc") != state.csrf_for("abd")
    assert state.csrf_for("abc") != other.csrf_for("abc")


def test_portal_key_configured_or_kept_in_data_dir(tmp_path: Path) -> None:
    assert auth.load_secret(Settings(portal_secret="configured", data_dir=tmp_path)) == b"configured"
    first = auth.load_secret(Settings(data_dir=tmp_path / "d"))
    kept = tmp_path / "d" / "portal-secret"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert len(first) == 64
    assert auth.load_secret(Settings(data_dir=tmp_path / "d")) == first, "the same key after a restart"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/cases/FW-1", "/cases/FW-1"),
        ("/?a=b", "/?a=b"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_only_local_paths_follow_a_sign_in(target: str | None, expected: str) -> None:
    assert auth._safe_next(target) == expected


# -- the request helpers in an app ---------------------------------------------------------------------


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.audits: list[PortalAuditEvent] = []
        self.commands: list[CaseCommand] = []

    async def audit(self, event: PortalAuditEvent) -> None:
        if self.fail:
            raise OSError("audit topic down")
        self.audits.append(event)

    async def send(self, command: CaseCommand) -> None:
        self.commands.append(command)


async def _whoami(request: web.Request) -> web.Response:
    user = await auth.require_user(request)
    return web.Response(text=user.username)


async def _staff_only(request: web.Request) -> web.Response:
    user = await auth.require_staff(request)
    return web.Response(text=user.username)


async def _form(request: web.Request) -> web.Response:
    await auth.require_user(request)
    form = await auth.check_csrf(request)
    auth.flash(request, f"saved {form.get('x')}")
    raise web.HTTPFound("/flashes")


async def _flashes(request: web.Request) -> web.Response:
    await auth.require_user(request)
    return await auth.render(request, "login.html", next="/", error=None)


async def _client(
    recorder: Recorder, clock_now: list[float], secure: bool = False
) -> TestClient[web.Request, web.Application]:
    settings = Settings(portal_secret="unit-test-key", portal_secure_cookies=secure)
    state = auth.AuthState.from_settings(settings)
    state.monotonic = lambda: clock_now[0]
    app = create_app(
        settings,
        load_directory(EXAMPLE),
        ReadModel("127.0.0.1:1", "unused"),
        recorder.send,
        recorder.audit,
        auth_state=state,
    )
    app.router.add_get("/t/whoami", _whoami)
    app.router.add_get("/api/t/whoami", _whoami)
    app.router.add_get("/t/staff", _staff_only)
    app.router.add_post("/t/form", _form)
    app.router.add_get("/flashes", _flashes)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def rig() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], Recorder, list[float]]]:
    recorder = Recorder()
    now = [1000.0]
    client = await _client(recorder, now)
    try:
        yield client, recorder, now
    finally:
        await client.close()


async def _token(client: TestClient[web.Request, web.Application], path: str = "/login") -> str:
    response = await client.get(path)
    match = TOKEN_INPUT.search(await response.text())
    assert match
    return match.group(1)


async def _sign_in(client: TestClient[web.Request, web.Application], user: str, password: str) -> int:
    token = await _token(client)
    response = await client.post(
        "/login",
        data={"username": user, "password": password, "csrf_token": token, "next": "/t/whoami"},
        allow_redirects=False,
    )
    return response.status


Rig = tuple[TestClient[web.Request, web.Application], Recorder, list[float]]


async def test_require_user_redirects_pages_and_refuses_the_api(rig: Rig) -> None:
    client, _, _ = rig
    response = await client.get("/t/whoami?x=1", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/login?next=/t/whoami?x%3D1"
    response = await client.get("/api/t/whoami")
    assert response.status == 401
    assert await response.json() == {"error": "sign in or send an API token"}
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_sign_in_cookie_session_expiry(rig: Rig) -> None:
    client, recorder, now = rig
    assert await _sign_in(client, "nadia", "northwind-demo") == 302
    response = await client.get("/t/whoami")
    assert await response.text() == "nadia"
    now[0] += 12 * 3600 - 1
    assert (await client.get("/api/t/whoami")).status == 200
    now[0] += 1
    assert (await client.get("/api/t/whoami")).status == 401, "the session expired on the server"
    assert [e.action for e in recorder.audits] == [PortalAction.SIGN_IN]


async def test_tampered_cookie_is_ignored(rig: Rig) -> None:
    client, _, _ = rig
    assert await _sign_in(client, "nadia", "northwind-demo") == 302
    value = client.session.cookie_jar.filter_cookies(client.make_url("/"))["fw_session"].value
    sid = value.rpartition(".")[0]
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({"fw_session": sid + "." + "0" * 64})
    assert (await client.get("/api/t/whoami")).status == 401
    client.session.cookie_jar.update_cookies({"fw_session": sid})
    assert (await client.get("/api/t/whoami")).status == 401


async def test_bearer_tokens(rig: Rig) -> None:
    client, _, _ = rig
    good = {"Authorization": "Bearer fwt_demo_northwind_token"}
    response = await client.get("/api/t/whoami", headers=good)
    assert await response.text() == "nadia"
    assert "fw_session" not in response.cookies
    for header in ("Bearer wrong", "Basic fwt_demo_northwind_token", "Bearer ", "fwt_demo_northwind_token"):
        assert (await client.get("/api/t/whoami", headers={"Authorization": header})).status == 401
    # a form POST with a token needs no CSRF field (no ambient credential to abuse)
    response = await client.post("/t/form", data={"x": "1"}, headers=good, allow_redirects=False)
    assert response.status == 302


async def test_csrf_and_flash(rig: Rig) -> None:
    client, _, _ = rig
    assert await _sign_in(client, "nadia", "northwind-demo") == 302
    assert (await client.post("/t/form", data={"x": "1"})).status == 403
    assert (await client.post("/t/form", data={"x": "1", "csrf_token": "nope"})).status == 403
    token = await _token(client, "/flashes")
    response = await client.post("/t/form", data={"x": "1", "csrf_token": token})
    assert response.status == 200
    assert "saved 1" in await response.text()
    assert "saved 1" not in await (await client.get("/flashes")).text(), "a flash shows once"
    response = await client.post("/t/form", data={"x": "2"}, headers={"X-CSRF-Token": token})
    assert "saved 2" in await response.text()


async def test_staff_only(rig: Rig) -> None:
    client, _, _ = rig
    assert await _sign_in(client, "tom", "telco-demo") == 302
    assert (await client.get("/t/staff")).status == 403
    client.session.cookie_jar.clear()
    assert await _sign_in(client, "sam", "staff-demo") == 302
    assert await (await client.get("/t/staff")).text() == "sam"


async def test_cookies_are_secure_unless_configured_otherwise() -> None:
    client = await _client(Recorder(), [0.0], secure=True)
    try:
        response = await client.get("/login")
        cookie = response.cookies["fw_session"]
        assert cookie["secure"]
        assert cookie["httponly"]
        assert cookie["samesite"] == "Lax"
    finally:
        await client.close()


async def test_sign_in_survives_a_broken_audit_topic() -> None:
    recorder = Recorder(fail=True)
    client = await _client(recorder, [0.0])
    try:
        assert await _sign_in(client, "nadia", "northwind-demo") == 302
        assert await (await client.get("/t/whoami")).text() == "nadia"
    finally:
        await client.close()


async def test_failed_sign_ins_are_audited_and_throttled_per_address(rig: Rig) -> None:
    client, recorder, now = rig
    state = client.app[KEYS.auth]
    state.throttle_remote = auth.LoginThrottle(limit=3, window_s=60)
    for name in ("a1", "a2", "a3"):
        assert await _sign_in(client, name, "x") == 401
    assert await _sign_in(client, "nadia", "northwind-demo") == 429, "this address used up its tries"
    now[0] += 61
    assert await _sign_in(client, "nadia", "northwind-demo") == 302
    reasons = [(e.action, e.details.get("reason")) for e in recorder.audits]
    assert reasons == [
        (PortalAction.SIGN_IN_FAILED, "bad credentials"),
        (PortalAction.SIGN_IN_FAILED, "bad credentials"),
        (PortalAction.SIGN_IN_FAILED, "bad credentials"),
        (PortalAction.SIGN_IN_FAILED, "throttled"),
        (PortalAction.SIGN_IN, None),
    ]
    assert recorder.audits[0].remote == "127.0.0.1"


async def test_security_headers_and_health(rig: Rig) -> None:
    client, _, _ = rig
    response = await client.get("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    response = await client.get("/healthz")
    assert response.status == 503, "the read model has not caught up"
    assert await response.json() == {"ok": False, "caught_up": False}
