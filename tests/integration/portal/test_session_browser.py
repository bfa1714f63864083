"""Sessions in a real browser (Debian Chromium via Playwright): with Secure cookies ON (the production
default), signing in over plain http://127.0.0.1 works, because Chromium treats loopback hosts as secure
contexts and keeps Secure cookies for them. So `fleetwatch up`'s local portal needs no setting changed; only
a portal served over plain http on another host needs FLEETWATCH_PORTAL_SECURE_COOKIES=false.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from portal.service import Portal
from schemas.topics import Topics
from tests.helpers import wait_for
from tests.integration.portal.browser import CHROMIUM, CHROMIUM_ARGS
from tests.integration.portal.conftest import USERS, _PortalThread, portal_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def secure_portal(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> Iterator[Portal]:
    service = Portal(portal_settings(kafka_bootstrap, topics, tmp_path / "data", portal_secure_cookies=True))
    runner = _PortalThread(service)
    runner.start()
    try:
        wait_for(service.readmodel.caught_up.is_set, 30, "the read model to catch up")
        yield service
    finally:
        runner.stop()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make test installs it)")
def test_secure_session_cookie_works_on_loopback_http(secure_portal: Portal) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            page = context.new_page()
            page.goto(secure_portal.url + "/api/cases")
            assert "sign in or send an API token" in page.content()

            page.goto(secure_portal.url + "/")
            assert page.url.startswith(secure_portal.url + "/login"), page.url
            page.fill("#username", "nadia")
            page.fill("#password", USERS["nadia"])
            page.click("button[type=submit]")
            page.wait_for_url(secure_portal.url + "/")
            assert page.locator("text=Sign out").count() == 1

            (cookie,) = [c for c in context.cookies() if c["name"] == "fw_session"]
            assert cookie["secure"] is True
            assert cookie["httpOnly"] is True
            assert cookie["sameSite"] == "Lax"
            assert page.evaluate("document.cookie") == "", "HttpOnly: scripts cannot read the session"

            page.goto(secure_portal.url + "/api/cases")
            assert '"cases"' in page.content()

            page.goto(secure_portal.url + "/")
            page.click("text=Sign out")
            page.wait_for_url(secure_portal.url + "/login")
            page.goto(secure_portal.url + "/api/cases")
            assert "sign in or send an API token" in page.content()
        finally:
            browser.close()
