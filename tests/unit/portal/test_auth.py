"""The portal's auth layer without Kafka: session store, cookie signing, the portal key, the request helpers,
and sign-in with its throttle in an app with recording command and audit writers (tests/unit/portal/rig.py).
Clients on other loopback addresses (127.0.0.x) are other clients to the throttle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fleetcore.settings import Settings
from fleetcore.throttle import ThrottlePolicy
from portal.web import auth
from portal.web.throttle import SignInGuard
from schemas.portal import PortalAction
from tests.unit.portal.rig import USERS, Client, Recorder, csrf_from_page, make_app, sign_in, start


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


# -- the request helpers in an app ---------------------------------------------------------------------


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
    app = make_app(recorder, state, portal_secure_cookies=secure)
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
    return await csrf_from_page(client, path)


async def _sign_in(client: TestClient[web.Request, web.Application], user: str, password: str) -> int:
    return (await sign_in(client, user, password, "/t/whoami")).status


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


# -- the sign-in throttle in the app: per (user, client), per client, and a tarpit per user -----------------


class Time:
    """The auth state's clock, moved by hand; the tarpit's waits are recorded and move it (no real sleep)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


class Site:
    """The app with a hand-moved clock and a small throttle; clients from 127.0.0.<n>."""

    def __init__(self, guard: SignInGuard) -> None:
        self.time = Time()
        self.recorder = Recorder()
        state = auth.AuthState(
            secret=b"k" * 32,
            sessions=auth.SessionStore(3600.0),
            guard=guard,
            secure_cookies=False,
            monotonic=self.time.monotonic,
            sleep=self.time.sleep,
        )
        self.server = TestServer(make_app(self.recorder, state))
        self.clients: dict[int, Client] = {}

    async def client(self, n: int) -> Client:
        if n not in self.clients:
            self.clients[n] = await start(self.server, f"127.0.0.{n}")
        return self.clients[n]

    async def attempt(self, n: int, user: str, password: str) -> tuple[int, str | None]:
        """Sign in from client n (a fresh cookie jar each time); status and Retry-After."""
        client = await self.client(n)
        client.session.cookie_jar.clear()
        response = await sign_in(client, user, password)
        return response.status, response.headers.get("Retry-After")

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()
        await self.server.close()


POLICY = ThrottlePolicy(
    free_failures=3,
    base_delay_s=60,
    max_delay_s=240,
    account_failures=10,
    account_window_s=600,
    account_delay_s=2,
)


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    made = Site(SignInGuard(POLICY, client_limit=6, client_window_s=60))
    try:
        yield made
    finally:
        await made.close()


async def test_a_client_that_guessed_wrong_cannot_lock_the_user_out(site: Site) -> None:
    """Wrong guesses from one client refuse that client for that user, not the user everywhere."""
    for _ in range(4):  # three free failures, the fourth blocks this client for nadia for 60 s
        assert (await site.attempt(2, "nadia", "wrong"))[0] == 401
    status, retry_after = await site.attempt(2, "nadia", USERS["nadia"])
    assert status == 429, "this client used up its tries for nadia"
    assert retry_after == "60"
    assert (await site.attempt(3, "nadia", USERS["nadia"]))[0] == 302, "another client signs nadia in"
    assert (await site.attempt(2, "tom", USERS["tom"]))[0] == 302, "the client may still sign in as tom"
    site.time.now += 30
    assert (await site.attempt(2, "nadia", USERS["nadia"]))[1] == "30"
    site.time.now += 30
    assert (await site.attempt(2, "nadia", USERS["nadia"]))[0] == 302, "the block ran out"
    assert site.time.waits == [], "four failures are not an attack on nadia: no tarpit"
    reasons = [(e.action, e.details.get("reason"), e.remote) for e in site.recorder.audits]
    assert reasons[:7] == [
        *[(PortalAction.SIGN_IN_FAILED, "bad credentials", "127.0.0.2")] * 4,
        (PortalAction.SIGN_IN_FAILED, "throttled", "127.0.0.2"),
        (PortalAction.SIGN_IN, None, "127.0.0.3"),
        (PortalAction.SIGN_IN, None, "127.0.0.2"),
    ]


async def test_a_client_spraying_many_users_is_refused_for_all(site: Site) -> None:
    for n in range(6):
        assert (await site.attempt(2, f"nobody{n}", "guess"))[0] == 401
    status, retry_after = await site.attempt(2, "nadia", USERS["nadia"])
    assert (status, retry_after) == (429, "60"), "six failures from this client"
    assert (await site.attempt(3, "nadia", USERS["nadia"]))[0] == 302


async def test_a_user_under_attack_is_slowed_for_everyone_but_not_refused(site: Site) -> None:
    """Guesses from many clients (each within its free failures) put nadia under attack: every sign-in of
    hers waits first, a failing client is refused at once, and a client that has not failed still gets in."""
    for n in range(10, 20):  # ten clients, one failure each
        assert (await site.attempt(n, "nadia", "guess"))[0] == 401
    assert site.time.waits == []
    assert (await site.attempt(20, "nadia", USERS["nadia"]))[0] == 302, "a clean client gets in"
    assert site.time.waits == [2], "after waiting"
    assert (await site.attempt(21, "nadia", "guess"))[0] == 401
    assert site.time.waits == [2, 2], "a guess waits too"
    assert (await site.attempt(21, "nadia", USERS["nadia"]))[0] == 429, "under attack: refused at once"
    assert (await site.attempt(22, "nadia", USERS["nadia"]))[0] == 302, "still not locked out"
    waited = len(site.time.waits)
    assert (await site.attempt(22, "tom", USERS["tom"]))[0] == 302
    assert len(site.time.waits) == waited, "tom is not slowed"
    (last,) = [e for e in site.recorder.audits if e.action is PortalAction.SIGN_IN and e.username == "tom"]
    assert "delay_s" not in last.details
    delayed = [e for e in site.recorder.audits if e.username == "nadia" and e.action is PortalAction.SIGN_IN]
    assert [e.details.get("delay_s") for e in delayed] == ["2", "2"]
    site.time.now += 601
    assert (await site.attempt(22, "nadia", USERS["nadia"]))[0] == 302
    assert len(site.time.waits) == waited, "the failures left the window: no wait"


async def test_api_tokens_have_no_lockout() -> None:
    """Wrong API tokens are not counted against anyone: the right token works after any number of them."""
    site = Site(SignInGuard(ThrottlePolicy(free_failures=0, account_failures=1), client_limit=1))
    try:
        client = await site.client(2)
        for n in range(20):
            response = await client.get("/api/cases", headers={"Authorization": f"Bearer fwt_wrong_{n}"})
            assert response.status == 401
        response = await client.get(
            "/api/cases", headers={"Authorization": "Bearer fwt_demo_northwind_token"}
        )
        assert response.status == 200
    finally:
        await site.close()


async def test_security_headers_and_health(rig: Rig) -> None:
    client, _, _ = rig
    response = await client.get("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    response = await client.get("/healthz")
    assert response.status == 503, "the read model has not caught up"
    assert await response.json() == {"ok": False, "caught_up": False}
