"""No open redirect after sign-in: `next` may only name a path on the portal.

A corpus of known bypass spellings (tabs and newlines browsers drop, backslashes they read as slashes,
schemes, encoded slashes, dot segments, Unicode spaces and format characters) goes through `safe_next`
and through the real sign-in (the /login form's hidden field and the POST's Location header). The Location
is then read the way a browser's URL parser does (WHATWG URL: tab and newline removed, leading C0 controls
and spaces stripped, "\\" as "/"): it must stay on the portal.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestServer

from portal.web.auth import safe_next
from tests.unit.portal.rig import USERS, Client, Recorder, make_app, sign_in, start

EVIL = "evil.example"
BYPASSES = [
    "//evil.example",
    "///evil.example",
    "////evil.example/x",
    "//evil.example@portal.example/",
    "//evil.example/%2F..",
    "/\\evil.example",
    "/\\\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "/\\/evil.example",
    "///\\;@evil.example",
    "/\t/evil.example/x",
    "/\n/evil.example/x",
    "/\r/evil.example/x",
    "/\r\n/evil.example/x",
    "\t//evil.example",
    " //evil.example",
    "\x00//evil.example",
    "/\x00/evil.example",
    "/\x0b/evil.example",
    "/\x0c/evil.example",
    "/\x7f/evil.example",
    "/\u2028/evil.example",
    "/\u200b/evil.example",
    "/\u3000/evil.example",
    "/\ufeff/evil.example",
    "\uff0f\uff0fevil.example",
    "/%09/evil.example/x",
    "/%0A/evil.example/x",
    "/%0d/evil.example/x",
    "/%2F/evil.example",
    "/%2f%2fevil.example",
    "/%5C/evil.example",
    "/%5c%5cevil.example",
    "%2F%2Fevil.example",
    "/.//evil.example",
    "/..//evil.example",
    "/a/../..//evil.example",
    "/%2e%2e//evil.example",
    "/%2e/%2fevil.example",
    "https://evil.example/",
    "http://evil.example",
    "HTTPS://evil.example",
    "https:evil.example",
    "https:/evil.example",
    "https:///evil.example",
    "https:\\\\evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(document.domain)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example",
    ".//evil.example",
    "/" + "a" * 5000,
]
LOCAL = [
    "/",
    "/cases/FW-1",
    "/?a=b",
    "/cases/FW-100004#timeline",
    "/kb/search?q=disk%20full",
    "/staff/cases/prt-0123456789abcdef0123",
    "/downloads/fleetwatch-agent/2.4.1/fleetwatch-agent-2.4.1.tar.gz",
    "/a:b",
]
NEXT_INPUT = re.compile(r'name="next" value="([^"]*)"')
C0_OR_SPACE = "".join(chr(c) for c in range(0x21))


def browser_target(location: str) -> str:
    """How a browser reads a Location: leading/trailing C0 and spaces stripped, tabs and newlines removed,
    backslashes taken as slashes (WHATWG URL parsing of a special URL)."""
    text = location.strip(C0_OR_SPACE)
    text = text.replace("\t", "").replace("\n", "").replace("\r", "")
    return text.replace("\\", "/")


def stays_on_the_portal(location: str) -> bool:
    """A path-absolute reference: "/" not followed by a second slash, as the browser reads it."""
    target = browser_target(location)
    return target.startswith("/") and not target.startswith("//")


def test_the_corpus_is_large_enough() -> None:
    assert len(BYPASSES) >= 30
    assert len(set(BYPASSES)) == len(BYPASSES)
    assert not any(stays_on_the_portal(t) for t in ("//evil.example", "/\t/evil.example", "/\\evil.example"))


@pytest.mark.parametrize("target", BYPASSES)
def test_bypasses_fall_back_to_the_home_page(target: str) -> None:
    assert safe_next(target) == "/"


@pytest.mark.parametrize("target", LOCAL)
def test_local_paths_are_kept(target: str) -> None:
    assert safe_next(target) == target
    assert safe_next(safe_next(target)) == target


def test_nothing_else_falls_back() -> None:
    assert safe_next(None) == "/"
    assert safe_next("") == "/"


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    made = await start(TestServer(make_app(Recorder())))
    try:
        yield made
    finally:
        await made.close()


async def test_the_issue_as_reported(client: Client) -> None:
    """GET /login?next=/%09/evil.example/x, sign in: the answer was `302 Location: //evil.example/x`."""
    page = await client.get("/login?next=/%09/evil.example/x")
    match = NEXT_INPUT.search(await page.text())
    assert match
    assert html.unescape(match.group(1)) == "/"
    response = await sign_in(client, "nadia", USERS["nadia"], "/\t/evil.example/x")
    assert response.status == 302
    assert response.headers["Location"] == "/"


async def test_every_bypass_through_the_sign_in(client: Client) -> None:
    for target in BYPASSES + LOCAL:
        page = await client.get("/login", params={"next": target})
        match = NEXT_INPUT.search(await page.text())
        assert match, target
        field = html.unescape(match.group(1))
        assert stays_on_the_portal(field), (target, field)
        for sent in (target, field):
            client.session.cookie_jar.clear()
            response = await sign_in(client, "nadia", USERS["nadia"], sent)
            assert response.status == 302, (sent, await response.text())
            location = response.headers["Location"]
            assert stays_on_the_portal(location), f"{sent!r} -> Location {location!r}"
            assert EVIL not in location or target in LOCAL, (sent, location)
        page = await client.get("/login?next=" + quote(target, safe=""))
        match = NEXT_INPUT.search(await page.text())
        assert match
        assert stays_on_the_portal(html.unescape(match.group(1))), target
