"""SLA clocks over virtual time: the policy's boundaries, cadences, pauses and severity changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policy.sla import (
    AlertLevel,
    ClockKind,
    PolicyBook,
    SlaPolicy,
    change_severity,
    check,
    next_deadline,
    open_clocks,
    pause,
    resume,
    satisfy,
    stop,
)
from schemas.cases import CaseSource, Severity

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
POLICY = SlaPolicy()
H = timedelta(hours=1)


def alerts_at(clocks: tuple, minutes: float) -> list[tuple[str, str]]:
    _, alerts = check(clocks, T0 + timedelta(minutes=minutes))
    return [(a.kind.value, a.level.value) for a in alerts]


def test_sev1_not_worked_breaches_at_exactly_two_hours() -> None:
    clocks = open_clocks(Severity.SEV1, CaseSource.STAFF, T0, POLICY)
    work = [c for c in clocks if c.kind is ClockKind.SEV1_WORK]
    assert ("sev1.work", "breach") not in alerts_at(tuple(work), 119)
    assert ("sev1.work", "breach") in alerts_at(tuple(work), 120)


def test_each_alert_fires_once() -> None:
    clocks = open_clocks(Severity.SEV1, CaseSource.STAFF, T0, POLICY)
    clocks, first = check(clocks, T0 + 2 * H)
    assert {(a.kind, a.level) for a in first} >= {(ClockKind.SEV1_WORK, AlertLevel.BREACH)}
    _, again = check(clocks, T0 + 2 * H + timedelta(minutes=1))
    assert (ClockKind.SEV1_WORK, AlertLevel.BREACH) not in {(a.kind, a.level) for a in again}


def test_work_started_in_time_stops_the_clock() -> None:
    clocks = open_clocks(Severity.SEV1, CaseSource.STAFF, T0, POLICY)
    clocks = satisfy(clocks, ClockKind.SEV1_WORK, T0 + timedelta(minutes=119), POLICY)
    assert ("sev1.work", "breach") not in alerts_at(clocks, 600)


def test_hourly_updates_restart_from_each_update() -> None:
    clocks = open_clocks(Severity.SEV1, CaseSource.STAFF, T0, POLICY)
    assert ("status.update", "breach") not in alerts_at(clocks, 59)
    assert ("status.update", "breach") in alerts_at(clocks, 60)
    clocks = satisfy(clocks, ClockKind.STATUS_UPDATE, T0 + timedelta(minutes=50), POLICY)
    assert ("status.update", "breach") not in alerts_at(clocks, 109)
    assert ("status.update", "breach") in alerts_at(clocks, 110)


def test_monitor_sev1_updates_start_after_two_hours() -> None:
    clocks = open_clocks(Severity.SEV1, CaseSource.MONITOR, T0, POLICY)
    assert ("status.update", "breach") not in alerts_at(clocks, 119)
    assert ("status.update", "breach") in alerts_at(clocks, 120)


@pytest.mark.parametrize(("severity", "hours"), [(Severity.SEV2, 24), (Severity.SEV3, 48)])
def test_first_response_budgets(severity: Severity, hours: int) -> None:
    clocks = open_clocks(severity, CaseSource.EMAIL, T0, POLICY)
    assert [c.kind for c in clocks] == [ClockKind.FIRST_RESPONSE]
    assert ("first.response", "breach") not in alerts_at(clocks, hours * 60 - 1)
    assert ("first.response", "breach") in alerts_at(clocks, hours * 60)


def test_internal_warning_at_75_percent() -> None:
    clocks = open_clocks(Severity.SEV2, CaseSource.PORTAL, T0, POLICY)
    assert alerts_at(clocks, 18 * 60 - 1) == []
    assert alerts_at(clocks, 18 * 60) == [("first.response", "warning")]


def test_waiting_on_customer_pauses_response_but_not_sev1_work() -> None:
    sev2 = open_clocks(Severity.SEV2, CaseSource.EMAIL, T0, POLICY)
    sev2 = resume(pause(sev2, T0 + 10 * H), T0 + 15 * H)  # 5 h waiting on the customer
    assert ("first.response", "breach") not in alerts_at(sev2, 29 * 60 - 1)
    assert ("first.response", "breach") in alerts_at(sev2, 29 * 60)
    sev1 = pause(open_clocks(Severity.SEV1, CaseSource.STAFF, T0, POLICY), T0 + timedelta(minutes=30))
    assert ("sev1.work", "breach") in alerts_at(sev1, 120)
    assert ("status.update", "breach") not in alerts_at(sev1, 600)  # paused: no update owed


def test_severity_upgrade_starts_sev1_clocks_from_that_moment() -> None:
    clocks = open_clocks(Severity.SEV2, CaseSource.MONITOR, T0, POLICY)
    clocks = change_severity(clocks, Severity.SEV1, CaseSource.STAFF, T0 + 5 * H, POLICY)
    assert ("sev1.work", "breach") not in alerts_at(clocks, 5 * 60 + 119)
    assert ("sev1.work", "breach") in alerts_at(clocks, 5 * 60 + 120)
    assert ("first.response", "breach") not in alerts_at(clocks, 48 * 60)  # the Sev2 clock stopped


def test_next_deadline_is_the_earliest_pending_point() -> None:
    clocks = open_clocks(Severity.SEV1, CaseSource.STAFF, T0, POLICY)
    assert next_deadline(clocks) == T0 + timedelta(minutes=45)  # 75 % of the hourly update clock
    clocks, _ = check(clocks, T0 + H)
    assert next_deadline(clocks) == T0 + timedelta(minutes=90)  # 75 % of the 2 h work clock


def test_customer_plans_override_only_what_they_name() -> None:
    book = PolicyBook.from_mapping(
        {
            "default": {"version": "policy-2026-11"},
            "customers": {
                "acme": {
                    "version": "acme-gold-1",
                    "sev2_first_response": "PT4H",
                    "uptime_target_percent": 99.9,
                }
            },
        }
    )
    acme = book.for_customer("acme")
    assert acme.sev2_first_response == timedelta(hours=4)
    assert acme.sev1_work_within == timedelta(hours=2)
    assert acme.uptime_target_percent == 99.9
    assert book.for_customer("globex") == SlaPolicy()
    clocks = open_clocks(Severity.SEV2, CaseSource.EMAIL, T0, acme)
    assert clocks[0].policy_version == "acme-gold-1"
    assert ("first.response", "breach") in alerts_at(clocks, 240)


def test_alerts_say_which_point_was_reached() -> None:
    clocks = open_clocks(Severity.SEV2, CaseSource.EMAIL, T0, POLICY)
    _, alerts = check(clocks, T0 + 30 * H)
    assert [(a.level, a.point, a.due_at) for a in alerts] == [
        (AlertLevel.WARNING, T0 + 18 * H, T0 + 24 * H),
        (AlertLevel.BREACH, T0 + 24 * H, T0 + 24 * H),
    ]


def test_stop_ends_only_the_named_running_clocks() -> None:
    clocks = open_clocks(Severity.SEV1, CaseSource.MONITOR, T0, POLICY)
    stopped = stop(clocks, T0 + H, frozenset({ClockKind.STATUS_UPDATE}))
    assert {c.kind: c.stopped_at for c in stopped} == {
        ClockKind.SEV1_WORK: None,
        ClockKind.STATUS_UPDATE: T0 + H,
    }
    assert next_deadline(stopped) == T0 + timedelta(minutes=90)
    everything = stop(stopped, T0 + 2 * H)
    assert [c.stopped_at for c in everything] == [T0 + 2 * H, T0 + H]  # an earlier stop is kept
    assert next_deadline(everything) is None
    assert alerts_at(everything, 600) == []
