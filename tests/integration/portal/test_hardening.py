"""The outside review's findings (issue 9, portal), replayed against the running portal over real HTTP:

* an open redirect after sign-in (`/login?next=/%09/evil.example/x`), followed in headless Chromium to a
  second local server standing in for the evil site: the browser must stay on the portal;
* wrong methods and bad bodies on the JSON API answer 405 (with Allow), 413, 415 and 400 as JSON, with the
  security headers, never a 500;
* wrong passwords from one client do not lock the user out for everyone (clients are peer addresses: the
  tests connect from 127.0.0.2 and 127.0.0.1).

The unit tests walk every route with every method and body and cover the throttle's timing
(tests/unit/portal/test_edge.py, test_auth.py, test_sign_in_redirect.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fleetcore.throttle import ThrottlePolicy
from portal.web.app import SECURITY_HEADERS
from portal.web.keys import KEYS
from portal.web.throttle import SignInGuard
from schemas.portal import PortalAction
from tests.integration.portal.browser import CHROMIUM, CHROMIUM_ARGS
from tests.integration.portal.client import PortalClient
from tests.integration.portal.conftest import NADIA_TOKEN, USERS, RunningPortal

pytestmark = pytest.mark.integration

BEARER = {"Authorization": f"Bearer {NADIA_TOKEN}"}


class EvilSite:
    """A local HTTP server standing in for evil.example: it records every path it is asked for."""

    def __init__(self) -> None:
        seen: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                body = b"<html><body>evil</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.seen = seen
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> EvilSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def evil() -> Iterator[EvilSite]:
    with EvilSite() as site:
        yield site


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make test installs it)")
def test_chromium_stays_on_the_portal_after_signing_in(portal: RunningPortal, evil: EvilSite) -> None:
    from playwright.sync_api import sync_playwright

    spellings = ["/%09/{host}/x", "/%0A/{host}/x", "/%0D/{host}/x", "/%09/%09/{host}/x", "/%5C{host}/x"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for spelling in spellings:
                context = browser.new_context()
                page = context.new_page()
                page.goto(f"{portal.url}/login?next={spelling.format(host=evil.host)}")
                page.fill("#username", "nadia")
                page.fill("#password", USERS["nadia"])
                page.click("button[type=submit]")
                page.wait_for_url(lambda url: "/login" not in url)
                page.wait_for_load_state()
                assert page.url == portal.url + "/", f"{spelling}: the browser went to {page.url}"
                assert evil.seen == [], f"{spelling}: the evil site was visited: {evil.seen}"
                context.close()
        finally:
            browser.close()


async def test_wrong_methods_and_bad_bodies_on_the_api(portal: RunningPortal) -> None:
    async with PortalClient(portal.url) as client:
        for method in ("DELETE", "PUT", "PATCH", "OPTIONS"):
            status, body, response = await client.request(method, "/api/cases", headers=BEARER)
            assert status == 405, (method, body)
            assert response.headers["Allow"] == "GET,HEAD,POST"
            assert response.content_type == "application/json"
            assert f"{method} is not allowed here" in body
            for name, value in SECURITY_HEADERS.items():
                assert response.headers[name] == value, (method, name)
        json_type = {**BEARER, "Content-Type": "application/json"}
        answers = [
            (b"x" * (3 * 1024 * 1024), json_type, 413),
            (b"[" * 100_000, json_type, 400),
            (b'{"title": "\xff"}', json_type, 400),
            (b'{"title": "x"}', {**BEARER, "Content-Type": "text/plain"}, 415),
        ]
        for data, headers, expected in answers:
            status, body, response = await client.post("/api/cases", data=data, headers=headers)
            assert status == expected, (data[:20], body)
            assert response.content_type == "application/json"
            assert body.startswith('{"error": '), body
            assert response.headers["X-Frame-Options"] == "DENY"
    assert portal.commands() == []


async def test_wrong_passwords_from_one_client_do_not_lock_the_user_out(portal: RunningPortal) -> None:
    # the production policy, but a block long enough that a slow machine cannot outlive it mid-test
    policy = ThrottlePolicy(free_failures=3, base_delay_s=600)
    portal.service.app[KEYS.auth].guard = SignInGuard(policy)
    limit = policy.free_failures + 1
    async with PortalClient(portal.url, "127.0.0.2") as guesser, PortalClient(portal.url) as nadia:
        for _ in range(limit):
            status, _, _ = await guesser.sign_in("nadia", "not-her-password")
            assert status == 401
        status, body, response = await guesser.sign_in("nadia", USERS["nadia"])
        assert status == 429, body
        assert int(response.headers["Retry-After"]) > 0
        status, body, _ = await nadia.sign_in("nadia", USERS["nadia"])
        assert status == 302, body
        assert (await nadia.get("/api/cases"))[0] == 200
    events = [(e.action, e.remote, e.details.get("reason")) for e in portal.audit_events()]
    assert events == [
        *[(PortalAction.SIGN_IN_FAILED, "127.0.0.2", "bad credentials")] * limit,
        (PortalAction.SIGN_IN_FAILED, "127.0.0.2", "throttled"),
        (PortalAction.SIGN_IN, "127.0.0.1", None),
    ]
