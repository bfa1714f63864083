"""Partner pages: the pure helpers (rows, SLA facts, timelines, commands a form asks for), then the pages
in-process (aiohttp test server, a read model fed by hand, commands captured instead of sent)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from casefile.view import CaseView, fold
from fleetcore.settings import Settings
from portal.directory import Directory, load_directory
from portal.readmodel import ReadModel
from portal.web.app import create_app
from portal.web.pages import (
    FormError,
    Pending,
    PendingFilings,
    age,
    case_row,
    customers_for,
    open_command,
    open_rows,
    partner_timeline,
    recently_closed,
    reply_command,
    sla_facts,
)
from schemas.cases import (
    CaseEvent,
    CaseEventType,
    CaseSource,
    CaseState,
    Severity,
    Visibility,
    chained,
    event_id_for,
)
from schemas.commands import CaseCommand, CommandType
from schemas.portal import PortalAuditEvent

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DIRECTORY = load_directory(ROOT / "examples" / "partners.yaml")
NADIA = DIRECTORY.users["nadia"]
TOM = DIRECTORY.users["tom"]
SAM = DIRECTORY.users["sam"]


def history(
    case_id: str,
    steps: list[tuple[CaseEventType, dict[str, Any]]],
    *,
    customer: str = "acme",
    partner: str | None = "northwind-partners",
    start: datetime = NOW - timedelta(hours=3),
) -> list[CaseEvent]:
    """A chained case history; each step: (type, fields to set from then on or on the event)."""
    current: dict[str, Any] = {"state": CaseState.NEW, "severity": None, "ticket": None, "owner": None}
    events, previous = [], ""
    for seq, (kind, fields) in enumerate(steps):
        sticky = {k: v for k, v in fields.items() if k in current}
        current.update(sticky)
        rest = {k: v for k, v in fields.items() if k not in current}
        event = CaseEvent(
            event_id=event_id_for(case_id, kind, str(seq)),
            case_id=case_id,
            type=kind,
            source=CaseSource.PORTAL,
            customer_id=customer,
            partner_id=partner,
            at=rest.pop("at", start + timedelta(minutes=seq)),
            actor=rest.pop("actor", "staff:sam"),
            reason=rest.pop("reason", kind.value),
            **current,
            **rest,
        )
        placed = chained(event, seq, previous)
        previous = placed.hash
        events.append(placed)
    return events


def view_of(events: list[CaseEvent]) -> CaseView:
    return next(iter(fold(events).values()))


OPENED = (CaseEventType.CASE_OPENED, {"details": {"title": "Shop down", "message": "since 9"}})


def triaged(
    severity: Severity = Severity.SEV2, ticket: str = "FW-100001"
) -> tuple[CaseEventType, dict[str, Any]]:
    return CaseEventType.TRIAGED, {"state": CaseState.TRIAGED, "severity": severity, "ticket": ticket}


# -- pure helpers -----------------------------------------------------------------------------------------


def test_age_is_short() -> None:
    assert [age(timedelta(seconds=s)) for s in (-5, 42, 17 * 60, 3 * 3600 + 300, 2 * 86400 + 4 * 3600)] == [
        "0s",
        "42s",
        "17m",
        "3h05m",
        "2d04h",
    ]


def test_open_rows_put_sev1_first_then_untriaged_and_leave_closed_out() -> None:
    views = [
        view_of(history("c-sev2", [OPENED, triaged(Severity.SEV2, "FW-1")])),
        view_of(history("c-new", [OPENED])),
        view_of(history("c-sev1", [OPENED, triaged(Severity.SEV1, "FW-2")])),
        view_of(history("c-done", [OPENED, triaged(), (CaseEventType.CLOSED, {"state": CaseState.CLOSED})])),
    ]
    rows = open_rows(views, NOW)
    assert [r.case_id for r in rows] == ["c-sev1", "c-new", "c-sev2"]
    assert rows[0].sev1
    assert rows[0].severity == "Sev1"
    assert rows[0].ticket == "FW-2"
    assert rows[1].ticket is None
    assert rows[1].state == "awaiting triage"
    assert rows[1].severity == "untriaged"
    assert rows[2].age == "3h00m"


def test_sla_facts_say_breach_waiting_last_update_and_unworked_sev1() -> None:
    events = history(
        "c1",
        [
            OPENED,
            triaged(Severity.SEV1),
            (CaseEventType.CUSTOMER_UPDATE, {"details": {"message": "looking"}}),
            (CaseEventType.SLA_BREACHED, {"details": {"clock": "sev1.work"}, "actor": "timer"}),
            (CaseEventType.WAITING, {"state": CaseState.WAITING}),
        ],
    )
    facts = sla_facts(view_of(events), NOW)
    assert facts == [
        "SLA breached: sev1 work",
        "waiting on you for 2h56m (SLA clocks paused)",
        "last update 2h58m ago",
        "Sev1: not worked yet",
    ]
    assert case_row(view_of(events), NOW).breached


def test_recently_closed_is_the_last_30_days_newest_first() -> None:
    def closed(case_id: str, days_ago: float, state: CaseState = CaseState.CLOSED) -> CaseView:
        kind = CaseEventType.CLOSED if state is CaseState.CLOSED else CaseEventType.RESOLVED
        when = NOW - timedelta(days=days_ago)
        return view_of(
            history(
                case_id, [OPENED, triaged(), (kind, {"state": state, "at": when})], start=when - timedelta(1)
            )
        )

    views = [closed("old", 31), closed("week", 7), closed("today", 0.1, CaseState.RESOLVED)]
    views.append(view_of(history("open", [OPENED])))
    rows = recently_closed(views, NOW)
    assert [r.case_id for r in rows] == ["today", "week"]
    assert rows[1].closed_at == "2026-11-13 12:00Z"


def test_timeline_shows_only_customer_events_and_hides_staff_contacts() -> None:
    events = history(
        "c1",
        [
            OPENED,
            triaged(),
            (CaseEventType.NOTE, {"visibility": Visibility.INTERNAL, "details": {"message": "secret"}}),
            (
                CaseEventType.NOTIFICATION_SENT,
                {"details": {"contact": "ops-manager-07", "role": "operations_manager", "channel": "page"}},
            ),
            (
                CaseEventType.NOTIFICATION_SENT,
                {
                    "details": {
                        "contact": "helpdesk@northwind.example",
                        "role": "partner_helpdesk",
                        "channel": "email",
                    }
                },
            ),
            (CaseEventType.CUSTOMER_REPLIED, {"actor": "partner:nadia", "details": {"message": "any news?"}}),
            (CaseEventType.COMMAND_REJECTED, {"visibility": Visibility.INTERNAL}),
        ],
    )
    entries = partner_timeline(view_of(events), NADIA)
    text = repr(entries)
    assert "secret" not in text
    assert "ops-manager-07" not in text
    assert "command.rejected" not in text
    assert [e.label for e in entries] == [
        "Case opened",
        "Triaged",
        "Notification sent",
        "Notification sent",
        "Message from you",
    ]
    assert entries[2].text == "page to operations_manager"
    assert entries[3].text == "email to partner_helpdesk (helpdesk@northwind.example)"
    assert entries[4].actor == "you"
    assert entries[4].message == "any news?"
    assert entries[1].actor == "support"
    staff_view = partner_timeline(view_of(events), SAM)
    assert [e.label for e in staff_view if e.kind == "internal"] == [
        "Note (internal)",
        "Command rejected (internal)",
    ]
    assert "ops-manager-07" in repr(staff_view)


def test_customers_are_the_partners_own_and_every_one_for_staff() -> None:
    assert customers_for(NADIA, DIRECTORY) == [
        ("acme", "northwind-partners"),
        ("umbrella", "northwind-partners"),
    ]
    assert {c for c, _ in customers_for(SAM, DIRECTORY)} == {"acme", "umbrella", "globex", "stark"}


def form(**fields: str) -> dict[str, str]:
    return {"customer": "acme", "title": "Shop down", "description": "since 9", **fields}


def test_open_command_files_a_portal_case_without_severity() -> None:
    command = open_command(NADIA, DIRECTORY, form(server="acme-web-1", urgency="1"), "prt-1", "cmd-1", NOW)
    assert command.type is CommandType.OPEN
    assert command.source is CaseSource.PORTAL
    assert (command.customer_id, command.partner_id, command.server_id) == (
        "acme",
        "northwind-partners",
        "acme-web-1",
    )
    assert command.actor == "partner:nadia"
    assert command.message == "since 9"
    assert command.title == "Shop down"
    assert command.severity is Severity.SEV1  # only a wish: the engine records it and waits for triage
    staff = open_command(SAM, DIRECTORY, form(customer="globex"), "prt-2", "cmd-2", NOW)
    assert (staff.partner_id, staff.actor) == ("telco-isp", "staff:sam")


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        ({"customer": "globex"}, "customer"),  # another partner's customer
        ({"customer": ""}, "customer"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 501}, "title"),
        ({"description": "x" * 20_001}, "description"),
        ({"server": "bad server id!"}, "server"),
        ({"urgency": "7"}, "urgency"),
        ({"urgency": "soon"}, "urgency"),
    ],
)
def test_open_command_refuses_bad_forms_field_by_field(fields: dict[str, str], field_name: str) -> None:
    with pytest.raises(FormError) as caught:
        open_command(NADIA, DIRECTORY, form(**fields), "prt-1", "cmd-1", NOW)
    assert field_name in caught.value.errors


def test_reply_command_needs_a_message() -> None:
    command = reply_command(NADIA, "prt-1", {"message": "  more logs attached  "}, "cmd", NOW)
    assert (command.type, command.message, command.actor) == (
        CommandType.CUSTOMER_REPLIED,
        "more logs attached",
        "partner:nadia",
    )
    for bad in ({"message": "  "}, {}, {"message": "x" * 20_001}):
        with pytest.raises(FormError):
            reply_command(NADIA, "prt-1", bad, "cmd", NOW)


def test_pending_filings_are_isolated_bounded_and_expire() -> None:
    pending = PendingFilings(limit=2)
    for i in range(3):
        pending.add(Pending(f"p{i}", "northwind-partners", "acme", "t", NOW - timedelta(minutes=i)))
    assert pending.get("p0", NOW) is None  # the oldest went first
    assert [p.case_id for p in pending.visible(NADIA, DIRECTORY, NOW)] == ["p1", "p2"]
    assert pending.visible(TOM, DIRECTORY, NOW) == []
    assert pending.get("p1", NOW + timedelta(hours=2)) is None


# -- the pages in-process -----------------------------------------------------------------------------------


class FixedClock:
    def now(self) -> datetime:
        return NOW

    def scale(self) -> float:
        return 1.0


@dataclass
class Harness:
    client: TestClient[Any, Any]
    readmodel: ReadModel
    sent: list[CaseCommand] = field(default_factory=list)
    fail_sends: bool = False

    async def sign_in(self, username: str, password: str) -> None:
        page = await self.client.get("/login")
        token = csrf_of(await page.text())
        answer = await self.client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": token, "next": "/"},
            allow_redirects=False,
        )
        assert answer.status == 302, await answer.text()

    async def csrf(self, path: str = "/cases/new") -> str:
        return csrf_of(await (await self.client.get(path)).text())


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


@pytest.fixture
async def pages(tmp_path: Path) -> AsyncIterator[Harness]:
    settings = Settings(
        data_dir=tmp_path,
        partners_file=ROOT / "examples" / "partners.yaml",
        portal_secret="unit-test-secret-0123456789abcdef0123456789",
        portal_secure_cookies=False,
        kb_dir=ROOT / "examples" / "kb",
    )
    readmodel = ReadModel("127.0.0.1:1", "unused")  # never started: tests fold events in by hand
    harness_ref: list[Harness] = []

    async def send(command: CaseCommand) -> None:
        if harness_ref[0].fail_sends:
            raise ConnectionError("broker down")
        harness_ref[0].sent.append(command)

    async def audit(event: PortalAuditEvent) -> None:
        return None

    directory: Directory = DIRECTORY
    app = create_app(settings, directory, readmodel, send, audit, clock=FixedClock())
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    harness_ref.append(Harness(client, readmodel))
    try:
        yield harness_ref[0]
    finally:
        await client.close()


def seed(
    harness: Harness, case_id: str, steps: list[tuple[CaseEventType, dict[str, Any]]], **kw: Any
) -> None:
    harness.readmodel.apply(history(case_id, steps, **kw))


async def test_pages_need_a_signed_in_user(pages: Harness) -> None:
    for path in (
        "/",
        "/cases/new",
        "/cases/closed",
        "/cases/x",
        "/kb",
        "/kb/dns-problems",
        "/kb/search?q=dns",
    ):
        answer = await pages.client.get(path, allow_redirects=False)
        assert answer.status == 302, path
        assert answer.headers["Location"].startswith("/login?next="), path
    answer = await pages.client.post("/cases/new", data={"title": "x"}, allow_redirects=False)
    assert answer.status == 302
    assert pages.sent == []


async def test_dashboard_lists_only_the_partners_open_cases(pages: Harness) -> None:
    seed(pages, "c-mine", [OPENED, triaged(Severity.SEV1, "FW-100001")])
    seed(pages, "c-mine-new", [OPENED], customer="umbrella")
    seed(
        pages,
        "c-theirs",
        [OPENED, triaged(Severity.SEV2, "FW-100002")],
        customer="globex",
        partner="telco-isp",
    )
    await pages.sign_in("nadia", "northwind-demo")
    html = await (await pages.client.get("/")).text()
    assert "FW-100001" in html
    assert "c-mine-new" in html
    assert "awaiting triage" in html
    assert "FW-100002" not in html
    assert "c-theirs" not in html
    assert "globex" not in html
    assert re.search(r'<tr class="sev1\s*" data-case="c-mine">', html)


async def test_other_partners_cases_are_404_by_id_and_by_ticket(pages: Harness) -> None:
    seed(
        pages,
        "c-theirs",
        [OPENED, triaged(Severity.SEV2, "FW-100002")],
        customer="globex",
        partner="telco-isp",
    )
    await pages.sign_in("nadia", "northwind-demo")
    token = await pages.csrf()
    missing = await pages.client.get("/cases/no-such-case")
    for ref in ("c-theirs", "FW-100002", "fw-100002"):
        answer = await pages.client.get(f"/cases/{ref}")
        assert answer.status == 404
        assert await answer.text() == await missing.text()
        post = await pages.client.post(
            f"/cases/{ref}/messages", data={"csrf_token": token, "message": "hi"}, allow_redirects=False
        )
        assert post.status == 404
    assert pages.sent == []


async def test_case_page_shows_header_visible_timeline_and_takes_a_message(pages: Harness) -> None:
    seed(
        pages,
        "c1",
        [
            OPENED,
            (
                *triaged(Severity.SEV2, "FW-100007")[:1],
                {**triaged(Severity.SEV2, "FW-100007")[1], "owner": "sam"},
            ),
            (
                CaseEventType.NOTE,
                {"visibility": Visibility.INTERNAL, "details": {"message": "internal only"}},
            ),
            (CaseEventType.CUSTOMER_UPDATE, {"details": {"message": "<b>we are on it</b>"}}),
        ],
    )
    await pages.sign_in("nadia", "northwind-demo")
    html = await (await pages.client.get("/cases/FW-100007")).text()
    assert "FW-100007" in html
    assert "Sev2" in html
    assert "triaged" in html
    assert ">sam<" in html
    assert "internal only" not in html
    assert "&lt;b&gt;we are on it&lt;/b&gt;" in html
    assert "<b>we are on it</b>" not in html
    token = csrf_of(html)
    answer = await pages.client.post(
        "/cases/FW-100007/messages",
        data={"csrf_token": token, "message": "logs attached"},
        allow_redirects=False,
    )
    assert answer.status == 303
    assert answer.headers["Location"] == "/cases/c1"
    [command] = pages.sent
    assert (command.type, command.case_id, command.message, command.actor) == (
        CommandType.CUSTOMER_REPLIED,
        "c1",
        "logs attached",
        "partner:nadia",
    )
    assert "Your message was sent" in await (await pages.client.get("/cases/c1")).text()


async def test_forms_without_the_csrf_token_are_refused(pages: Harness) -> None:
    seed(pages, "c1", [OPENED])
    await pages.sign_in("nadia", "northwind-demo")
    for path, data in (("/cases/new", form()), ("/cases/c1/messages", {"message": "hi"})):
        for token in (None, "forged"):
            body = dict(data) if token is None else {**data, "csrf_token": token}
            answer = await pages.client.post(path, data=body, allow_redirects=False)
            assert answer.status == 403, (path, token)
    assert pages.sent == []


async def test_filing_sends_open_and_shows_the_filing_until_the_read_model_has_it(pages: Harness) -> None:
    await pages.sign_in("nadia", "northwind-demo")
    form_html = await (await pages.client.get("/cases/new")).text()
    assert 'value="acme"' in form_html
    assert 'value="umbrella"' in form_html
    assert "globex" not in form_html
    token = csrf_of(form_html)
    answer = await pages.client.post(
        "/cases/new", data={**form(title="Shop <down>"), "csrf_token": token}, allow_redirects=False
    )
    assert answer.status == 303
    [command] = pages.sent
    assert command.type is CommandType.OPEN
    assert command.source is CaseSource.PORTAL
    assert answer.headers["Location"] == f"/cases/{command.case_id}"
    page = await (await pages.client.get(answer.headers["Location"])).text()
    assert "Filed, awaiting triage" in page
    assert "Shop &lt;down&gt;" in page
    assert "Your case was filed" in page
    assert command.case_id in await (await pages.client.get("/")).text()
    # tom may not see nadia's filing, even while it is only pending
    await pages.sign_in("tom", "telco-demo")
    assert (await pages.client.get(f"/cases/{command.case_id}")).status == 404
    assert command.case_id not in await (await pages.client.get("/")).text()
    # once the engine's events arrive, the real case replaces the filing
    await pages.sign_in("nadia", "northwind-demo")
    seed(pages, command.case_id, [OPENED, triaged(Severity.SEV3, "FW-100009")])
    page = await (await pages.client.get(f"/cases/{command.case_id}")).text()
    assert "FW-100009" in page
    assert "Filed, awaiting triage" not in page


async def test_filing_for_another_partners_customer_is_refused(pages: Harness) -> None:
    await pages.sign_in("nadia", "northwind-demo")
    token = await pages.csrf()
    answer = await pages.client.post("/cases/new", data={**form(customer="globex"), "csrf_token": token})
    assert answer.status == 400
    assert "Choose one of your customers." in await answer.text()
    assert pages.sent == []


async def test_a_broker_failure_keeps_the_form_and_says_so(pages: Harness) -> None:
    await pages.sign_in("nadia", "northwind-demo")
    token = await pages.csrf()
    pages.fail_sends = True
    answer = await pages.client.post("/cases/new", data={**form(title="Keep me"), "csrf_token": token})
    assert answer.status == 503
    html = await answer.text()
    assert "could not be reached" in html
    assert 'value="Keep me"' in html


async def test_closed_cases_page_and_closed_cases_take_no_message(pages: Harness) -> None:
    done = NOW - timedelta(days=2)
    seed(
        pages,
        "c-closed",
        [
            OPENED,
            triaged(ticket="FW-100011"),
            (CaseEventType.CLOSED, {"state": CaseState.CLOSED, "at": done}),
        ],
        start=done - timedelta(hours=1),
    )
    old = NOW - timedelta(days=40)
    seed(
        pages,
        "c-old",
        [OPENED, triaged(ticket="FW-100012"), (CaseEventType.CLOSED, {"state": CaseState.CLOSED, "at": old})],
        start=old - timedelta(hours=1),
    )
    await pages.sign_in("nadia", "northwind-demo")
    html = await (await pages.client.get("/cases/closed")).text()
    assert "FW-100011" in html
    assert "FW-100012" not in html
    assert "FW-100011" not in await (await pages.client.get("/")).text()
    case_html = await (await pages.client.get("/cases/c-closed")).text()
    assert "Add a message" not in case_html
    answer = await pages.client.post(
        "/cases/c-closed/messages",
        data={"csrf_token": csrf_of(case_html), "message": "hi"},
        allow_redirects=False,
    )
    assert answer.status == 303
    assert pages.sent == []


async def test_knowledge_base_pages_and_search(pages: Harness) -> None:
    await pages.sign_in("nadia", "northwind-demo")
    index = await (await pages.client.get("/kb")).text()
    assert "TLS and certificate errors" in index
    assert "How to file a good case" in index
    article = await pages.client.get("/kb/tls-certificate-errors")
    assert article.status == 200
    assert "<h2>Find out which error it is</h2>" in await article.text()
    assert (await pages.client.get("/kb/no-such-article")).status == 404
    hits = await (await pages.client.get("/kb/search", params={"q": "certificate expired"})).json()
    assert hits[0] == {
        "slug": "tls-certificate-errors",
        "title": "TLS and certificate errors",
        "snippet": hits[0]["snippet"],
    }
    assert "certificate" in hits[0]["snippet"]
    assert await (await pages.client.get("/kb/search", params={"q": ""})).json() == []
    results = await (await pages.client.get("/kb", params={"q": "<script>dns"})).text()
    assert "DNS problems" in results
    assert "<script>dns" not in results
    static = await pages.client.get("/static/portal.js")
    assert static.status == 200
    assert "kb/search" in await static.text()


async def test_staff_read_the_partner_pages_but_answer_from_the_console(pages: Harness) -> None:
    seed(pages, "c1", [OPENED, triaged(ticket="FW-100021")], customer="globex", partner="telco-isp")
    await pages.sign_in("sam", "staff-demo")
    html = await (await pages.client.get("/cases/FW-100021")).text()
    assert "Add a message" not in html
    assert "/staff/cases/c1" in html
    answer = await pages.client.post(
        "/cases/c1/messages", data={"csrf_token": csrf_of(html), "message": "hi"}, allow_redirects=False
    )
    assert answer.status == 303
    assert pages.sent == []


def test_sla_facts_show_the_running_deadlines_soonest_first() -> None:
    update_due = (NOW + timedelta(minutes=20)).isoformat()
    work_due = (NOW - timedelta(minutes=5)).isoformat()
    events = history(
        "c2",
        [
            OPENED,
            (CaseEventType.TRIAGED, {"details": {"due": f"status.update={update_due},sev1.work={work_due}"}}),
        ],
    )
    facts = sla_facts(view_of(events), NOW)
    assert facts[-2:] == ["work on it due now", "next status update due in 20m"]
