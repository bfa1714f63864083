"""Golden support-process SLA compliance: expected figures written out from the cases in golden.py."""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client

from history.reports import build, report_query
from history.reports.sla import status_due
from tests.unit.history.reports.golden import CASES, MONTH, POLICIES


def _report(client: Client, **filters: str) -> dict[str, Any]:
    return build(client, "sla", report_query(MONTH, **filters), POLICIES)


def test_per_case_figures(golden: Client) -> None:
    cases = {c["case_id"]: c for c in _report(golden)["cases"]}
    assert set(cases) == {"case-a", "case-b", "case-c", "case-d", "case-e"}  # case-f opened in October
    a, b = cases["case-a"], cases["case-b"]
    assert (a["time_to_page_s"], a["time_to_work_s"], a["work_met"], a["vp_escalations"]) == (
        0,
        1800,
        True,
        0,
    )
    assert (a["updates_due"], a["updates_on_time"], a["updates_missed"]) == (3, 2, 1)
    assert (b["time_to_page_s"], b["time_to_work_s"], b["work_met"], b["vp_escalations"]) == (
        5,
        10800,
        False,
        1,
    )
    assert b["updates_due"] == 0  # its update came with no status deadline pending
    assert cases["case-c"]["severity"] == 2
    assert cases["case-c"]["first_response_met"] is True
    assert cases["case-d"]["severity"] == 3
    assert cases["case-d"]["first_response_met"] is False
    e = cases["case-e"]
    assert (e["time_to_page_s"], e["time_to_work_s"], e["work_met"]) == (120, 3600, True)


def test_cases_carry_their_ticket_and_one_is_found_by_ticket_or_id(golden: Client) -> None:
    cases = {c["case_id"]: c for c in _report(golden)["cases"]}
    assert {k: c["ticket"] for k, c in cases.items()} == {
        "case-a": "FW-100004",  # monitor: from its opening
        "case-b": None,
        "case-c": "FW-100008",  # email: from its triage, not on its case.opened event
        "case-d": None,
        "case-e": None,
    }
    assert "case_opened_at" not in _report(golden)
    for ref in ("FW-100008", "fw-100008", "case-c"):
        one = _report(golden, case=ref)
        assert [c["case_id"] for c in one["cases"]] == ["case-c"], ref
        assert [(r["customer_id"], r["cases"]) for r in one["rows"]] == [("acme", 1)]
        assert one["case_opened_at"] == "2026-11-07T09:00:00.000Z"
    october = _report(golden, case="FW-100001")  # case-f: opened in October, asked for in November
    assert (october["cases"], october["case_opened_at"]) == ([], "2026-10-30T12:00:00.000Z")
    assert _report(golden, case="FW-999999")["case_opened_at"] is None
    assert _report(golden, case="FW-100004", customer="beta")["cases"] == []


def test_drill_down_timeline_is_the_stored_chain(golden: Client) -> None:
    cases = {c["case_id"]: c for c in _report(golden)["cases"]}
    for case in CASES[:5]:
        timeline = cases[case.case_id]["timeline"]
        assert [t["type"] for t in timeline] == [s.type.value for s in case.steps]  # the duplicate row once
        assert [t["seq"] for t in timeline] == list(range(len(case.steps)))


def test_customer_rows(golden: Client) -> None:
    rows = {r["customer_id"]: r for r in _report(golden)["rows"]}
    acme = rows["acme"]
    assert acme["cases"] == 4
    assert (acme["sev1_cases"], acme["sev1_paged"], acme["sev1_max_time_to_page_s"]) == (2, 2, 5)
    assert (acme["sev1_worked_in_time"], acme["sev1_work_breaches"], acme["vp_escalations"]) == (1, 1, 1)
    assert (acme["updates_due"], acme["updates_on_time"]) == (3, 2)
    assert acme["updates_on_time_percent"] == round(100 * 2 / 3, 4)
    assert (acme["sev2_cases"], acme["sev2_first_response_met"]) == (1, 1)
    assert (acme["sev3_cases"], acme["sev3_first_response_met"]) == (1, 0)
    assert acme["compliant"] is False
    beta = rows["beta"]
    assert (beta["sev1_cases"], beta["sev1_worked_in_time"], beta["vp_escalations"]) == (1, 1, 0)
    assert beta["compliant"] is True
    assert set(r["customer_id"] for r in _report(golden, customer="beta")["rows"]) == {"beta"}


def test_status_due_parsing() -> None:
    assert status_due({}) == (False, None)
    assert status_due({"due": ""}) == (True, None)
    carries, due = status_due(
        {"due": "sev1.work=2026-11-05T12:00:00+00:00,status.update=2026-11-05T13:00:00+00:00"}
    )
    assert carries
    assert due is not None
    assert due.hour == 13
    assert status_due({"due": "status.update=garbage"}) == (True, None)


def test_unworked_sev1_is_pending_until_its_deadline_fires_and_met_when_resolved_first() -> None:
    from datetime import UTC, datetime, timedelta

    from history.reports.sla import Event, audit_case, summarise
    from policy.sla import SlaPolicy

    t0 = datetime(2026, 11, 3, 8, tzinfo=UTC)

    def ev(n: int, type_: str, state: str = "triaged", **details: Any) -> Event:
        return Event(
            "c", type_, 1, "monitor", "s", "acme", t0 + timedelta(minutes=n), "monitor", details,
            state, "FW-1", None, "", "customer", n,
        )  # fmt: skip

    policy = SlaPolicy()
    pending = audit_case([ev(0, "case.opened")], policy)
    breached = audit_case([ev(0, "case.opened"), ev(120, "sla.breached", clock="sev1.work")], policy)
    resolved = audit_case([ev(0, "case.opened"), ev(30, "case.resolved", state="resolved")], policy)
    worked_late = audit_case([ev(0, "case.opened"), ev(121, "case.work_started", state="working")], policy)
    assert [c["work_met"] for c in (pending, breached, resolved, worked_late)] == [None, False, True, False]
    row = summarise("acme", [pending, breached, resolved, worked_late], policy)
    assert (row["sev1_worked_in_time"], row["sev1_work_breaches"], row["sev1_work_pending"]) == (1, 2, 1)
