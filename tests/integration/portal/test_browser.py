"""Browser end to end: a partner files a case in headless Chromium and follows it to closed.

Everything real on 127.0.0.1: the test broker, a `fleetwatch stream` child process (the case engine answers
the commands), and the portal (read model, producer, pages) with the demo directory and the shipped knowledge
base. Staff triage, resolve and close with `casefile.commands.send_command`, as `fleetwatch case` does.

Chromium is Debian's /usr/bin/chromium driven by Playwright (never `playwright install`). Every wait polls
against a deadline; on failure a screenshot and the page's HTML land in the test's tmp dir.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from casefile.commands import send_command
from casefile.signing import Keyring, existing_signer
from fleetcore.clock import SystemClock
from fleetcore.settings import Settings
from portal.service import Portal
from schemas.cases import CaseState, Severity
from schemas.commands import CaseCommand, CommandType
from schemas.topics import Topics
from tests.helpers import wait_for
from tests.integration.portal.browser import CHROMIUM, CHROMIUM_ARGS
from tests.integration.portal.conftest import USERS, _PortalThread, portal_settings
from tests.integration.streams.test_detector_worker import StreamWorker

pytestmark = pytest.mark.integration

KB = Path(__file__).resolve().parents[3] / "examples" / "kb"
STEP_S = 90.0
"""Deadline of each step that waits on the engine (the worker shares 2 cores with the whole suite)."""


@pytest.fixture
def engine(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> Iterator[StreamWorker]:
    """A real `fleetwatch stream` worker on the test's topics, ready."""
    worker = StreamWorker(kafka_bootstrap, topics, tmp_path / "stream")
    worker.log.parent.mkdir(parents=True, exist_ok=True)
    worker.start()
    try:
        wait_for(lambda: worker.ready_count() >= 1, 180, "the stream worker to be ready")
        yield worker
    except AssertionError:
        print(worker.log_tail())
        raise
    finally:
        worker.stop()


@pytest.fixture
def site(engine: StreamWorker, kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> Iterator[Portal]:
    """The portal with the shipped knowledge base, on a free port; it verifies case events with the public
    key of the key the engine generated in its data dir (published as a key list, as in a deployment)."""
    signer = wait_for(
        lambda: existing_signer(Settings(data_dir=tmp_path / "stream")), 60, "the engine's signing key"
    )
    keys = tmp_path / "audit-keys.json"
    keys.write_text(json.dumps(Keyring.of([signer.public]).to_json()), encoding="utf-8")
    settings = portal_settings(kafka_bootstrap, topics, tmp_path / "portal", kb_dir=KB, audit_keys_file=keys)
    service = Portal(settings)
    runner = _PortalThread(service)
    runner.start()
    try:
        wait_for(service.readmodel.caught_up.is_set, 30, "the portal's read model to catch up")
        yield service
    finally:
        runner.stop()


def staff(bootstrap: str, topics: Topics, case_id: str, kind: CommandType, **fields: object) -> None:
    """What support does from the console or `fleetwatch case`: one command to the engine."""
    command = CaseCommand.model_validate(
        {
            "command_id": str(uuid.uuid4()),
            "case_id": case_id,
            "type": kind,
            "at": SystemClock().now(),
            "actor": "staff:sam",
            **fields,
        }
    )
    send_command(bootstrap, topics.case_commands, command)


def test_partner_files_a_case_and_follows_it_to_closed(
    engine: StreamWorker, site: Portal, kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import Page, expect, sync_playwright

    def shows(page: Page, url: str, selector: str, pattern: str) -> bool:
        """Load `url` and say whether `selector`'s text matches `pattern` (False on a navigation race)."""
        try:
            page.goto(url)
            return bool(re.search(pattern, page.locator(selector).first.inner_text(timeout=2000)))
        except PlaywrightError:
            return False

    base = site.url
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.set_default_timeout(15_000)
        try:
            # nadia signs in (the dashboard sends her to the sign-in page first)
            page.goto(f"{base}/")
            expect(page).to_have_url(re.compile(r"/login\?next=/$"))
            page.fill("#username", "nadia")
            page.fill("#password", USERS["nadia"])
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("Open cases")

            # she files a case; typing the title brings up the matching knowledge-base article
            page.click("text=File a case")
            expect(page).to_have_url(f"{base}/cases/new")
            page.select_option("#customer", "acme")
            page.fill("#server", "acme-web-1")
            page.locator("#title").press_sequentially("Web shop shows an expired certificate", delay=10)
            suggestion = page.locator("#kb-suggestions li a", has_text="TLS and certificate errors")
            expect(suggestion).to_be_visible(timeout=10_000)
            page.fill("#description", "Browsers warn about the certificate since 09:00; all users affected.")
            page.click("button:has-text('File the case')")

            # the case page says it waits for triage
            expect(page).to_have_url(re.compile(r"/cases/prt-[0-9a-f]{20}$"))
            case_id = page.url.rsplit("/", 1)[1]
            expect(page.locator("#case-ticket")).to_contain_text("awaiting triage")
            expect(page.locator("body")).to_contain_text("Your case was filed")

            def opened() -> bool:
                view = site.readmodel.get(case_id)
                return view is not None and view.state is CaseState.NEW

            wait_for(opened, STEP_S, "the engine to open the portal case", interval=0.2)
            case_url = f"{base}/cases/{case_id}"
            assert shows(page, case_url, "#case-state", "awaiting triage")

            # staff triage it: the engine assigns the ticket number, nadia's page shows it
            staff(kafka_bootstrap, topics, case_id, CommandType.TRIAGE, severity=Severity.SEV2, owner="sam")
            wait_for(lambda: shows(page, case_url, "#case-ticket", r"FW-\d{6}"), STEP_S, "the ticket", 0.5)
            ticket = page.locator("#case-ticket").inner_text().strip()
            view = site.readmodel.get(case_id)
            assert view is not None
            assert ticket == view.ticket
            expect(page.locator("#case-severity")).to_have_text("Sev2")
            expect(page.locator("#case-owner")).to_have_text("sam")
            page.goto(f"{base}/")
            expect(page.locator(f"tr[data-case='{case_id}']")).to_contain_text(ticket)

            # she adds a message; it lands on the timeline
            page.goto(case_url)
            page.fill("#message", "Certificate chain attached to the email.")
            page.click("button:has-text('Send')")
            expect(page.locator("body")).to_contain_text("Your message was sent")
            wait_for(
                lambda: shows(page, case_url, "ol.timeline", "Certificate chain attached"),
                STEP_S,
                "her message on the timeline",
                0.5,
            )

            # staff resolve and close it; she finds it under recently closed, no longer among the open ones
            staff(kafka_bootstrap, topics, case_id, CommandType.RESOLVE, reason="new certificate installed")
            staff(kafka_bootstrap, topics, case_id, CommandType.CLOSE, reason="confirmed by the partner")
            wait_for(lambda: shows(page, case_url, "#case-state", "^closed$"), STEP_S, "the case closed", 0.5)
            page.goto(f"{base}/")
            expect(page.locator(f"tr[data-case='{case_id}']")).to_have_count(0)
            page.click("text=Recently closed")
            expect(page).to_have_url(f"{base}/cases/closed")
            row = page.locator(f"tr[data-case='{case_id}']")
            expect(row).to_contain_text(ticket)
            expect(row).to_contain_text(SystemClock().now().strftime("%Y-%m-%d"))
        except BaseException:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            (tmp_path / "failure.html").write_text(page.content())
            print(f"screenshot: {tmp_path / 'failure.png'}\n{engine.log_tail(40)}")
            raise
        finally:
            browser.close()
