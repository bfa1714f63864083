"""The read model gives the CLI's verdict (`casefile.audit`): an event of a case outside its partition, or
one whose signature does not hold, is never folded into the case's view, and the pages and the API say the
chain is broken."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp.test_utils import TestServer

from casefile.audit import ChainStatus
from casefile.reader import partition_for_case
from casefile.signing import Keyring, Signer
from portal.readmodel import ReadModel, chain_marker
from portal.web.keys import KEYS
from schemas.cases import CaseEvent, CaseEventType, CaseSource, CaseState, Severity, chained
from tests.unit.portal.rig import NADIA_TOKEN, USERS, Recorder, make_app, sign_in, start

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
CASE = "prt-chain"
PARTITIONS = 3
ENGINE = Signer.generate()
ROGUE = Signer.generate()
HOME = partition_for_case(CASE, PARTITIONS)
ELSEWHERE = (HOME + 1) % PARTITIONS


def _event(seq: int, kind: CaseEventType, state: CaseState, previous: str) -> CaseEvent:
    event = CaseEvent(
        event_id=f"evt-{seq}",
        case_id=CASE,
        type=kind,
        severity=Severity.SEV2,
        state=state,
        ticket="FW-100777",
        source=CaseSource.PORTAL,
        customer_id="acme",
        partner_id="northwind-partners",
        at=T0 + timedelta(minutes=seq),
        details={"title": "disk full"} if seq == 0 else {},
    )
    return chained(event, seq, previous)


def _genuine() -> list[CaseEvent]:
    opened = ENGINE.sign(_event(0, CaseEventType.CASE_OPENED, CaseState.NEW, ""))
    triaged = ENGINE.sign(_event(1, CaseEventType.TRIAGED, CaseState.TRIAGED, opened.hash))
    return [opened, triaged]


def _resolved(after: CaseEvent, signer: Signer) -> CaseEvent:
    """seq 2 `case.resolved`, chained on `after`, signed by `signer`."""
    return signer.sign(_event(2, CaseEventType.RESOLVED, CaseState.RESOLVED, after.hash))


def _model() -> ReadModel:
    model = ReadModel("127.0.0.1:1", "unused", keys=Keyring.of([ENGINE.public]))
    model.partitions = PARTITIONS
    model.apply_at(HOME, enumerate(_genuine()))
    return model


def test_a_genuine_chain_is_folded_and_verified() -> None:
    model = _model()
    model.apply_at(HOME, [(2, _resolved(_genuine()[1], ENGINE))])
    view = model.get("FW-100777")
    assert view is not None
    assert view.state is CaseState.RESOLVED
    report = model.chain(CASE)
    assert report.status is ChainStatus.VERIFIED, report.problems
    assert chain_marker(report) is None


def test_an_event_outside_the_cases_partition_is_never_folded() -> None:
    model = _model()
    forged = _resolved(_genuine()[1], ENGINE)  # even correctly signed: the engine never writes there
    model.apply_at(ELSEWHERE, [(7, forged)])
    view = model.get(CASE)
    assert view is not None
    assert view.state is CaseState.TRIAGED, "the misplaced event changed the view"
    assert [e.seq for e in view.timeline] == [0, 1]
    report = model.chain(CASE)
    assert report.status is ChainStatus.BROKEN
    marker = chain_marker(report)
    assert marker is not None
    assert marker.startswith("audit chain broken: ")
    assert f"found in partition {ELSEWHERE} at offset 7" in marker
    assert model.unfolded == 1


def test_a_wrongly_signed_event_is_never_folded() -> None:
    model = _model()
    unknown_key = _resolved(_genuine()[1], ROGUE)
    borrowed_id = unknown_key.model_copy(update={"key_id": ENGINE.key_id})  # claims the engine's key
    for n, forged in enumerate([unknown_key, borrowed_id]):
        model.apply_at(HOME, [(10 + n, forged)])
    dropped = _resolved(_genuine()[1], ENGINE).model_copy(update={"key_id": "", "sig": ""})
    model.apply_at(HOME, [(12, dropped)])
    view = model.get(CASE)
    assert view is not None
    assert view.state is CaseState.TRIAGED
    assert view.conflicts == [], "a forged event must not even reach the fold"
    report = model.chain(CASE)
    assert report.status is ChainStatus.BROKEN
    text = "\n".join(report.problems)
    assert "not a listed verification key" in text
    assert "signature does not verify" in text
    assert "unsigned, but the chain is signed" in text
    assert model.unfolded == 3


def test_unreadable_message_keyed_to_the_case_breaks_its_chain() -> None:
    model = _model()
    model.problem(CASE.encode(), "partition 0 offset 9: not a case event (value: invalid JSON)")
    assert model.chain(CASE).status is ChainStatus.BROKEN
    assert model.problems == 1


async def test_pages_and_api_mark_a_broken_chain() -> None:
    app = make_app(Recorder())
    model = app[KEYS.readmodel]
    model.checker.keys = Keyring.of([ENGINE.public])
    model.partitions = PARTITIONS
    model.apply_at(HOME, enumerate(_genuine()))
    model.apply_at(ELSEWHERE, [(7, _resolved(_genuine()[1], ENGINE))])
    server = TestServer(app)
    partner = await start(server)
    staff = await start(server, "127.0.0.2")
    try:
        api = await partner.get(f"/api/cases/{CASE}", headers={"Authorization": f"Bearer {NADIA_TOKEN}"})
        assert api.status == 200
        body = await api.json()
        assert body["state"] == "triaged"
        assert body["chain"]["status"] == "broken"
        assert body["chain"]["fault"].startswith("audit chain broken: ")
        assert body["chain"]["head_seq"] == 1

        assert (await sign_in(partner, "nadia", USERS["nadia"])).status in (302, 303)
        page = await partner.get("/cases/FW-100777")
        assert page.status == 200
        html = await page.text()
        assert 'id="case-chain"' in html
        assert "audit chain broken: " in html

        assert (await sign_in(staff, "sam", USERS["sam"])).status in (302, 303)
        staff_page = await staff.get(f"/staff/cases/{CASE}")
        assert staff_page.status == 200
        staff_html = await staff_page.text()
        assert 'id="case-chain"' in staff_html
        assert "audit chain broken: " in staff_html
    finally:
        await partner.close()
        await staff.close()


async def test_api_says_verified_and_pages_show_no_marker_for_a_sound_chain() -> None:
    app = make_app(Recorder())
    model = app[KEYS.readmodel]
    model.checker.keys = Keyring.of([ENGINE.public])
    model.partitions = PARTITIONS
    model.apply_at(HOME, enumerate(_genuine()))
    partner = await start(TestServer(app))
    try:
        api = await partner.get(f"/api/cases/{CASE}", headers={"Authorization": f"Bearer {NADIA_TOKEN}"})
        body = await api.json()
        assert body["chain"] == {
            "status": "verified",
            "fault": None,
            "problems": [],
            "head_seq": 1,
            "head_hash": _genuine()[1].hash,
        }
        assert (await sign_in(partner, "nadia", USERS["nadia"])).status in (302, 303)
        html = await (await partner.get(f"/cases/{CASE}")).text()
        assert 'id="case-chain"' not in html
    finally:
        await partner.close()
