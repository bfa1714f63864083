"""Support-process SLA compliance per customer and month, from case events: the audit a customer asks for.

`query.case` (a case id or ticket number) narrows the month to that case, and the report says when the case
was opened (`case_opened_at`, None when there is no such case) so a drill-down into another month can say so.

Cases opened in the month, each judged on its whole stored timeline (one row per event id, chain order):
- Sev1 (from the first event at Sev1; for a case opened as Sev1 that is case.opened): time to page (first
  `notification.requested` page to the operations manager), time to work (first case.work_started) against
  the plan's `sev1_work_within`, VP escalations (`sla.breached` of clock sev1.work).
- Hourly updates: every status-update deadline the engine announced (`details.due`, `status.update=...`) is
  due once reached or answered: a case.customer_update at or before it is on time; a case.status_notice
  means it was missed (the automatic notice went out). Deadlines superseded unanswered (resolved, waiting)
  are not due.
- Sev2/Sev3 first response within the plan's 24 h/48 h: met unless an `sla.breached` of clock
  first.response was recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from fleetcore.clock import from_epoch_ms
from history.ddl import COUNTED_EVENTS
from history.reports.common import CASE_FILTER, FILTERS, PERIOD, ReportQuery, iso, percent, run
from policy.sla import PolicyBook, SlaPolicy

CASE_EVENTS_SQL = f"""
SELECT case_id, type, severity, source, server_id, customer_id, toUnixTimestamp64Milli(at) AS at_ms, actor,
    details, state, ticket, partner_id, reason, visibility, seq
FROM case_events FINAL
WHERE {COUNTED_EVENTS} AND case_id IN (
    SELECT case_id FROM case_events
    WHERE type = 'case.opened' AND {COUNTED_EVENTS} AND {PERIOD.format(column="at")} AND {FILTERS}
        AND {CASE_FILTER}
)
ORDER BY case_id, seq, at, event_id
LIMIT 1 BY event_id
"""  # noqa: S608 (constant fragments; values are bound)
CASE_OPENED_SQL = f"""
SELECT toUnixTimestamp64Milli(min(at)) AS opened_ms, count() AS n
FROM case_events
WHERE type = 'case.opened' AND {COUNTED_EVENTS} AND {CASE_FILTER}
"""  # noqa: S608 (constant fragments; values are bound)


@dataclass(frozen=True)
class Event:
    """The facts of one stored case event a report needs."""

    case_id: str
    type: str
    severity: int
    source: str
    server_id: str | None
    customer_id: str
    at: datetime
    actor: str
    details: dict[str, Any]
    state: str
    ticket: str | None
    partner_id: str | None
    reason: str
    visibility: str
    seq: int


def _details(raw: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def event_of(row: tuple[Any, ...]) -> Event:
    """An Event from a CASE_EVENTS_SQL row."""
    (
        case_id,
        type_,
        sev,
        source,
        server,
        customer,
        at_ms,
        actor,
        details,
        state,
        ticket,
        partner,
        reason,
        vis,
        seq,
    ) = row
    return Event(
        case_id,
        type_,
        int(sev),
        source,
        server,
        customer,
        from_epoch_ms(int(at_ms)),
        actor,
        _details(details),
        state,
        ticket,
        partner,
        reason,
        vis,
        int(seq),
    )


def load_cases(client: Client, query: ReportQuery) -> dict[str, list[Event]]:
    """Every event (chain order) of each case opened in the month, by case id."""
    cases: dict[str, list[Event]] = {}
    for row in run(client, CASE_EVENTS_SQL, query.params(), "case"):
        event = event_of(row)
        cases.setdefault(event.case_id, []).append(event)
    return cases


def status_due(details: dict[str, Any]) -> tuple[bool, datetime | None]:
    """(whether the event carries deadlines, the status.update deadline among them)."""
    raw = details.get("due")
    if not isinstance(raw, str):
        return False, None
    for part in raw.split(","):
        kind, _, when = part.partition("=")
        if kind == "status.update" and when:
            try:
                return True, datetime.fromisoformat(when)
            except ValueError:
                return True, None
    return True, None


def _seconds(delta: timedelta | None) -> float | None:
    return None if delta is None else delta.total_seconds()


def audit_case(events: list[Event], policy: SlaPolicy) -> dict[str, Any]:
    """One case's SLA facts and its timeline (pure)."""
    first = events[0]
    opened = next((e for e in events if e.type == "case.opened"), first)
    severities = [e.severity for e in events if e.severity]
    severity = severities[-1] if severities else None
    sev1_at = next((e.at for e in events if e.severity == 1), None)
    out: dict[str, Any] = {
        "case_id": first.case_id,
        "ticket": next((e.ticket for e in reversed(events) if e.ticket), None),
        "customer_id": first.customer_id,
        "server_id": first.server_id,
        "source": first.source,
        "partner_id": next((e.partner_id for e in reversed(events) if e.partner_id), None),
        "severity": severity,
        "opened_at": opened.at.isoformat(),
        "state": events[-1].state,
    }
    if sev1_at is not None:
        page = next(
            (
                e.at
                for e in events
                if e.type == "notification.requested"
                and e.at >= sev1_at
                and e.details.get("channel") == "page"
                and e.details.get("role") == "operations_manager"
            ),
            None,
        )
        worked = next((e.at for e in events if e.type == "case.work_started" and e.at >= sev1_at), None)
        to_work = None if worked is None else worked - sev1_at
        escalated = any(e.type == "sla.breached" and e.details.get("clock") == "sev1.work" for e in events)
        work_met: bool | None
        if to_work is not None:
            work_met = to_work <= policy.sev1_work_within
        elif escalated:
            work_met = False
        elif events[-1].state in ("resolved", "closed"):
            work_met = True  # resolved before its work deadline: nothing was owed any more
        else:
            work_met = None  # still open, deadline not passed when this history ends: pending
        out |= {
            "sev1_since": sev1_at.isoformat(),
            "time_to_page_s": _seconds(None if page is None else page - sev1_at),
            "time_to_work_s": _seconds(to_work),
            "work_within_s": policy.sev1_work_within.total_seconds(),
            "work_met": work_met,
            "vp_escalations": sum(
                1 for e in events if e.type == "sla.breached" and e.details.get("clock") == "sev1.work"
            ),
        }
    due = on_time = missed = 0
    pending: datetime | None = None
    for event in events:
        if event.type == "case.customer_update" and pending is not None and event.at <= pending:
            due += 1
            on_time += 1
        elif event.type == "case.status_notice":
            due += 1
            missed += 1
        carries, deadline = status_due(event.details)
        if carries:
            pending = deadline
    out |= {"updates_due": due, "updates_on_time": on_time, "updates_missed": missed}
    if severity in (2, 3):
        out["first_response_met"] = not any(
            e.type == "sla.breached" and e.details.get("clock") == "first.response" for e in events
        )
    out["timeline"] = [
        {
            "seq": e.seq,
            "at": e.at.isoformat(),
            "type": e.type,
            "actor": e.actor,
            "state": e.state,
            "visibility": e.visibility,
            "reason": e.reason,
        }
        for e in events
    ]
    return out


def summarise(customer: str, cases: list[dict[str, Any]], policy: SlaPolicy) -> dict[str, Any]:
    """A customer's month from its audited cases (pure)."""
    sev1 = [c for c in cases if "sev1_since" in c]
    pages = [c["time_to_page_s"] for c in sev1 if c["time_to_page_s"] is not None]
    due = sum(c["updates_due"] for c in cases)
    on_time = sum(c["updates_on_time"] for c in cases)
    row: dict[str, Any] = {
        "customer_id": customer,
        "policy_version": policy.version,
        "cases": len(cases),
        "sev1_cases": len(sev1),
        "sev1_paged": len(pages),
        "sev1_max_time_to_page_s": max(pages) if pages else None,
        "sev1_worked_in_time": sum(1 for c in sev1 if c["work_met"] is True),
        "sev1_work_breaches": sum(1 for c in sev1 if c["work_met"] is False),
        "sev1_work_pending": sum(1 for c in sev1 if c["work_met"] is None),
        "vp_escalations": sum(c["vp_escalations"] for c in sev1),
        "updates_due": due,
        "updates_on_time": on_time,
        "updates_on_time_percent": percent(on_time, due),
    }
    for sev in (2, 3):
        graded = [c for c in cases if c["severity"] == sev]
        row[f"sev{sev}_cases"] = len(graded)
        row[f"sev{sev}_first_response_met"] = sum(1 for c in graded if c["first_response_met"])
    row["compliant"] = (
        row["sev1_work_breaches"] == 0
        and row["sev1_paged"] == row["sev1_cases"]
        and on_time == due
        and all(row[f"sev{s}_first_response_met"] == row[f"sev{s}_cases"] for s in (2, 3))
    )
    return row


def sla_report(client: Client, query: ReportQuery, policies: PolicyBook) -> dict[str, Any]:
    """Per customer compliance rows, and every case of the month with its facts and timeline."""
    audited = [
        audit_case(events, policies.for_customer(events[0].customer_id))
        for events in load_cases(client, query).values()
    ]
    audited.sort(key=lambda c: (c["customer_id"], c["opened_at"], c["case_id"]))
    customers = sorted({c["customer_id"] for c in audited})
    rows = [
        summarise(cust, [c for c in audited if c["customer_id"] == cust], policies.for_customer(cust))
        for cust in customers
    ]
    out = {**query.header("sla"), "rows": rows, "cases": audited}
    if query.case:  # the drill-down: when the case was opened, so a case of another month can be found
        opened_ms, n = run(client, CASE_OPENED_SQL, query.params(), "case")[0]
        out["case_opened_at"] = iso(opened_ms) if n else None
    return out
