"""The read model's folding and lookups (no broker: events are applied directly) and what partners see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from portal.directory import Directory, load_directory
from portal.readmodel import ReadModel, visible_events
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

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "partners.yaml"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def directory() -> Directory:
    return load_directory(EXAMPLE)


def _history(
    case_id: str, customer: str, partner: str | None, ticket: str | None, minute: int = 0
) -> list[CaseEvent]:
    base = {
        "case_id": case_id,
        "source": CaseSource.PORTAL,
        "customer_id": customer,
        "partner_id": partner,
    }
    events = [
        CaseEvent(
            event_id=event_id_for(case_id, CaseEventType.CASE_OPENED),
            type=CaseEventType.CASE_OPENED,
            severity=None,
            at=T0 + timedelta(minutes=minute),
            details={"title": f"title of {case_id}"},
            **base,
        )
    ]
    if ticket:
        events.append(
            CaseEvent(
                event_id=event_id_for(case_id, CaseEventType.TRIAGED, "t"),
                type=CaseEventType.TRIAGED,
                severity=Severity.SEV2,
                state=CaseState.TRIAGED,
                ticket=ticket,
                at=T0 + timedelta(minutes=minute + 1),
                **base,
            )
        )
    out, previous = [], ""
    for seq, event in enumerate(events):
        placed = chained(event, seq, previous)
        previous = placed.hash
        out.append(placed)
    return out


def _model() -> ReadModel:
    model = ReadModel("127.0.0.1:1", "unused")
    model.apply(_history("prt-a", "acme", "northwind-partners", "FW-100004", minute=0))
    model.apply(_history("prt-b", "globex", "telco-isp", "FW-100001", minute=5))
    model.apply(_history("eml-c", "umbrella", None, None, minute=10))
    return model


def test_lookup_by_id_or_ticket() -> None:
    model = _model()
    assert model.get("prt-a").ticket == "FW-100004"  # type: ignore[union-attr]
    assert model.get("fw-100004").case_id == "prt-a"  # type: ignore[union-attr]
    assert model.get(" FW-100001 ").case_id == "prt-b"  # type: ignore[union-attr]
    assert model.get("FW-100002") is None
    assert model.get("nothing") is None
    assert {v.case_id for v in model.views()} == {"prt-a", "prt-b", "eml-c"}


def test_duplicates_are_folded_once() -> None:
    model = _model()
    model.apply(_history("prt-a", "acme", "northwind-partners", "FW-100004"))
    assert len(model.get("prt-a").timeline) == 2  # type: ignore[union-attr]


def test_an_id_with_only_a_rejection_is_no_case() -> None:
    model = ReadModel("127.0.0.1:1", "unused")
    rejected = CaseEvent(
        event_id="evt-r",
        case_id="ghost",
        type=CaseEventType.COMMAND_REJECTED,
        severity=None,
        source=CaseSource.PORTAL,
        customer_id="acme",
        ticket="FW-100099",
        at=T0,
        visibility=Visibility.INTERNAL,
    )
    model.apply([rejected])
    assert model.get("ghost") is None
    assert model.get("FW-100099") is None
    assert model.views() == []


def test_for_user_is_the_isolation_rule(directory: Directory) -> None:
    model = _model()
    mine = [v.case_id for v in model.for_user(directory.users["nadia"], directory)]
    assert mine == ["eml-c", "prt-a"], "her partner's case and her customer's, newest first"
    assert [v.case_id for v in model.for_user(directory.users["tom"], directory)] == ["prt-b"]
    assert len(model.for_user(directory.users["sam"], directory)) == 3


def test_partners_see_customer_events_without_staff_contacts(directory: Directory) -> None:
    model = ReadModel("127.0.0.1:1", "unused")
    history = _history("prt-a", "acme", "northwind-partners", "FW-100004")
    extra = [
        ("note", Visibility.INTERNAL, {"message": "internal only"}),
        ("staff", Visibility.CUSTOMER, {"contact": "sam", "role": "oncall_engineers", "error": "sam@x down"}),
        ("desk", Visibility.CUSTOMER, {"contact": "nw-desk", "role": "partner_helpdesk"}),
    ]
    previous = history[-1].hash
    for index, (tag, visibility, details) in enumerate(extra, start=len(history)):
        event = history[0].model_copy(
            update={
                "event_id": f"evt-{tag}",
                "type": CaseEventType.NOTIFICATION_SENT,
                "visibility": visibility,
                "details": details,
            }
        )
        placed = chained(event, index, previous)
        previous = placed.hash
        history.append(placed)
    model.apply(history)
    view = model.get("prt-a")
    assert view is not None
    shown = visible_events(view, directory.users["nadia"])
    assert [e.event_id for e in shown] == [history[0].event_id, history[1].event_id, "evt-staff", "evt-desk"]
    assert shown[2].details == {"role": "oncall_engineers"}
    assert shown[3].details["contact"] == "nw-desk"
    assert view.timeline[3].details["contact"] == "sam", "the view itself is not changed"
    assert len(visible_events(view, directory.users["sam"])) == 5, "staff see everything"
