"""Isolation, checked on EVERY route of the app (the router is walked, so routes added later are covered).

* Anonymous visitors are refused everywhere but on routes marked `auth.public`: pages answer 302 to
  /login, the API 401; a POST is refused even when it carries a valid (anonymous) CSRF token.
* Partner A cannot read or change partner B's case by id or ticket: every route whose path takes
  parameters answers a foreign case exactly as a case that does not exist (same status, same body with the
  reference swapped), that is 404 (403 on staff routes); pages without parameters never show B's case; and
  no command about B's case or customers leaves the portal.
* Walking ticket numbers yields nothing but the user's own cases.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from portal.web.auth import is_public
from portal.web.openapi import app_routes
from schemas.cases import CaseSource
from tests.integration.portal.client import PortalClient
from tests.integration.portal.conftest import NADIA_TOKEN, USERS, RunningPortal

pytestmark = pytest.mark.integration

_PARAM = re.compile(r"\{([^}]+)\}")
NADIA_PARTNER = "northwind-partners"
NADIA_CUSTOMERS = {"acme", "umbrella"}
HIJACK = {
    "title": "Hijacked case",
    "description": "should never be filed",
    "message": "hijack attempt",
    "customer_id": "acme",
    "severity": "1",
    "owner": "tom",
    "reason": "hijack attempt",
}


def _routes(portal: RunningPortal) -> Iterator[tuple[str, str, web.AbstractRoute]]:
    for method, path, route in app_routes(portal.service.app):
        if not is_public(route.handler):
            yield method, path, route


def _fill(path: str, value: str) -> str:
    return _PARAM.sub(value, path)


def _is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


async def _call(
    client: PortalClient, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, str, Any]:
    headers = dict(headers or {})
    if method == "GET":
        return await client.request("GET", path, headers=headers)
    if _is_api(path):
        headers.setdefault("X-CSRF-Token", client.csrf)
        return await client.request(method, path, json=HIJACK, headers=headers)
    return await client.request(method, path, data={**HIJACK, "csrf_token": client.csrf}, headers=headers)


async def test_anonymous_requests_are_refused_on_every_route(portal: RunningPortal) -> None:
    case = portal.seed_case("acme", title="Nadia secret outage zq7", ticket="FW-100004")
    routes = list(_routes(portal))
    assert len(routes) >= 10, routes
    async with PortalClient(portal.url) as bare, PortalClient(portal.url) as visitor:
        await visitor.login_form()  # an anonymous session with a valid CSRF token
        for method, path, _ in routes:
            url = _fill(path, case.case_id)
            for client in (bare, visitor):
                status, body, response = await _call(client, method, url)
                where = f"{method} {url} ({'with' if client is visitor else 'without'} a session)"
                assert "zq7" not in body, where
                if _is_api(path):
                    allowed = {401} if client is visitor or method == "GET" else {401, 403}
                    assert status in allowed, f"{where}: {status} {body[:200]}"
                elif status == 302:
                    assert response.headers["Location"].startswith("/login"), where
                else:
                    assert method != "GET", f"{where}: {status}, expected 302 to /login"
                    assert client is bare, f"{where}: {status}, expected 302 to /login"
                    assert status == 403, f"{where}: {status}"
    assert portal.commands() == [], "an anonymous request sent a command"


async def _signed_in(portal: RunningPortal, username: str) -> PortalClient:
    client = PortalClient(portal.url)
    status, body, _ = await client.sign_in(username, USERS[username])
    assert status == 302, body
    return client


async def _still_signed_in(client: PortalClient, username: str) -> None:
    if (await client.get("/api/cases"))[0] != 200:
        await client.sign_in(username, USERS[username])


def _normalised(body: str, ref: str) -> str:
    return body.replace(ref, "<ref>").replace(ref.upper(), "<ref>").replace(ref.lower(), "<ref>")


async def _probe_foreign(
    client: PortalClient, username: str, portal: RunningPortal, refs: list[str], secrets: list[str]
) -> None:
    """Every route, with every path parameter set to each foreign ref, answers like a missing case."""
    for method, path, _ in _routes(portal):
        if not _PARAM.search(path):
            if method == "GET":
                status, body, _ = await _call(client, method, path)
                for secret in secrets:
                    assert secret not in body, f"{username}: GET {path} shows {secret}"
            continue
        for ref in refs:
            fake = "FW-999999" if ref.upper().startswith("FW-") else "prt-0123456789abcdef0123"
            status, body, _ = await _call(client, method, _fill(path, ref))
            await _still_signed_in(client, username)
            where = f"{username}: {method} {_fill(path, ref)}"
            assert status in (403, 404, 405), f"{where}: {status} {body[:300]}"
            for secret in secrets:
                assert secret not in body, f"{where} shows {secret}"
            fake_status, fake_body, _ = await _call(client, method, _fill(path, fake))
            await _still_signed_in(client, username)
            assert status == fake_status, f"{where}: {status}, a missing case {fake_status}"
            if method == "GET":
                assert _normalised(body, ref) == _normalised(fake_body, fake), (
                    f"{where} answers differently from a missing case"
                )


async def test_partners_cannot_reach_each_others_cases_on_any_route(portal: RunningPortal) -> None:
    nadia_case = portal.seed_case(
        "acme",
        title="Nadia secret outage zq7",
        description="zq7 details only Northwind may read",
        ticket="FW-100004",
        steps=[{"type": "case.customer_update", "message": "zq7 update"}],
    )
    nadia_new = portal.seed_case("umbrella", title="Nadia untriaged zq8")  # NEW: no ticket yet
    nadia_email = portal.seed_case(  # an email case filed only under her customer
        "acme", None, title="Nadia customer mail zq9", source=CaseSource.EMAIL, ticket="FW-100008"
    )
    tom_case = portal.seed_case("globex", "telco-isp", title="Tom private incident xk4", ticket="FW-100001")

    tom = await _signed_in(portal, "tom")
    nadia = await _signed_in(portal, "nadia")
    async with tom, nadia:
        # the owners do see their own cases (so the checks below can fail)
        assert "zq7" in (await nadia.get(f"/api/cases/{nadia_case.case_id}"))[1]
        assert "zq9" in (await nadia.get("/api/cases/fw-100008"))[1]
        assert "xk4" in (await tom.get("/api/cases/FW-100001"))[1]

        nadia_refs = [nadia_case.case_id, "FW-100004", "fw-100004", nadia_new.case_id, nadia_email.case_id]
        await _probe_foreign(tom, "tom", portal, nadia_refs, ["zq7", "zq8", "zq9"])
        await _probe_foreign(nadia, "nadia", portal, [tom_case.case_id, "FW-100001"], ["xk4"])

        # an API token is held to the same rule
        bearer = {"Authorization": f"Bearer {NADIA_TOKEN}"}
        status, body, _ = await nadia.request("GET", f"/api/cases/{tom_case.case_id}", headers=bearer)
        assert status == 404
        assert "xk4" not in body

    def foreign(command: Any) -> bool:
        ids = {nadia_case.case_id, nadia_new.case_id, nadia_email.case_id}
        if command.case_id in ids or command.partner_id == NADIA_PARTNER:
            return command.actor != "partner:nadia"
        if command.customer_id in NADIA_CUSTOMERS:
            return command.actor != "partner:nadia"
        return command.case_id == tom_case.case_id and command.actor != "partner:tom"

    leaked = [c for c in portal.commands() if foreign(c)]
    assert not leaked, leaked


async def test_walking_ticket_numbers_finds_only_your_own_cases(portal: RunningPortal) -> None:
    seeded = {
        "FW-100000": ("acme", NADIA_PARTNER),
        "FW-100001": ("globex", "telco-isp"),
        "FW-100002": ("umbrella", NADIA_PARTNER),
        "FW-100003": ("stark", "telco-isp"),
    }
    for ticket, (customer, partner) in seeded.items():
        portal.seed_case(customer, partner, title=f"case {ticket}", ticket=ticket)
    ticket_routes = [
        path
        for method, path, _ in _routes(portal)
        if method == "GET" and len(_PARAM.findall(path)) == 1 and "case" in path
    ]
    assert "/api/cases/{ref}" in ticket_routes
    tom = await _signed_in(portal, "tom")
    async with tom:
        for path in ticket_routes:
            found = []
            for number in range(100000, 100012):
                status, body, _ = await tom.get(_fill(path, f"FW-{number}"))
                assert status in (200, 403, 404), (path, number, status)
                if status == 200:
                    found.append(f"FW-{number}")
                    if _is_api(path):
                        assert json.loads(body)["ticket"] == f"FW-{number}"
            if path.startswith("/staff"):
                assert found == [], path
            else:
                assert found == ["FW-100001", "FW-100003"], (path, found)
