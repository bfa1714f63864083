"""The portal against the real broker: sign-in, sessions, CSRF, API tokens, the JSON API and its OpenAPI."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fleetcore.clock import SystemClock
from fleetcore.throttle import ThrottlePolicy
from portal.web.keys import KEYS
from portal.web.openapi import app_routes
from portal.web.throttle import SignInGuard
from schemas.cases import CaseSource, Severity
from schemas.commands import CommandType
from schemas.portal import PortalAction
from tests.helpers import wait_for
from tests.integration.portal.client import PortalClient
from tests.integration.portal.conftest import NADIA_TOKEN, USERS, RunningPortal

pytestmark = pytest.mark.integration

BEARER = {"Authorization": f"Bearer {NADIA_TOKEN}"}


def _audited(portal: RunningPortal, action: PortalAction, username: str) -> list[object]:
    return [e for e in portal.audit_events() if e.action is action and e.username == username]


async def test_sign_in_flow_cookie_flags_and_sign_out(portal: RunningPortal) -> None:
    async with PortalClient(portal.url) as client:
        status, body, _ = await client.get("/api/cases")
        assert status == 401
        assert '"error"' in body

        status, body, _ = await client.sign_in("nadia", "wrong password")
        assert status == 401
        assert "Wrong user name or password" in body

        anonymous = client.session.cookie_jar.filter_cookies(client.url)["fw_session"].value
        status, _, response = await client.sign_in("nadia", USERS["nadia"])
        assert status == 302
        assert response.headers["Location"] == "/"
        cookie = response.cookies["fw_session"]
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Lax"
        assert not cookie["secure"]  # plain-http test portal (portal_secure_cookies=False)
        assert cookie["path"] == "/"
        assert cookie.value != anonymous  # a fresh session id after sign-in: no fixation

        status, body, _ = await client.get("/api/cases")
        assert status == 200, body

        status, _, response = await client.post("/logout", data={"csrf_token": client.csrf})
        assert status == 302
        assert response.headers["Location"] == "/login"
        status, _, _ = await client.get("/api/cases")
        assert status == 401

    # the old cookie is dead on the server, not only in the browser
    async with PortalClient(portal.url) as replay:
        replay.session.cookie_jar.update_cookies({"fw_session": cookie.value})
        status, _, _ = await replay.get("/api/cases")
        assert status == 401

    wait_for(lambda: _audited(portal, PortalAction.SIGN_IN_FAILED, "nadia"), 30, "sign_in_failed audit")
    wait_for(lambda: _audited(portal, PortalAction.SIGN_IN, "nadia"), 30, "sign_in audit")
    out = wait_for(lambda: _audited(portal, PortalAction.SIGN_OUT, "nadia"), 30, "sign_out audit")
    assert out[0].partner_id == "northwind-partners"  # type: ignore[attr-defined]
    assert out[0].remote == "127.0.0.1"  # type: ignore[attr-defined]


async def test_failed_sign_ins_are_throttled(portal: RunningPortal) -> None:
    # the production policy's free failures, but a block a slow machine cannot outlive mid-test
    policy = ThrottlePolicy(base_delay_s=600)
    portal.service.app[KEYS.auth].guard = SignInGuard(policy)
    async with PortalClient(portal.url) as client:
        for _ in range(policy.free_failures + 1):
            status, _, _ = await client.sign_in("tom", "guess")
            assert status == 401
        status, body, _ = await client.sign_in("tom", USERS["tom"])
        assert status == 429, "the right password must not get through while throttled"
        assert "Too many failed sign-ins" in body
        # another user from the same address is still let in (the address limit is higher)
        status, _, _ = await client.sign_in("nadia", USERS["nadia"])
        assert status == 302
    throttled = wait_for(
        lambda: [
            e
            for e in _audited(portal, PortalAction.SIGN_IN_FAILED, "tom")
            if e.details.get("reason") == "throttled"  # type: ignore[attr-defined]
        ],
        30,
        "throttled audit",
    )
    assert throttled


async def test_csrf_is_enforced_on_form_and_json_posts(portal: RunningPortal) -> None:
    async with PortalClient(portal.url) as client:
        status, _, _ = await client.post("/login", data={"username": "nadia", "password": USERS["nadia"]})
        assert status == 403, "sign-in without a session and token"
        await client.login_form()
        status, _, _ = await client.post(
            "/login", data={"username": "nadia", "password": USERS["nadia"], "csrf_token": "0" * 64}
        )
        assert status == 403, "sign-in with a wrong token"

        assert (await client.sign_in("nadia", USERS["nadia"]))[0] == 302
        for form in ({}, {"csrf_token": ""}, {"csrf_token": "f" * 64}):
            status, _, _ = await client.post("/logout", data=form)
            assert status == 403, form
        new_case = {"title": "Mail down", "description": "since 9", "customer_id": "acme"}
        status, body, _ = await client.post("/api/cases", json=new_case)
        assert status == 403
        assert "CSRF" in body
        status, body, _ = await client.post("/api/cases", json=new_case, headers={"X-CSRF-Token": "f" * 64})
        assert status == 403
        status, body, _ = await client.post(
            "/api/cases", json=new_case, headers={"X-CSRF-Token": client.csrf}
        )
        assert status == 202, body
        # still signed in: the rejected POSTs changed nothing
        assert (await client.get("/api/cases"))[0] == 200

    # a token from another session does not fit this one
    async with PortalClient(portal.url) as first, PortalClient(portal.url) as second:
        await first.sign_in("nadia", USERS["nadia"])
        await second.sign_in("nadia", USERS["nadia"])
        status, _, _ = await second.post("/logout", data={"csrf_token": first.csrf})
        assert status == 403


async def test_api_token_reads_and_writes_without_csrf(portal: RunningPortal) -> None:
    mine = portal.seed_case("acme", title="Nadia's shop down", ticket="FW-100004")
    async with PortalClient(portal.url) as client:
        status, body, _ = await client.get("/api/cases", headers={"Authorization": "Bearer fwt_nope"})
        assert status == 401
        status, _, response = await client.get("/api/cases", headers=BEARER)
        assert status == 200
        cases = (await _json(client, "/api/cases", BEARER))["cases"]
        assert [c["case_id"] for c in cases] == [mine.case_id]
        assert not response.cookies, "a token request starts no session"

        status, body, _ = await client.post(
            "/api/cases",
            json={"title": "DNS fails", "description": "no names resolve", "customer_id": "umbrella"},
            headers=BEARER,
        )
        assert status == 202, body
    commands = wait_for(portal.commands, 30, "the open command")
    (command,) = commands
    assert command.type is CommandType.OPEN
    assert command.source is CaseSource.PORTAL
    assert command.severity is None
    assert (command.customer_id, command.partner_id) == ("umbrella", "northwind-partners")
    assert command.actor == "partner:nadia"
    assert (command.title, command.message) == ("DNS fails", "no names resolve")


async def _json(client: PortalClient, path: str, headers: dict[str, str]) -> dict[str, object]:
    async with client.session.get(client.url + path, headers=headers) as response:
        assert response.status == 200, await response.text()
        data: dict[str, object] = await response.json()
        return data


async def test_case_endpoints(portal: RunningPortal) -> None:
    now = SystemClock().now()
    open_case = portal.seed_case(
        "acme",
        title="Checkout slow",
        ticket="FW-100008",
        steps=[
            {"type": "case.work_started", "state": "working"},
            {"type": "case.note", "visibility": "internal", "message": "INTERNAL: db host 10.0.0.7 is sick"},
            {"type": "case.customer_update", "message": "We are on it."},
            {
                "type": "notification.sent",
                "details": {
                    "key": "k",
                    "contact": "sam-pager",
                    "role": "oncall_engineers",
                    "outcome": "sent",
                },
            },
            {
                "type": "notification.sent",
                "details": {"key": "k2", "contact": "nw-desk", "role": "partner_helpdesk"},
            },
        ],
    )
    recent = portal.seed_case(
        "umbrella",
        title="Recently fixed",
        severity=Severity.SEV3,
        ticket="FW-100012",
        steps=[{"type": "case.resolved", "state": "resolved"}],
        at=now - timedelta(days=3),
    )
    portal.seed_case(
        "acme",
        title="Long ago",
        ticket="FW-100016",
        steps=[{"type": "case.closed", "state": "closed"}],
        at=now - timedelta(days=45),
    )
    portal.seed_case("globex", "telco-isp", title="Tom's outage", ticket="FW-100001")

    async with PortalClient(portal.url) as client:
        listed = await _json(client, "/api/cases", BEARER)
        (row,) = listed["cases"]  # type: ignore[misc]
        assert row["case_id"] == open_case.case_id
        assert (row["ticket"], row["state"], row["severity"]) == ("FW-100008", "working", 2)
        assert row["sla"]["work_started_at"] is not None
        assert row["sla"]["first_response_at"] is not None

        closed = await _json(client, "/api/cases/closed", BEARER)
        assert [c["case_id"] for c in closed["cases"]] == [recent.case_id]  # type: ignore[union-attr]

        detail = await _json(client, "/api/cases/fw-100008", BEARER)
        assert detail["case_id"] == open_case.case_id
        timeline = detail["timeline"]
        assert isinstance(timeline, list)
        assert all(e["visibility"] == "customer" for e in timeline)
        assert "INTERNAL" not in str(detail)
        assert "sam-pager" not in str(detail), "staff contact ids are redacted"
        assert "nw-desk" in str(detail), "the partner's own help desk contact stays"
        assert [e["message"] for e in timeline if e["type"] == "case.customer_update"] == ["We are on it."]

        post = client.post
        status, body, _ = await post(
            f"/api/cases/{open_case.ticket}/messages", json={"message": "Still slow here"}, headers=BEARER
        )
        assert status == 202, body
        bad = [
            ({"title": "x", "description": "y", "customer_id": "acme"}, 422, "title"),
            ({"title": "Mail down", "description": "y", "customer_id": "globex"}, 422, "customer_id"),
            ({"title": "Mail down", "customer_id": "acme"}, 422, "description"),
            (
                {"title": "Mail down", "description": "y", "customer_id": "acme", "severity": 1},
                422,
                "severity",
            ),
            (
                {"title": "Mail down", "description": "y", "customer_id": "acme", "server_id": "A B"},
                422,
                "server",
            ),
        ]
        for body_json, code, word in bad:
            status, body, _ = await post("/api/cases", json=body_json, headers=BEARER)
            assert status == code, (body_json, body)
            assert word in body, (body_json, body)
            assert '"error"' in body
        status, body, _ = await post(
            "/api/cases", data="not json", headers={**BEARER, "Content-Type": "application/json"}
        )
        assert status == 400
        assert '"error"' in body
        status, body, _ = await post(f"/api/cases/{open_case.case_id}/messages", json={}, headers=BEARER)
        assert status == 422
        assert "message" in body
        status, body, _ = await client.get("/api/nothing-here", headers=BEARER)
        assert status == 404
        assert '"error"' in body

        # staff may read every case through the API but not file as a partner
        staff = PortalClient(portal.url)
        async with staff:
            await staff.sign_in("sam", USERS["sam"])
            status, body, _ = await staff.get("/api/cases")
            assert status == 200
            assert "Tom's outage" in body
            assert "Checkout slow" in body
            status, body, _ = await staff.post(
                "/api/cases",
                json={"title": "Mail down", "description": "y", "customer_id": "acme"},
                headers={"X-CSRF-Token": staff.csrf},
            )
            assert status == 403

    replies = wait_for(
        lambda: [c for c in portal.commands() if c.type is CommandType.CUSTOMER_REPLIED], 30, "the reply"
    )
    assert (replies[0].case_id, replies[0].message) == (open_case.case_id, "Still slow here")
    assert replies[0].actor == "partner:nadia"


async def test_openapi_describes_every_route(portal: RunningPortal) -> None:
    async with PortalClient(portal.url) as client:
        doc = await _json(client, "/api/openapi.json", {})
    assert doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    assert isinstance(paths, dict)
    routes = app_routes(portal.service.app)
    assert len(routes) >= 10
    for method, path, _ in routes:
        assert method.lower() in paths.get(path, {}), f"{method} {path} missing from the OpenAPI document"
    described = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    assert described == {(m, p) for m, p, _ in routes}, "the document lists routes the app does not have"
    schemas = doc["components"]["schemas"]  # type: ignore[index]
    for name in ("CaseList", "CaseSummary", "CaseDetail", "NewCase", "NewMessage", "Accepted", "ApiError"):
        assert name in schemas
    create = paths["/api/cases"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/NewCase")
    assert "202" in create["responses"]
    assert "422" in create["responses"]
    assert paths["/api/cases/{ref}"]["get"]["parameters"][0]["name"] == "ref"
    assert paths["/login"]["get"]["security"] == []
