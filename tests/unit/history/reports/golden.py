"""A synthetic history whose report figures are known by construction.

Probes (month 2026-11, policy: acme 97 %, beta 99.9 %, gamma no target):
- acme/web-1: one probe a minute on Nov 2 from 00:00, minutes 0..599; minutes 100..109 fail; minutes 300..329
  lie in maintenance window mw-1 (300..319 fail, 320..329 pass). One probe on Oct 31 (other month) and one
  row stored twice (the sink's at-least-once).
- acme/db-1: one probe every 10 minutes, probes 0..144 from Nov 2 00:00 (the last at Nov 3 00:00), slower
  (latency + 200 ms); probes 50, 51, 52 and 100 fail: the coarse cadence whose uptime is only known within
  bounds.
- beta/app-1: one probe a minute from Nov 4 00:00, minutes 0..99; minutes 40..59 fail.
- delta/api-1: hourly, Nov 5..9 (day index d = 0..4), 24 probes a day, latency 100 + 10 d + hour, load1 d,
  connections 10 d + hour: daily p95 grows by exactly 10 ms a day.
- gamma/edge-1: three passing probes on Nov 2 (no target in the plan).
Case events: see `CASES` (each case is a list of steps in minutes after its opening); case-a has ticket
FW-100004 from its opening, case-c FW-100008 from its triage, case-f (October) FW-100001.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from fleetcore.clock import to_epoch_ms
from history.ddl import CASE_COLUMNS, PROBE_COLUMNS, migrate
from policy.sla import PolicyBook, SlaPolicy
from schemas.cases import CaseEvent, CaseEventType, CaseSource, CaseState, Severity, chained, event_id_for
from schemas.probes import HealthMetrics, ProbeResult
from sinks.rows import case_row, columns, probe_row

MONTH = "2026-11"
NOV2 = datetime(2026, 11, 2, tzinfo=UTC)
NOV4 = datetime(2026, 11, 4, tzinfo=UTC)
NOV5 = datetime(2026, 11, 5, tzinfo=UTC)
MINUTE_MS = 60_000

POLICIES = PolicyBook(
    customers={
        "acme": SlaPolicy(uptime_target_percent=97.0),
        "beta": SlaPolicy(uptime_target_percent=99.9),
    }
)


@dataclass
class Probe:
    customer: str
    server: str
    at: datetime
    ok: bool
    latency: int
    maintenance: str | None = None
    health: HealthMetrics | None = None


def _latency(n: int) -> int:
    return 10 + (n * 37) % 101


def probes() -> list[Probe]:
    out = [Probe("acme", "web-1", NOV2 - timedelta(days=1, minutes=5), False, 999)]
    for m in range(600):
        planned = "mw-1" if 300 <= m <= 329 else None
        ok = not (100 <= m <= 109 or 300 <= m <= 319)
        out.append(Probe("acme", "web-1", NOV2 + timedelta(minutes=m), ok, _latency(m), planned))
    for i in range(145):
        ok = i not in (50, 51, 52, 100)
        out.append(Probe("acme", "db-1", NOV2 + timedelta(minutes=10 * i), ok, 200 + _latency(i)))
    for m in range(100):
        out.append(Probe("beta", "app-1", NOV4 + timedelta(minutes=m), not 40 <= m <= 59, 50))
    for d in range(5):
        for h in range(24):
            health = HealthMetrics(load1=float(d), connections=10 * d + h)
            at = NOV5 + timedelta(days=d, hours=h)
            out.append(Probe("delta", "api-1", at, True, 100 + 10 * d + h, health=health))
    for m in range(3):
        out.append(Probe("gamma", "edge-1", NOV2 + timedelta(minutes=m), True, 20))
    return out


# -- cases ---------------------------------------------------------------------------------------------


@dataclass
class Step:
    minute: float
    type: CaseEventType
    state: CaseState
    details: dict[str, Any] = field(default_factory=dict)
    severity: int | None = None


@dataclass
class Case:
    case_id: str
    customer: str
    source: CaseSource
    opened: datetime
    severity: int | None
    partner: str | None
    steps: list[Step]
    ticket: str | None = None
    ticket_step: int = 0
    """The step from which the case's events carry `ticket` (a monitor case at open, others at triage)."""


def _due(at: datetime, **clocks: float) -> dict[str, Any]:
    return {
        "due": ",".join(
            f"{k.replace('_', '.')}={(at + timedelta(minutes=v)).isoformat()}" for k, v in clocks.items()
        )
    }


T = CaseEventType
S = CaseState
A_OPEN = datetime(2026, 11, 5, 10, 0, tzinfo=UTC)
B_OPEN = datetime(2026, 11, 6, 8, 0, tzinfo=UTC)
PAGE_OPS = {"channel": "page", "role": "operations_manager", "purpose": "sev1.opened"}
PAGE_VP = {"channel": "page", "role": "vp_operations", "purpose": "sla.breached:sev1.work"}

CASES = [
    # A: Sev1 paged at once, worked after 30 min; status deadlines 13:00 (update at 12:50: on time),
    # 13:50 (missed: automatic notice), 14:50 (update at 14:40: on time), 15:40 superseded by resolve.
    Case(
        "case-a",
        "acme",
        CaseSource.MONITOR,
        A_OPEN,
        1,
        None,
        [
            Step(0, T.CASE_OPENED, S.NEW, _due(A_OPEN, sev1_work=120)),
            Step(0, T.NOTIFICATION_REQUESTED, S.NEW, PAGE_OPS),
            Step(30, T.WORK_STARTED, S.WORKING, {"due": ""}),
            Step(120, T.NOTE, S.WORKING, _due(A_OPEN, status_update=180)),
            Step(170, T.CUSTOMER_UPDATE, S.WORKING, _due(A_OPEN, status_update=230)),
            Step(230, T.STATUS_NOTICE, S.WORKING, {"due_at": (A_OPEN + timedelta(minutes=230)).isoformat()}),
            Step(
                230,
                T.NOTIFICATION_REQUESTED,
                S.WORKING,
                {"channel": "email", "role": "customer_technical", **_due(A_OPEN, status_update=290)},
            ),
            Step(280, T.CUSTOMER_UPDATE, S.WORKING, _due(A_OPEN, status_update=340)),
            Step(300, T.RESOLVED, S.RESOLVED, {"due": ""}),
        ],
        ticket="FW-100004",
    ),
    # B: Sev1 paged after 5 s, not worked within 2 h: breach at 120 (VP paged), worked at 180; an update
    # at 60 with no deadline pending (not counted), closed at 600.
    Case(
        "case-b",
        "acme",
        CaseSource.MONITOR,
        B_OPEN,
        1,
        None,
        [
            Step(0, T.CASE_OPENED, S.NEW, _due(B_OPEN, sev1_work=120)),
            Step(5 / 60, T.NOTIFICATION_REQUESTED, S.NEW, PAGE_OPS),
            Step(60, T.CUSTOMER_UPDATE, S.NEW, _due(B_OPEN, sev1_work=120)),
            Step(120, T.SLA_BREACHED, S.NEW, {"clock": "sev1.work"}),
            Step(120, T.NOTIFICATION_REQUESTED, S.NEW, {**PAGE_VP, "due": ""}),
            Step(180, T.WORK_STARTED, S.WORKING, {"due": ""}),
            Step(300, T.RESOLVED, S.RESOLVED),
            Step(600, T.CLOSED, S.CLOSED),
        ],
    ),
    # C: email case triaged to Sev2, answered in time (no first.response breach); still open.
    Case(
        "case-c",
        "acme",
        CaseSource.EMAIL,
        datetime(2026, 11, 7, 9, tzinfo=UTC),
        None,
        None,
        [
            Step(0, T.CASE_OPENED, S.NEW),
            Step(30, T.TRIAGED, S.TRIAGED, severity=2),
            Step(300, T.CUSTOMER_UPDATE, S.TRIAGED, severity=2),
        ],
        ticket="FW-100008",
        ticket_step=1,
    ),
    # D: portal Sev3 of partner isp-1 whose first response breached at 48 h; working at the month's end.
    Case(
        "case-d",
        "acme",
        CaseSource.PORTAL,
        datetime(2026, 11, 8, 9, tzinfo=UTC),
        3,
        "isp-1",
        [
            Step(0, T.CASE_OPENED, S.NEW),
            Step(48 * 60, T.SLA_BREACHED, S.NEW, {"clock": "first.response"}),
            Step(50 * 60, T.WORK_STARTED, S.WORKING),
        ],
    ),
    # E: beta Sev1 by staff, partner sp-2, paged after 2 min, worked after 1 h; closed in December, so
    # working at November's end.
    Case(
        "case-e",
        "beta",
        CaseSource.STAFF,
        datetime(2026, 11, 20, 12, tzinfo=UTC),
        1,
        "sp-2",
        [
            Step(0, T.CASE_OPENED, S.NEW),
            Step(2, T.NOTIFICATION_REQUESTED, S.NEW, PAGE_OPS),
            Step(60, T.WORK_STARTED, S.WORKING),
            Step(11 * 24 * 60, T.CLOSED, S.CLOSED),
        ],
    ),
    # F: opened in October: in no November figure.
    Case(
        "case-f",
        "acme",
        CaseSource.MONITOR,
        datetime(2026, 10, 30, 12, tzinfo=UTC),
        2,
        None,
        [
            Step(0, T.CASE_OPENED, S.NEW),
            Step(10, T.CLOSED, S.CLOSED),
        ],
        ticket="FW-100001",
    ),
]


def case_events(case: Case) -> list[CaseEvent]:
    events: list[CaseEvent] = []
    prev = ""
    severity = case.severity
    for seq, step in enumerate(case.steps):
        severity = step.severity or severity
        event = CaseEvent(
            event_id=event_id_for(case.case_id, step.type, str(seq)),
            case_id=case.case_id,
            type=step.type,
            severity=Severity(severity) if severity else None,
            source=case.source,
            server_id="web-1" if case.source is CaseSource.MONITOR else None,
            customer_id=case.customer,
            at=case.opened + timedelta(minutes=step.minute),
            actor="test",
            details=step.details,
            state=step.state,
            partner_id=case.partner,
            ticket=case.ticket if seq >= case.ticket_step else None,
            reason=f"step {seq}",
        )
        event = chained(event, seq, prev)
        prev = event.hash
        events.append(event)
    return events


def load(client: Client) -> None:
    """The golden history in the store (migrated), with one probe row and one event row stored twice."""
    migrate(client)
    rows = []
    for i, p in enumerate(probes()):
        result = ProbeResult(
            server_id=p.server,
            customer_id=p.customer,
            probe_id=f"{p.server}@{to_epoch_ms(p.at)}",
            started_at=p.at,
            latency_ms=p.latency,
            ok=p.ok,
            status_code=200 if p.ok else 503,
            error_class=None if p.ok else "unexpected_status",
            worker_id="golden",
            health=p.health,
        )
        rows.append(probe_row(result, "t.probe-results", 0, i, 0, p.maintenance))
    rows.append(rows[5])
    client.insert(
        "probe_results",
        columns(rows, len(PROBE_COLUMNS)),
        column_names=list(PROBE_COLUMNS),
        column_oriented=True,
    )
    events = [e for case in CASES for e in case_events(case)]
    event_rows = [case_row(e, "t.cases", 0, i) for i, e in enumerate(events)]
    event_rows.append(event_rows[3])
    client.insert(
        "case_events",
        columns(event_rows, len(CASE_COLUMNS)),
        column_names=list(CASE_COLUMNS),
        column_oriented=True,
    )
