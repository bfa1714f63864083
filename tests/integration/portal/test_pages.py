"""The partner pages on a real portal (real broker, read model following the cases topic): filing reaches
case-commands, the engine's events show on the pages, and a partner sees only its own cases everywhere."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from fleetcore.clock import SystemClock
from schemas.cases import CaseSource, CaseState, Severity
from schemas.commands import CaseCommand, CommandType
from tests.helpers import wait_for
from tests.integration.portal.client import PortalClient
from tests.integration.portal.conftest import USERS, RunningPortal

pytestmark = pytest.mark.integration


def sent(portal: RunningPortal, kind: CommandType, case_id: str | None = None) -> list[CaseCommand]:
    return [c for c in portal.commands() if c.type is kind and (case_id is None or c.case_id == case_id)]


async def signed_in(portal: RunningPortal, username: str) -> PortalClient:
    client = PortalClient(portal.url)
    status, body, _ = await client.sign_in(username, USERS[username])
    assert status == 302, body
    return client


async def test_a_filed_case_goes_to_the_engine_and_its_page_follows_the_read_model(
    portal: RunningPortal,
) -> None:
    async with await signed_in(portal, "nadia") as nadia:
        status, form, _ = await nadia.get("/cases/new")
        assert status == 200
        assert 'value="umbrella"' in form
        assert 'value="globex"' not in form
        status, _, response = await nadia.post(
            "/cases/new",
            data={
                "csrf_token": nadia.csrf,
                "customer": "umbrella",
                "server": "umbrella-app-1",
                "title": "Login page answers 502",
                "description": "Since 08:40 every login fails with 502.",
                "urgency": "2",
            },
        )
        assert status == 303
        case_url = response.headers["Location"]
        case_id = case_url.rsplit("/", 1)[1]
        [command] = wait_for(lambda: sent(portal, CommandType.OPEN, case_id), 30, "the open command")
        assert command.source is CaseSource.PORTAL
        assert (command.customer_id, command.partner_id, command.server_id) == (
            "umbrella",
            "northwind-partners",
            "umbrella-app-1",
        )
        assert (command.title, command.message, command.actor) == (
            "Login page answers 502",
            "Since 08:40 every login fails with 502.",
            "partner:nadia",
        )
        assert command.severity is Severity.SEV2

        status, page, _ = await nadia.get(case_url)
        assert status == 200
        assert "Filed, awaiting triage" in page
        assert "Login page answers 502" in page

        # the engine opens and triages it (written as the engine would): the pages show the ticket
        portal.seed_case(
            "umbrella",
            case_id=case_id,
            title="Login page answers 502",
            ticket="FW-100321",
            severity=Severity.SEV1,
        )
        status, page, _ = await nadia.get(case_url)
        assert "FW-100321" in page
        assert "Filed, awaiting triage" not in page
        assert re.search(r'class="case-head sev1"', page)
        _, by_ticket, _ = await nadia.get("/cases/fw-100321")
        assert "Login page answers 502" in by_ticket
        _, dashboard, _ = await nadia.get("/")
        assert re.search(rf'<tr class="sev1\s*" data-case="{case_id}">', dashboard)


async def test_a_partner_sees_and_changes_only_its_own_cases(portal: RunningPortal) -> None:
    mine = portal.seed_case("acme", ticket="FW-100401", title="Northwind case")
    theirs = portal.seed_case("globex", "telco-isp", ticket="FW-100402", title="Telco case")
    theirs_closed = portal.seed_case(
        "stark",
        "telco-isp",
        ticket="FW-100403",
        title="Telco closed case",
        steps=[{"type": "case.closed", "state": CaseState.CLOSED}],
    )
    async with await signed_in(portal, "nadia") as nadia:
        _, dashboard, _ = await nadia.get("/")
        assert "FW-100401" in dashboard
        assert "FW-100402" not in dashboard
        assert "Telco" not in dashboard
        _, closed, _ = await nadia.get("/cases/closed")
        assert "FW-100403" not in closed
        status, missing, _ = await nadia.get("/cases/prt-doesnotexist")
        assert status == 404
        for ref in (theirs.case_id, "FW-100402", theirs_closed.case_id, "FW-100403"):
            status, body, _ = await nadia.get(f"/cases/{ref}")
            assert status == 404, ref
            assert body == missing
            status, _, _ = await nadia.post(
                f"/cases/{ref}/messages", data={"csrf_token": nadia.csrf, "message": "let me in"}
            )
            assert status == 404, ref
        status, _, _ = await nadia.post(
            f"/cases/{mine.case_id}/messages", data={"csrf_token": nadia.csrf, "message": "logs attached"}
        )
        assert status == 303
    [reply] = wait_for(lambda: sent(portal, CommandType.CUSTOMER_REPLIED), 30, "nadia's message")
    assert (reply.case_id, reply.message, reply.actor) == (mine.case_id, "logs attached", "partner:nadia")
    assert not [c for c in portal.commands() if c.case_id in (theirs.case_id, theirs_closed.case_id)]

    async with await signed_in(portal, "tom") as tom:
        _, dashboard, _ = await tom.get("/")
        assert "FW-100402" in dashboard
        assert "FW-100401" not in dashboard
        _, closed, _ = await tom.get("/cases/closed")
        assert "FW-100403" in closed
        status, _, _ = await tom.get(f"/cases/{mine.case_id}")
        assert status == 404


async def test_the_timeline_shows_customer_events_without_staff_contacts(portal: RunningPortal) -> None:
    case = portal.seed_case(
        "acme",
        ticket="FW-100501",
        severity=Severity.SEV1,
        steps=[
            {"type": "case.note", "visibility": "internal", "message": "customer is on the old contract"},
            {
                "type": "notification.sent",
                "details": {"contact": "ops-manager-07", "role": "operations_manager", "channel": "page"},
            },
            {
                "type": "notification.sent",
                "details": {
                    "contact": "helpdesk@northwind.example",
                    "role": "partner_helpdesk",
                    "channel": "email",
                },
            },
            {"type": "case.customer_update", "message": "We are replacing the <b>load balancer</b>."},
            {"type": "command.rejected", "visibility": "internal", "reason": "already triaged"},
        ],
    )
    async with await signed_in(portal, "nadia") as nadia:
        status, page, _ = await nadia.get(f"/cases/{case.case_id}")
    assert status == 200
    assert "old contract" not in page
    assert "already triaged" not in page
    assert "ops-manager-07" not in page
    assert "page to operations_manager" in page
    assert "helpdesk@northwind.example" in page
    assert "We are replacing the &lt;b&gt;load balancer&lt;/b&gt;." in page


async def test_recently_closed_covers_30_days(portal: RunningPortal) -> None:
    closed = [
        {"type": "case.resolved", "state": CaseState.RESOLVED},
        {"type": "case.closed", "state": CaseState.CLOSED},
    ]
    recent = portal.seed_case("acme", ticket="FW-100601", steps=closed)
    portal.seed_case("acme", ticket="FW-100602", steps=closed, at=SystemClock().now() - timedelta(days=31))
    resolved = portal.seed_case(
        "umbrella",
        ticket="FW-100603",
        steps=[{"type": "case.resolved", "state": CaseState.RESOLVED}],
        at=SystemClock().now() - timedelta(minutes=30),
    )
    async with await signed_in(portal, "nadia") as nadia:
        _, page, _ = await nadia.get("/cases/closed")
        _, dashboard, _ = await nadia.get("/")
        _, case_page, _ = await nadia.get(f"/cases/{recent.case_id}")
    assert "FW-100601" in page
    assert "FW-100603" in page
    assert "FW-100602" not in page
    assert page.index("FW-100603") < page.index("FW-100601")  # most recently closed first
    assert resolved.case_id not in dashboard
    assert "Add a message" not in case_page
    assert "file a new case" in case_page
