"""The staff console against a running portal: staff only, the queue, and actions sent as case commands.

No case engine runs: the test plays it, reading each command from case-commands and writing the answering
event (chained onto the seeded case) to the cases topic, as the engine would.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest

from fleetcore.clock import SystemClock
from portal.web.staff import ACTIONS
from schemas.cases import CaseEvent, CaseEventType, CaseState, Severity, Visibility, chained, event_id_for
from schemas.commands import CaseCommand, CommandType
from tests.helpers import wait_for
from tests.integration.portal.client import PortalClient
from tests.integration.portal.conftest import USERS, RunningPortal

pytestmark = pytest.mark.integration


def _command_for(portal: RunningPortal, case_id: str, type_: CommandType) -> CaseCommand | None:
    return next((c for c in portal.commands() if c.case_id == case_id and c.type is type_), None)


def _answer(portal: RunningPortal, command: CaseCommand, type_: CaseEventType, **fields: Any) -> CaseEvent:
    """Write the engine's answer to `command`, chained onto the case as the read model has it."""
    view = portal.readmodel.get(command.case_id)
    assert view is not None
    last = view.timeline[-1]
    event = CaseEvent(
        event_id=event_id_for(command.case_id, type_, f"{command.command_id}:0"),
        case_id=command.case_id,
        type=type_,
        severity=fields.pop("severity", last.severity),
        source=last.source,
        customer_id=last.customer_id,
        partner_id=last.partner_id,
        at=command.at,
        actor=command.actor,
        state=fields.pop("state", last.state),
        ticket=fields.pop("ticket", last.ticket),
        owner=fields.pop("owner", last.owner),
        command_id=command.command_id,
        **fields,
    )
    placed = chained(event, last.seq + 1, last.hash)
    portal._producer.send(
        portal.topics.cases, key=command.case_id.encode(), value=placed.model_dump_json().encode()
    )
    portal._producer.flush(timeout=30)
    return placed


async def _act(
    client: PortalClient,
    portal: RunningPortal,
    case_id: str,
    action: str,
    form: dict[str, str],
    answer: CaseEventType | None,
    **answer_fields: Any,
) -> tuple[CaseCommand, str]:
    """POST a console form; play the engine (answer the command); the command and the page redirected to."""
    before = {c.command_id for c in portal.commands()}
    posting = asyncio.ensure_future(
        client.post(f"/staff/cases/{case_id}/{action}", data={"csrf_token": client.csrf, **form})
    )

    def sent() -> CaseCommand | None:
        return next(
            (c for c in portal.commands() if c.case_id == case_id and c.command_id not in before), None
        )

    command = await asyncio.to_thread(wait_for, sent, 30, f"the {action} command")
    if answer is not None:
        await asyncio.to_thread(_answer, portal, command, answer, **answer_fields)
    status, _, response = await posting
    assert status == 303
    assert response.headers["Location"] == f"/staff/cases/{case_id}"
    status, page, _ = await client.get(response.headers["Location"])
    assert status == 200
    return command, page


async def test_partner_users_get_403_on_every_staff_route(portal: RunningPortal) -> None:
    case = portal.seed_case()
    routes = ["/staff", f"/staff/cases/{case.case_id}", "/staff?state=all&severity=1"]
    for username in ("nadia", "tom"):
        async with PortalClient(portal.url) as client:
            await client.sign_in(username, USERS[username])
            for path in routes:
                status, _, _ = await client.get(path)
                assert status == 403, (username, path)
            for action in ACTIONS:
                status, _, _ = await client.post(
                    f"/staff/cases/{case.case_id}/{action}",
                    data={
                        "csrf_token": client.csrf,
                        "severity": "1",
                        "owner": "x",
                        "message": "m",
                        "reason": "r",
                    },
                )
                assert status == 403, (username, action)
    async with PortalClient(portal.url) as anonymous:
        status, _, response = await anonymous.get("/staff")
        assert status == 302
        assert response.headers["Location"].startswith("/login")
        status, _, _ = await anonymous.post(f"/staff/cases/{case.case_id}/triage", data={"severity": "1"})
        assert status == 302
    assert [c for c in portal.commands() if c.case_id == case.case_id] == []


async def test_queue_lists_untriaged_first_and_sev1_stands_out(portal: RunningPortal) -> None:
    now = SystemClock().now()
    sev1 = portal.seed_case(
        title="Sev1 outage", ticket="FW-100001", severity=Severity.SEV1, at=now - timedelta(hours=5)
    )
    older_new = portal.seed_case(title="Older new case", at=now - timedelta(hours=2))
    newer_new = portal.seed_case(title="Newer new case", at=now - timedelta(hours=1))
    telco = portal.seed_case(
        customer_id="globex", partner_id="telco-isp", title="Telco case", ticket="FW-100002"
    )
    async with PortalClient(portal.url) as client:
        await client.sign_in("sam", USERS["sam"])
        status, page, _ = await client.get("/staff")
        assert status == 200
        order = [m for m in re.findall(r'data-case="([^"]+)"', page)]
        mine = [c for c in order if c in {sev1.case_id, older_new.case_id, newer_new.case_id, telco.case_id}]
        assert mine[:2] == [older_new.case_id, newer_new.case_id]
        assert mine.index(sev1.case_id) < mine.index(telco.case_id)  # then by age
        assert re.search(rf'<tr class="case sev1"\s+data-case="{sev1.case_id}"', page)
        assert "SEV1" in page

        status, page, _ = await client.get("/staff?partner=telco-isp&state=all")
        assert telco.case_id in page
        assert sev1.case_id not in page
        status, page, _ = await client.get("/staff?severity=none")
        assert older_new.case_id in page
        assert sev1.case_id not in page


async def test_staff_triage_sends_triage_and_the_page_shows_the_ticket(portal: RunningPortal) -> None:
    case = portal.seed_case(
        title="Shop down",
        steps=[{"type": "case.note", "visibility": "internal", "message": "internal remark"}],
    )
    async with PortalClient(portal.url) as client:
        await client.sign_in("sam", USERS["sam"])
        status, page, _ = await client.get(f"/staff/cases/{case.case_id}")
        assert status == 200
        assert "Shop down" in page
        assert "internal remark" in page  # staff see internal events
        assert f'action="/staff/cases/{case.case_id}/triage"' in page
        assert f'action="/staff/cases/{case.case_id}/refer"' in page

        command, page = await _act(
            client,
            portal,
            case.case_id,
            "triage",
            {"severity": "1", "owner": "sam", "message": "whole shop down"},
            CaseEventType.TRIAGED,
            state=CaseState.TRIAGED,
            severity=Severity.SEV1,
            ticket="FW-100042",
            owner="sam",
            reason="triaged as Sev1",
        )
        assert command.type is CommandType.TRIAGE
        assert command.severity is Severity.SEV1
        assert command.owner == "sam"
        assert command.actor == "staff:sam"
        assert command.message == "whole shop down"
        uuid.UUID(command.command_id)
        assert abs((command.at - SystemClock().now()).total_seconds()) < 60
        assert "Triaged. Ticket FW-100042." in page
        assert '<span id="ticket">FW-100042</span>' in page
        assert 'class="header sev1"' in page
        assert f'action="/staff/cases/{case.case_id}/start_work"' in page  # triaged: work can start
        assert f'action="/staff/cases/{case.case_id}/refer"' not in page


async def test_rejection_reason_and_other_actions(portal: RunningPortal) -> None:
    case = portal.seed_case(ticket="FW-100050")
    async with PortalClient(portal.url) as client:
        await client.sign_in("sam", USERS["sam"])
        reason = "wait_on_customer is not allowed in state closed (only triaged, working)"
        command, page = await _act(
            client,
            portal,
            case.case_id,
            "wait",
            {"message": "logs please"},
            CaseEventType.COMMAND_REJECTED,
            reason=reason,
            visibility=Visibility.INTERNAL,
        )
        assert command.type is CommandType.WAIT_ON_CUSTOMER
        assert command.message == "logs please"
        assert f"Wait on the customer was rejected by the case engine: {reason}" in page

        command, page = await _act(
            client,
            portal,
            case.case_id,
            "phone",
            {"message": "called about the logs", "contact": "Nadia"},
            CaseEventType.NOTE,
            reason="phone follow-up",
            visibility=Visibility.INTERNAL,
            details={"kind": "phone", "contact": "Nadia", "message": "called about the logs"},
        )
        assert command.type is CommandType.NOTE
        assert command.details == {"kind": "phone", "contact": "Nadia"}
        assert "Phone call logged." in page
        assert "called about the logs" in page

        command, page = await _act(
            client,
            portal,
            case.case_id,
            "reply",
            {"message": "We restarted the web server."},
            CaseEventType.CUSTOMER_UPDATE,
            reason="status update posted",
        )
        assert command.type is CommandType.POST_UPDATE
        assert command.message == "We restarted the web server."
        assert "Reply sent." in page

        # an incomplete form sends nothing; the page says why
        status, _, response = await client.post(
            f"/staff/cases/{case.case_id}/assign", data={"csrf_token": client.csrf, "owner": ""}
        )
        assert status == 303
        status, page, _ = await client.get(response.headers["Location"])
        assert "Assign: not sent: the new owner is required." in page
        # CSRF is enforced
        status, _, _ = await client.post(
            f"/staff/cases/{case.case_id}/resolve", data={"csrf_token": "forged"}
        )
        assert status == 403
        status, _, _ = await client.post(
            f"/staff/cases/{case.case_id}/explode", data={"csrf_token": client.csrf}
        )
        assert status == 404
        status, _, _ = await client.get("/staff/cases/FW-999999")
        assert status == 404
    sent = [c.type for c in portal.commands() if c.case_id == case.case_id]
    assert sent == [CommandType.WAIT_ON_CUSTOMER, CommandType.NOTE, CommandType.POST_UPDATE]


async def test_referral_closes_without_a_ticket(portal: RunningPortal) -> None:
    case = portal.seed_case(title="My printer is broken")
    async with PortalClient(portal.url) as client:
        await client.sign_in("sam", USERS["sam"])
        command, page = await _act(
            client,
            portal,
            case.case_id,
            "refer",
            {"reason": "end user, not a partner", "message": ""},
            CaseEventType.CLOSED,
            state=CaseState.CLOSED,
            reason="end user, not a partner",
            details={"referral": True},
        )
        assert command.type is CommandType.CLOSE
        assert command.details == {"referral": True}
        assert command.reason == "end user, not a partner"
        assert "Closed as a referral" in page
        assert '<dd id="state">closed</dd>' in page
        assert f'action="/staff/cases/{case.case_id}/reopen"' in page
