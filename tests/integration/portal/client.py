"""An HTTP client for portal tests: an aiohttp session with its own cookie jar, that can sign in."""

from __future__ import annotations

import re
from types import TracebackType
from typing import Any

import aiohttp

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


class PortalClient:
    """One browser-like visitor of the portal at `url` (cookies kept, redirects not followed); `source`: the
    loopback address it connects from (127.0.0.2, ...), so the portal sees another client."""

    def __init__(self, url: str, source: str | None = None) -> None:
        self.url = url.rstrip("/")
        connector = aiohttp.TCPConnector(local_addr=(source, 0)) if source else None
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), connector=connector)
        self.csrf = ""

    async def __aenter__(self) -> PortalClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.session.close()

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        """(status, body, response); redirects are not followed."""
        kwargs.setdefault("allow_redirects", False)
        async with self.session.request(method, self.url + path, **kwargs) as response:
            body = await response.text()
            return response.status, body, response

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> tuple[int, str, aiohttp.ClientResponse]:
        return await self.request("POST", path, **kwargs)

    async def login_form(self) -> str:
        """GET /login; the form's CSRF token (also remembered as `self.csrf`)."""
        status, body, _ = await self.get("/login")
        assert status == 200, body
        match = CSRF_INPUT.search(body)
        assert match, "the sign-in form has no CSRF token"
        self.csrf = match.group(1)
        return self.csrf

    async def sign_in(self, username: str, password: str) -> tuple[int, str, aiohttp.ClientResponse]:
        """Fill in and send the sign-in form; afterwards `self.csrf` is the new session's token."""
        token = await self.login_form()
        answer = await self.post(
            "/login", data={"username": username, "password": password, "csrf_token": token, "next": "/"}
        )
        if answer[0] == 302:
            await self.refresh_csrf()
        return answer

    async def refresh_csrf(self) -> str:
        """The current session's CSRF token, read from a page that renders it (the sign-in form)."""
        status, body, _ = await self.get("/login")
        match = CSRF_INPUT.search(body)
        assert status == 200, body
        assert match, body
        self.csrf = match.group(1)
        return self.csrf
