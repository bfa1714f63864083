"""The case engine over virtual time: the support policy's states, clocks, escalations and audit chain."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fleetcore.clock import to_epoch_ms
from policy.sla import ClockKind, PolicyBook
from schemas.cases import (
    CaseEvent,
    CaseEventType,
    CaseSource,
    CaseState,
    Severity,
    Visibility,
    case_event_hash,
    event_id_for,
)
from schemas.commands import CaseCommand, CommandType
from schemas.notifications import Channel, Notification, Role
from streams.cases import (
    RECENT_COMMANDS,
    Case,
    Decision,
    EngineConfig,
    apply,
    next_due,
    tick_command,
    ticket_number,
)
from streams.notices import INTERNAL_ROLES

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CASE_ID = "case-1"
ET = CaseEventType
C = CommandType


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def hours(h: float) -> float:
    return h * 60


class Sim:
    """One case driven by commands in virtual time, like the agent does: tickets from partition 0 of 4, the
    counter bumped only when a ticket was used; every event and notification kept."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.case: Case | None = None
        self.events: list[CaseEvent] = []
        self.notifications: list[Notification] = []
        self.counter = 0
        self.n = 0

    @property
    def c(self) -> Case:
        assert self.case is not None
        return self.case

    def command(self, type_: CommandType, minutes: float = 0, **fields: Any) -> CaseCommand:
        self.n += 1
        fields.setdefault("command_id", f"cmd-{self.n}")
        fields.setdefault("actor", "staff:alice")
        return CaseCommand(case_id=CASE_ID, type=type_, at=at(minutes), **fields)

    def send(self, type_: CommandType, minutes: float = 0, **fields: Any) -> Decision:
        return self.apply(self.command(type_, minutes, **fields))

    def apply(self, command: CaseCommand) -> Decision:
        decision = apply(self.case, command, self.config, ticket_number(0, self.counter, 4))
        if decision.ticket_used:
            self.counter += 1
        if decision.case is not None:
            self.case = decision.case
        self.events += decision.events
        self.notifications += decision.notifications
        return decision

    def tick(self, minutes: float) -> Decision:
        return self.apply(tick_command(self.c, at(minutes)))

    def run_until(self, minutes: float) -> list[Decision]:
        """The durable timer: a TICK at every due moment up to `minutes`."""
        out = []
        while (due := next_due(self.c, self.config)) is not None and due <= at(minutes):
            decision = self.apply(tick_command(self.c, due))
            assert decision.events, f"a TICK at next_due {due} did nothing"
            out.append(decision)
        return out

    def of(self, type_: CaseEventType) -> list[CaseEvent]:
        return [e for e in self.events if e.type is type_]

    def sent(self, role: Role | None = None, channel: Channel | None = None) -> list[Notification]:
        return [
            n
            for n in self.notifications
            if (role is None or n.role is role) and (channel is None or n.channel is channel)
        ]


def monitor_sev1(config: EngineConfig | None = None, severity: Severity = Severity.SEV1) -> Sim:
    sim = Sim(config)
    sim.send(
        C.OPEN,
        0,
        actor="monitor",
        source=CaseSource.MONITOR,
        customer_id="acme",
        server_id="web-1",
        severity=severity,
        details={"failures": 10},
    )
    return sim


def staff_case(
    severity: Severity = Severity.SEV1, customer: str = "acme", config: EngineConfig | None = None
) -> Sim:
    sim = Sim(config)
    sim.send(C.OPEN, 0, source=CaseSource.STAFF, customer_id=customer, severity=severity, title="Mail down")
    return sim


def email_case(partner: str | None = None, config: EngineConfig | None = None) -> Sim:
    sim = Sim(config)
    sim.send(
        C.OPEN,
        0,
        actor="email:ops@acme.example",
        source=CaseSource.EMAIL,
        customer_id="acme",
        partner_id=partner,
        title="Invoices do not export",
    )
    return sim


def roles(notifications: list[Notification]) -> list[tuple[str, str]]:
    return [(n.channel.value, n.role.value) for n in notifications]


# --- opening -------------------------------------------------------------------------------------------


def test_monitor_sev1_opens_triaged_with_ticket_clocks_and_mobilisation() -> None:
    sim = monitor_sev1()
    case = sim.c
    assert case.state is CaseState.TRIAGED
    assert case.ticket == "FW-100000"
    assert sim.counter == 1
    assert {c.kind for c in case.clocks} == {ClockKind.SEV1_WORK, ClockKind.STATUS_UPDATE}
    opened = sim.events[0]
    assert opened.type is ET.CASE_OPENED
    assert opened.event_id == event_id_for(CASE_ID, ET.CASE_OPENED)
    assert opened.details["failures"] == 10
    assert (opened.state, opened.ticket, opened.severity) == (CaseState.TRIAGED, "FW-100000", Severity.SEV1)
    assert roles(sim.notifications) == [
        ("page", "operations_manager"),
        ("email", "support_team"),
        ("email", "customer_technical"),
    ]
    assert [n.key for n in sim.notifications] == [
        "case-1:case.opened:operations_manager:page",
        "case-1:case.opened:support_team:email",
        "case-1:case.opened:customer_technical:email",
    ]
    assert all(n.ticket == "FW-100000" and n.severity is Severity.SEV1 for n in sim.notifications)


def test_staff_sev1_does_not_contact_the_customer_at_open() -> None:
    sim = staff_case()
    assert roles(sim.notifications) == [("page", "operations_manager"), ("email", "support_team")]


def test_staff_sev2_opens_quietly_with_a_first_response_clock() -> None:
    sim = staff_case(Severity.SEV2)
    assert sim.c.state is CaseState.TRIAGED
    assert sim.c.ticket == "FW-100000"
    assert [c.kind for c in sim.c.clocks] == [ClockKind.FIRST_RESPONSE]
    assert sim.notifications == []


def test_email_case_opens_new_without_ticket_or_clocks() -> None:
    sim = email_case()
    decision = sim.events
    assert sim.c.state is CaseState.NEW
    assert sim.c.ticket is None
    assert sim.counter == 0
    assert sim.c.clocks == ()
    assert next_due(sim.c, sim.config) is None
    assert [e.type for e in decision] == [ET.CASE_OPENED]
    assert sim.notifications == []


def test_a_severity_on_an_email_open_is_only_recorded_as_requested() -> None:
    sim = Sim()
    sim.send(C.OPEN, 0, source=CaseSource.PORTAL, customer_id="acme", severity=Severity.SEV1)
    assert sim.c.state is CaseState.NEW
    assert sim.c.severity is None
    assert sim.events[0].details["requested_severity"] == 1
    assert sim.notifications == []


def test_triage_assigns_the_ticket_and_anchors_clocks_at_the_open() -> None:
    sim = email_case(partner="isp-9")
    decision = sim.send(C.TRIAGE, hours(10), severity=Severity.SEV2, owner="staff:bob")
    assert decision.ticket_used
    assert sim.c.state is CaseState.TRIAGED
    assert sim.c.ticket == "FW-100000"
    assert sim.c.owner == "staff:bob"
    triaged = sim.of(ET.TRIAGED)[0]
    assert triaged.details["clocks_from"] == T0.isoformat()
    assert next_due(sim.c, sim.config) == at(hours(18))  # 75 % of 24 h from the open, not from the triage
    helpdesk = sim.sent(Role.PARTNER_HELPDESK)
    assert roles(helpdesk) == [("email", "partner_helpdesk")]
    assert "FW-100000" in helpdesk[0].subject
    assert "FW-100000" in helpdesk[0].body
    assert helpdesk[0].partner_id == "isp-9"


def test_late_triage_fires_what_is_already_due() -> None:
    sim = email_case()
    decision = sim.send(C.TRIAGE, hours(20), severity=Severity.SEV2)
    assert [e.type for e in decision.events][:2] == [ET.TRIAGED, ET.SLA_WARNING]


def test_email_triage_without_partner_emails_no_helpdesk() -> None:
    sim = email_case()
    sim.send(C.TRIAGE, 5, severity=Severity.SEV3)
    assert sim.notifications == []


def test_email_triaged_as_sev1_mobilises_the_team() -> None:
    sim = email_case()
    sim.send(C.TRIAGE, 30, severity=Severity.SEV1)
    assert roles(sim.notifications) == [("page", "operations_manager"), ("email", "support_team")]
    sim.run_until(hours(2) - 1)
    assert sim.of(ET.SLA_BREACHED) == []
    sim.run_until(hours(2))  # anchored at the open: the work clock breaches at open + 2 h
    assert len(sim.of(ET.SLA_BREACHED)) == 1


# --- the Sev1 two-hour work clock ----------------------------------------------------------------------


def test_sev1_not_worked_at_1_59_nothing_at_2_00_vp_paged_and_customer_called_once() -> None:
    sim = monitor_sev1()
    for minute in range(1, 120):  # a timer ticking every minute
        sim.tick(minute)
    assert sim.of(ET.SLA_BREACHED) == []
    assert sim.sent(Role.VP_OPERATIONS) == []
    for minute in range(120, 300):
        sim.tick(minute)
    breaches = sim.of(ET.SLA_BREACHED)
    assert len(breaches) == 1
    assert breaches[0].at == at(120)
    assert breaches[0].details["clock"] == "sev1.work"
    assert breaches[0].visibility is Visibility.CUSTOMER
    assert breaches[0].actor == "timer"
    assert roles(sim.sent(Role.VP_OPERATIONS)) == [("page", "vp_operations")]
    calls = sim.sent(channel=Channel.CALL)
    assert roles(calls) == [("call", "customer_technical")]


def test_durable_timer_ticks_only_at_due_moments_and_pages_the_vp_at_two_hours() -> None:
    sim = monitor_sev1()
    sim.run_until(hours(2) - 1 / 60)
    assert sim.sent(Role.VP_OPERATIONS) == []
    sim.run_until(hours(6))
    assert [n.at for n in sim.sent(Role.VP_OPERATIONS)] == [at(120)]


def test_work_started_at_1_59_stops_the_escalation() -> None:
    sim = monitor_sev1()
    sim.send(C.START_WORK, 119, owner="staff:carol")
    assert sim.c.state is CaseState.WORKING
    assert sim.c.owner == "staff:carol"
    sim.run_until(hours(10))
    assert sim.of(ET.SLA_BREACHED) == []


def test_work_started_at_2_00_before_the_timer_ticked_still_escalates_first() -> None:
    sim = monitor_sev1()
    sim.run_until(119)
    decision = sim.send(C.START_WORK, 120)
    types = [e.type for e in decision.events]
    assert types.index(ET.SLA_BREACHED) < types.index(ET.WORK_STARTED)
    assert len(sim.sent(Role.VP_OPERATIONS)) == 1
    sim.run_until(hours(10))
    assert len(sim.sent(Role.VP_OPERATIONS)) == 1


def test_a_timer_that_was_down_fires_the_breach_once_and_skips_the_stale_warning() -> None:
    sim = monitor_sev1()
    decision = sim.tick(hours(2.5))
    warned = [e.details["clock"] for e in decision.events if e.type is ET.SLA_WARNING]
    assert "sev1.work" not in warned  # the warning point passed together with the deadline
    assert len([e for e in decision.events if e.type is ET.SLA_BREACHED]) == 1


# --- hourly status notices -----------------------------------------------------------------------------


def test_staff_sev1_status_notices_every_hour_with_the_current_state() -> None:
    sim = staff_case()
    sim.send(C.START_WORK, 10)
    sim.run_until(hours(3))
    notices = sim.of(ET.STATUS_NOTICE)
    assert [e.at for e in notices] == [at(60), at(120), at(180)]
    assert [e.details["notice"] for e in notices] == [1, 2, 3]
    emails = [n for n in sim.notifications if n.purpose.startswith("status.notice")]
    assert [n.purpose for n in emails] == ["status.notice:1", "status.notice:2", "status.notice:3"]
    assert roles(emails) == [("email", "customer_technical")] * 3
    assert "working" in emails[0].body
    assert "working" in str(notices[0].details["message"])


def test_monitor_sev1_status_notices_start_after_two_hours() -> None:
    sim = monitor_sev1()
    sim.run_until(hours(4))
    assert [e.at for e in sim.of(ET.STATUS_NOTICE)] == [at(120), at(180), at(240)]


def test_staff_update_at_1_30_moves_the_next_notice_to_2_30() -> None:
    sim = staff_case()
    sim.send(C.START_WORK, 5)
    sim.run_until(hours(1.5) - 1)
    assert len(sim.of(ET.STATUS_NOTICE)) == 1
    decision = sim.send(C.POST_UPDATE, 90, message="We replaced the disk; restoring mail now.")
    update = [n for n in decision.notifications if n.role is Role.CUSTOMER_TECHNICAL]
    assert update[0].body == "We replaced the disk; restoring mail now."
    assert decision.events[0].type is ET.CUSTOMER_UPDATE
    assert decision.events[0].details["message"] == "We replaced the disk; restoring mail now."
    sim.run_until(149)
    assert len(sim.of(ET.STATUS_NOTICE)) == 1  # none at 2:00
    sim.run_until(150)
    assert [e.at for e in sim.of(ET.STATUS_NOTICE)] == [at(60), at(150)]


def test_monitor_update_before_two_hours_does_not_pull_the_first_notice_earlier() -> None:
    sim = monitor_sev1()
    sim.send(C.POST_UPDATE, 30, message="Looking into it.")
    sim.run_until(hours(2))
    assert [e.at for e in sim.of(ET.STATUS_NOTICE)] == [at(120)]


def test_status_notices_stop_once_the_monitored_server_recovered() -> None:
    sim = monitor_sev1()
    sim.send(C.START_WORK, 10)
    sim.run_until(hours(2.5))
    sim.send(C.SERVER_RECOVERED, hours(2.5), actor="monitor")
    sim.run_until(hours(12))
    assert [e.at for e in sim.of(ET.STATUS_NOTICE)] == [at(120)]
    assert sim.c.state is CaseState.WORKING  # stays open until staff resolve it


def test_status_notices_stop_at_resolve() -> None:
    sim = staff_case()
    sim.send(C.START_WORK, 10)
    sim.send(C.RESOLVE, 70)
    sim.run_until(hours(12))
    assert len(sim.of(ET.STATUS_NOTICE)) == 1
    assert next_due(sim.c, sim.config) is None


def test_a_late_timer_sends_one_notice_and_keeps_the_cadence() -> None:
    sim = staff_case()
    sim.send(C.START_WORK, 5)
    decision = sim.tick(200)  # the engine was down from 0:05 to 3:20
    notices = [e for e in decision.events if e.type is ET.STATUS_NOTICE]
    assert len(notices) == 1
    assert notices[0].details["missed"] == 2
    sim.run_until(hours(5))
    assert [e.at for e in sim.of(ET.STATUS_NOTICE)] == [at(200), at(240), at(300)]


# --- first response, warnings --------------------------------------------------------------------------


@pytest.mark.parametrize(("severity", "budget_h"), [(Severity.SEV2, 24), (Severity.SEV3, 48)])
def test_first_response_breach_and_internal_warning_at_75_percent(severity: Severity, budget_h: int) -> None:
    sim = staff_case(severity)
    sim.run_until(hours(budget_h * 0.75) - 1)
    assert sim.events[-1].type is ET.CASE_OPENED
    sim.run_until(hours(budget_h * 0.75))
    warning = sim.of(ET.SLA_WARNING)
    assert len(warning) == 1
    assert warning[0].visibility is Visibility.INTERNAL
    assert roles(sim.sent()) == [("email", "oncall_engineers")]
    requested = sim.of(ET.NOTIFICATION_REQUESTED)
    assert [e.visibility for e in requested] == [Visibility.INTERNAL]
    sim.run_until(hours(budget_h) - 1)
    assert sim.of(ET.SLA_BREACHED) == []
    sim.run_until(hours(budget_h))
    breach = sim.of(ET.SLA_BREACHED)
    assert len(breach) == 1
    assert breach[0].at == at(hours(budget_h))
    assert roles(sim.sent(Role.SUPPORT_LEAD)) == [("email", "support_lead")]
    sim.run_until(hours(500))
    assert len(sim.of(ET.SLA_BREACHED)) == 1


def test_warnings_never_reach_a_customer_role() -> None:
    scenarios = [monitor_sev1(), staff_case(), staff_case(Severity.SEV2), staff_case(Severity.SEV3)]
    for sim in scenarios:
        sim.run_until(hours(60))
        warned = [n for n in sim.notifications if n.purpose.startswith("sla.warning")]
        assert warned
        assert {n.role for n in warned} <= INTERNAL_ROLES
        assert all(e.visibility is Visibility.INTERNAL for e in sim.of(ET.SLA_WARNING))


def test_first_response_by_update_or_work_stops_the_clock() -> None:
    by_update = staff_case(Severity.SEV2)
    by_update.send(C.POST_UPDATE, hours(3), message="We are on it.")
    by_work = staff_case(Severity.SEV2)
    by_work.send(C.START_WORK, hours(3))
    for sim in (by_update, by_work):
        sim.run_until(hours(100))
        assert sim.of(ET.SLA_BREACHED) == []
        assert sim.of(ET.SLA_WARNING) == []


# --- waiting on the customer ---------------------------------------------------------------------------


def test_waiting_pauses_first_response_and_keeps_the_remaining_budget() -> None:
    sim = email_case()
    sim.send(C.TRIAGE, 10, severity=Severity.SEV2)
    sim.send(C.WAIT_ON_CUSTOMER, hours(10), message="Which export format?")
    assert sim.c.state is CaseState.WAITING
    assert next_due(sim.c, sim.config) is None  # nothing runs while waiting
    replied = sim.send(C.CUSTOMER_REPLIED, hours(15), message="CSV")
    assert replied.events[0].state is CaseState.TRIAGED  # never worked
    assert next_due(sim.c, sim.config) == at(hours(23))  # warning: 18 h + 5 h waited
    sim.run_until(hours(29) - 1)
    assert sim.of(ET.SLA_BREACHED) == []
    sim.run_until(hours(29))
    assert len(sim.of(ET.SLA_BREACHED)) == 1


def test_sev1_work_clock_does_not_pause_but_status_notices_do() -> None:
    sim = staff_case()
    sim.send(C.WAIT_ON_CUSTOMER, 30)
    sim.run_until(hours(6))
    assert [e.at for e in sim.of(ET.SLA_BREACHED)] == [at(120)]
    assert sim.of(ET.STATUS_NOTICE) == []


def test_customer_reply_returns_a_worked_case_to_working() -> None:
    sim = staff_case(Severity.SEV2)
    sim.send(C.START_WORK, 5)
    sim.send(C.WAIT_ON_CUSTOMER, 10)
    sim.send(C.CUSTOMER_REPLIED, 20, message="done")
    assert sim.c.state is CaseState.WORKING
    assert sim.of(ET.CUSTOMER_REPLIED)[0].details["message"] == "done"


def test_an_update_while_waiting_keeps_the_status_clock_paused() -> None:
    sim = staff_case()
    sim.send(C.START_WORK, 5)
    sim.send(C.WAIT_ON_CUSTOMER, 30)
    sim.send(C.POST_UPDATE, 40, message="Still waiting for your logs.")
    assert next_due(sim.c, sim.config) is None
    sim.send(C.CUSTOMER_REPLIED, hours(3))
    sim.run_until(hours(4))
    assert [e.at for e in sim.of(ET.STATUS_NOTICE)] == [at(hours(4))]


# --- severity changes ----------------------------------------------------------------------------------


def test_sev2_to_sev1_mid_clock_starts_sev1_clocks_then_and_pages_ops_manager() -> None:
    sim = email_case()
    sim.send(C.TRIAGE, 10, severity=Severity.SEV2)
    decision = sim.send(C.CHANGE_SEVERITY, hours(5), severity=Severity.SEV1, reason="whole office down")
    changed = decision.events[0]
    assert changed.type is ET.SEVERITY_CHANGED
    assert changed.severity is Severity.SEV1
    assert changed.details["previous_severity"] == 2
    assert changed.reason == "whole office down"
    assert roles(decision.notifications) == [("page", "operations_manager"), ("email", "support_team")]
    assert decision.notifications[0].purpose == f"severity.sev1:{changed.seq}"
    sim.run_until(hours(7) - 1)
    assert sim.of(ET.SLA_BREACHED) == []
    sim.run_until(hours(7))
    assert [e.details["clock"] for e in sim.of(ET.SLA_BREACHED)] == ["sev1.work"]
    sim.run_until(hours(60))
    assert "first.response" not in [e.details["clock"] for e in sim.of(ET.SLA_BREACHED)]


def test_upgrade_of_a_monitor_case_contacts_the_customer_too() -> None:
    sim = monitor_sev1(severity=Severity.SEV2)
    assert sim.notifications == []
    decision = sim.send(C.CHANGE_SEVERITY, 30, severity=Severity.SEV1, actor="monitor")
    assert ("email", "customer_technical") in roles(decision.notifications)


def test_upgrade_of_a_case_already_worked_owes_no_work_escalation() -> None:
    sim = staff_case(Severity.SEV2)
    sim.send(C.START_WORK, 10)
    sim.send(C.CHANGE_SEVERITY, 60, severity=Severity.SEV1)
    sim.run_until(hours(10))
    assert sim.of(ET.SLA_BREACHED) == []
    assert len(sim.of(ET.STATUS_NOTICE)) > 0  # but the hourly updates are owed


def test_downgrade_after_a_response_owes_no_first_response() -> None:
    sim = staff_case()
    sim.send(C.START_WORK, 10)
    sim.send(C.CHANGE_SEVERITY, 30, severity=Severity.SEV3)
    sim.run_until(hours(100))
    assert sim.of(ET.SLA_BREACHED) == []
    assert sim.of(ET.STATUS_NOTICE) == []


def test_retriage_of_a_triaged_case_is_a_severity_change_plus_owner() -> None:
    sim = staff_case(Severity.SEV3)
    decision = sim.send(C.TRIAGE, 5, severity=Severity.SEV2, owner="staff:dan")
    assert [e.type for e in decision.events] == [ET.SEVERITY_CHANGED, ET.ASSIGNED]
    assert not decision.ticket_used
    assert sim.c.ticket == "FW-100000"
    again = sim.send(C.TRIAGE, 6, severity=Severity.SEV2, owner="staff:dan")
    assert [e.type for e in again.events] == [ET.COMMAND_REJECTED]


# --- recovery and auto-resolve -------------------------------------------------------------------------


def test_recovery_is_recorded_and_the_customer_emailed() -> None:
    sim = monitor_sev1()
    decision = sim.send(C.SERVER_RECOVERED, 50, actor="monitor", details={"outage_seconds": 3000})
    recovered = decision.events[0]
    assert recovered.type is ET.SERVER_RECOVERED
    assert recovered.event_id == event_id_for(CASE_ID, ET.SERVER_RECOVERED)
    assert recovered.details["outage_seconds"] == 3000
    assert not sim.c.server_down
    assert sim.c.recovered_at == at(50)
    assert roles(decision.notifications) == [("email", "customer_technical")]
    assert decision.notifications[0].key == "case-1:server.recovered:customer_technical:email"
    assert sim.c.state is CaseState.TRIAGED  # stays open without auto-resolve
    sim.run_until(hours(12))
    assert sim.of(ET.RESOLVED) == []


def test_auto_resolve_after_the_healthy_period() -> None:
    sim = monitor_sev1(EngineConfig(auto_resolve_after=timedelta(minutes=30)))
    sim.send(C.SERVER_RECOVERED, 50, actor="monitor")
    assert next_due(sim.c, sim.config) == at(80)
    assert sim.tick(79).events == []
    decision = sim.tick(80)
    resolved = decision.events[-1]
    assert resolved.type is ET.RESOLVED
    assert resolved.actor == "monitor"
    assert resolved.details["auto"] is True
    assert sim.c.state is CaseState.RESOLVED
    assert next_due(sim.c, sim.config) is None


def test_staff_resolution_before_the_healthy_period_ends_auto_resolve() -> None:
    sim = monitor_sev1(EngineConfig(auto_resolve_after=timedelta(minutes=30)))
    sim.send(C.SERVER_RECOVERED, 50, actor="monitor")
    sim.send(C.RESOLVE, 60)
    sim.send(C.REOPEN, 70)
    sim.run_until(hours(1.5))
    assert [e.actor for e in sim.of(ET.RESOLVED)] == ["staff:alice"]
    assert sim.c.state is CaseState.TRIAGED


def test_a_second_recovery_and_a_recovery_of_a_non_monitor_case_are_rejected() -> None:
    sim = monitor_sev1()
    sim.send(C.SERVER_RECOVERED, 50, actor="monitor")
    assert "already recovered" in sim.send(C.SERVER_RECOVERED, 55, actor="monitor").events[0].reason
    staff = staff_case()
    assert "not a monitor case" in staff.send(C.SERVER_RECOVERED, 5, actor="monitor").events[0].reason


# --- lifecycle -----------------------------------------------------------------------------------------


def test_full_lifecycle_and_events_carry_the_state_after_them() -> None:
    sim = email_case(partner="isp-9")
    sim.send(C.TRIAGE, 10, severity=Severity.SEV2, owner="staff:bob")
    sim.send(C.ASSIGN, 20, owner="staff:eve")
    sim.send(C.START_WORK, 30)
    sim.send(C.NOTE, 40, message="Called the customer; export job fails on row 12.")
    sim.send(C.WAIT_ON_CUSTOMER, 50)
    sim.send(C.CUSTOMER_REPLIED, 60)
    sim.send(C.RESOLVE, 70, reason="fixed the export template")
    sim.send(C.CLOSE, 80)
    sim.send(C.REOPEN, 90)
    states = [(e.type, e.state) for e in sim.events if e.type is not ET.NOTIFICATION_REQUESTED]
    assert states == [
        (ET.CASE_OPENED, CaseState.NEW),
        (ET.TRIAGED, CaseState.TRIAGED),
        (ET.ASSIGNED, CaseState.TRIAGED),
        (ET.WORK_STARTED, CaseState.WORKING),
        (ET.NOTE, CaseState.WORKING),
        (ET.WAITING, CaseState.WAITING),
        (ET.CUSTOMER_REPLIED, CaseState.WORKING),
        (ET.RESOLVED, CaseState.RESOLVED),
        (ET.CLOSED, CaseState.CLOSED),
        (ET.REOPENED, CaseState.TRIAGED),
    ]
    assert sim.of(ET.NOTE)[0].visibility is Visibility.INTERNAL
    assert sim.of(ET.ASSIGNED)[0].owner == "staff:eve"
    resolved = sim.of(ET.RESOLVED)[0]
    assert (resolved.actor, resolved.reason, resolved.at) == (
        "staff:alice",
        "fixed the export template",
        at(70),
    )
    assert resolved.command_id is not None
    assert resolved.ticket == "FW-100000"
    assert resolved.partner_id == "isp-9"


def test_reopen_restarts_clocks_at_the_reopen() -> None:
    sim = staff_case()
    sim.send(C.START_WORK, 5)
    sim.send(C.RESOLVE, 30)
    sim.send(C.REOPEN, hours(5))
    assert sim.c.state is CaseState.TRIAGED
    assert not sim.c.worked
    sim.run_until(hours(7) - 1)
    assert sim.of(ET.SLA_BREACHED) == []
    sim.run_until(hours(7))
    assert [e.at for e in sim.of(ET.SLA_BREACHED)] == [at(hours(7))]


def test_reopen_of_an_untriaged_case_goes_back_to_new() -> None:
    sim = email_case()
    sim.send(C.CLOSE, 10, reason="spam")
    sim.send(C.REOPEN, 20)
    assert sim.c.state is CaseState.NEW
    assert sim.c.clocks == ()


@pytest.mark.parametrize(
    "setup",
    [
        [],
        [(C.START_WORK, {})],
        [(C.WAIT_ON_CUSTOMER, {})],
        [(C.RESOLVE, {})],
    ],
)
def test_close_from_any_non_closed_state(setup: list[tuple[CommandType, dict[str, Any]]]) -> None:
    sim = staff_case(Severity.SEV2)
    for type_, fields in setup:
        sim.send(type_, 5, **fields)
    sim.send(C.CLOSE, 10)
    assert sim.c.state is CaseState.CLOSED
    assert sim.c.clocks == ()
    assert sim.send(C.CLOSE, 11).events[0].type is ET.COMMAND_REJECTED


# --- rejected commands, dead letters, replays ----------------------------------------------------------


def _new_email() -> Sim:
    return email_case()


def _resolved() -> Sim:
    sim = staff_case()
    sim.send(C.RESOLVE, 1)
    return sim


def _working() -> Sim:
    sim = staff_case()
    sim.send(C.START_WORK, 1, owner="staff:alice")
    return sim


REJECTIONS: list[tuple[Callable[[], Sim], CommandType, dict[str, Any], str]] = [
    (_new_email, C.START_WORK, {}, "not allowed in state new"),
    (_new_email, C.CHANGE_SEVERITY, {"severity": Severity.SEV2}, "triage sets the first severity"),
    (_new_email, C.TRIAGE, {}, "needs a severity"),
    (_working, C.START_WORK, {}, "already being worked"),
    (_working, C.POST_UPDATE, {}, "needs a message"),
    (_working, C.NOTE, {"message": "  "}, "needs a message"),
    (_working, C.NOTE, {"message": "x", "severity": Severity.SEV2}, "does not take severity"),
    (_working, C.TICK, {"message": "x"}, "does not take message"),
    (_working, C.RESOLVE, {"title": "x"}, "does not take title"),
    (_working, C.CHANGE_SEVERITY, {"severity": Severity.SEV1}, "already Sev1"),
    (_working, C.CHANGE_SEVERITY, {}, "needs a severity"),
    (_working, C.REOPEN, {}, "not allowed in state working"),
    (_working, C.CUSTOMER_REPLIED, {"customer_id": "globex"}, "customer_id globex"),
    (_working, C.NOTE, {"message": "x", "server_id": "db-2"}, "server_id db-2"),
    (_working, C.ASSIGN, {}, "needs an owner"),
    (_working, C.ASSIGN, {"owner": "staff:alice"}, "already owned by staff:alice"),
    (_working, C.OPEN, {"source": CaseSource.STAFF, "customer_id": "acme"}, "already exists"),
    (_working, C.NOTIFICATION_OUTCOME, {"details": {"outcome": "sent"}}, "needs details.key"),
    (_working, C.NOTIFICATION_OUTCOME, {"details": {"key": "other:x", "outcome": "sent"}}, "not about case"),
    (_working, C.NOTIFICATION_OUTCOME, {"details": {"key": "case-1:x", "outcome": "lost"}}, "outcome in"),
    (_resolved, C.RESOLVE, {}, "not allowed in state resolved"),
    (_resolved, C.START_WORK, {}, "reopen it first"),
    (_resolved, C.WAIT_ON_CUSTOMER, {}, "not allowed in state resolved"),
]


@pytest.mark.parametrize(("make", "type_", "fields", "why"), REJECTIONS)
def test_rejected_commands_leave_the_case_unchanged_and_say_why(
    make: Callable[[], Sim], type_: CommandType, fields: dict[str, Any], why: str
) -> None:
    sim = make()
    before = sim.c
    decision = sim.send(type_, hours(2), **fields)  # 2 h: clocks are due, yet a rejection fires nothing
    assert [e.type for e in decision.events] == [ET.COMMAND_REJECTED]
    rejected = decision.events[0]
    assert why in rejected.reason
    assert rejected.visibility is Visibility.INTERNAL
    assert rejected.details["command_type"] == type_.value
    assert decision.notifications == []
    assert not decision.ticket_used
    assert decision.dead_letter is None
    after = sim.c
    assert after.seq == before.seq + 1
    assert after.last_hash == rejected.hash
    assert after.recent_commands[-1] == rejected.command_id
    unchanged = {"seq", "last_hash", "recent_commands"}
    assert after.model_dump(exclude=unchanged) == before.model_dump(exclude=unchanged)
    assert (rejected.state, rejected.severity, rejected.owner) == (
        before.state,
        before.severity,
        before.owner,
    )


@pytest.mark.parametrize(
    ("command", "why"),
    [
        ({"type": C.START_WORK}, "needs an open case"),
        ({"type": C.TICK}, "needs an open case"),
        ({"type": C.OPEN, "customer_id": "acme"}, "source"),
        ({"type": C.OPEN, "source": CaseSource.EMAIL}, "customer_id"),
    ],
)
def test_commands_that_cannot_open_a_case_are_dead_letters(command: dict[str, Any], why: str) -> None:
    cmd = CaseCommand(command_id="x", case_id=CASE_ID, at=T0, actor="staff:a", **command)
    decision = apply(None, cmd, EngineConfig(), "FW-100000")
    assert decision.case is None
    assert decision.events == []
    assert decision.notifications == []
    assert decision.dead_letter is not None
    assert why in decision.dead_letter
    assert not decision.ticket_used


def test_replayed_command_ids_produce_nothing() -> None:
    sim = staff_case()
    work = sim.command(C.START_WORK, 10)
    sim.apply(work)
    case = sim.c
    for command in (work, sim.command(C.NOTE, 11, command_id=work.command_id, message="different")):
        replay = apply(case, command, sim.config, "FW-999999")
        assert replay.case is case
        assert (replay.events, replay.notifications, replay.ticket_used, replay.dead_letter) == (
            [],
            [],
            False,
            None,
        )


def test_a_replayed_rejection_is_not_recorded_twice() -> None:
    sim = _new_email()
    bad = sim.command(C.START_WORK, 1)
    first = sim.apply(bad)
    assert len(first.events) == 1
    assert sim.apply(bad).events == []


def test_open_replayed_with_its_own_id_is_ignored_however_old() -> None:
    sim = monitor_sev1()
    opening = sim.command(
        C.OPEN, 0, command_id="cmd-1", source=CaseSource.MONITOR, customer_id="acme", severity=Severity.SEV1
    )
    for i in range(RECENT_COMMANDS + 5):
        sim.send(C.NOTE, 1 + i / 100, message=f"note {i}")
    assert "cmd-1" not in sim.c.recent_commands
    decision = apply(sim.c, opening, sim.config, "FW-999999")
    assert decision.events == []
    assert decision.case is sim.c
    assert not decision.ticket_used
    assert len(sim.c.recent_commands) == RECENT_COMMANDS


def test_a_tick_with_nothing_due_emits_nothing_and_is_not_remembered() -> None:
    sim = staff_case(Severity.SEV3)
    case = sim.c
    decision = sim.tick(5)
    assert decision.events == []
    assert decision.case is case
    assert decision.dead_letter is None


def test_tick_command_is_deterministic() -> None:
    sim = staff_case()
    due = next_due(sim.c, sim.config)
    assert due == at(45)
    tick = tick_command(sim.c, at(46))
    assert tick.command_id == f"tick:{CASE_ID}:{to_epoch_ms(due)}"
    assert (tick.type, tick.actor, tick.at) == (C.TICK, "timer", at(46))
    assert tick_command(sim.c, at(46)) == tick
    assert sim.apply(tick).events
    assert sim.apply(tick).events == []  # a second timer firing for the same deadline


def test_notification_outcomes_are_recorded_without_a_state_change() -> None:
    sim = monitor_sev1()
    sim.run_until(hours(1.5))
    before = sim.c
    page = sim.notifications[0]
    warn = next(n for n in sim.notifications if n.purpose.startswith("sla.warning"))
    for key, outcome, type_ in [
        (page.key, "retrying", ET.NOTIFICATION_RETRYING),
        (page.key, "sent", ET.NOTIFICATION_SENT),
        (warn.key, "failed", ET.NOTIFICATION_FAILED),
    ]:
        details = {"key": key, "contact": "ops@example.com", "outcome": outcome, "attempt": 2, "error": None}
        decision = sim.send(C.NOTIFICATION_OUTCOME, 91, actor="notifier", details=details)
        assert [e.type for e in decision.events] == [type_]
        recorded = dict(decision.events[0].details)
        assert recorded.pop("due").startswith("sev1.work=")  # the running deadlines, on the last event
        assert recorded == details
    visibility = [e.visibility for e in sim.events[-3:]]
    assert visibility == [Visibility.CUSTOMER, Visibility.CUSTOMER, Visibility.INTERNAL]
    assert sim.c.state is before.state
    assert sim.c.clocks == before.clocks


# --- audit chain, ids, determinism ---------------------------------------------------------------------


def _busy_case() -> Sim:
    sim = monitor_sev1(EngineConfig(auto_resolve_after=timedelta(hours=1)))
    sim.run_until(hours(2.5))
    sim.send(C.START_WORK, hours(2.5))
    sim.send(C.POST_UPDATE, hours(2.6), message="Rebooting the array.")
    sim.send(C.START_WORK, hours(2.7))  # rejected
    sim.send(C.NOTE, hours(2.8), message="Vendor ticket 4711.")
    sim.send(C.SERVER_RECOVERED, hours(3), actor="monitor")
    sim.run_until(hours(6))
    sim.send(C.CLOSE, hours(7))
    return sim


def test_the_hash_chain_links_every_event() -> None:
    sim = _busy_case()
    events = sim.events
    assert [e.seq for e in events] == list(range(len(events)))
    assert events[0].prev_hash == ""
    for previous, event in itertools.pairwise(events):
        assert event.prev_hash == previous.hash
    assert all(e.hash == case_event_hash(e) for e in events)
    assert sim.c.seq == len(events)
    assert sim.c.last_hash == events[-1].hash
    tampered = events[5].model_copy(update={"reason": "nothing happened"})
    assert case_event_hash(tampered) != events[5].hash


def test_event_ids_and_notification_keys_are_unique_and_every_request_is_audited() -> None:
    sim = _busy_case()
    ids = [e.event_id for e in sim.events]
    assert len(set(ids)) == len(ids)
    keys = [n.key for n in sim.notifications]
    assert len(set(keys)) == len(keys)
    requested = {str(e.details["key"]): e for e in sim.of(ET.NOTIFICATION_REQUESTED)}
    assert set(requested) == set(keys)
    for n in sim.notifications:
        audit = requested[n.key]
        assert (audit.details["channel"], audit.details["role"], audit.details["purpose"]) == (
            n.channel.value,
            n.role.value,
            n.purpose,
        )
        assert n.key == f"{CASE_ID}:{n.purpose}:{n.role.value}:{n.channel.value}"


def test_events_carry_the_command_context() -> None:
    sim = _busy_case()
    for e in sim.events:
        assert e.command_id
        assert e.actor
        assert e.reason
    work = sim.of(ET.WORK_STARTED)[0]
    assert (work.actor, work.at, work.state) == ("staff:alice", at(hours(2.5)), CaseState.WORKING)
    for e in sim.events:
        if e.type not in (ET.CASE_OPENED, ET.SERVER_RECOVERED):
            index = [x.event_id for x in sim.events if x.command_id == e.command_id].index(e.event_id)
            assert e.event_id == event_id_for(CASE_ID, e.type, f"{e.command_id}:{index}")


def test_apply_is_deterministic_byte_for_byte() -> None:
    sim = _busy_case()
    sim2 = _busy_case()
    assert [e.model_dump_json() for e in sim.events] == [e.model_dump_json() for e in sim2.events]
    assert [n.model_dump_json() for n in sim.notifications] == [
        n.model_dump_json() for n in sim2.notifications
    ]
    assert sim.c.model_dump_json() == sim2.c.model_dump_json()
    base = monitor_sev1()
    command = base.command(C.TICK, 150, actor="timer")
    one, two = (apply(base.c, command, base.config, "FW-1") for _ in range(2))
    assert one == two
    assert one.events


def test_case_survives_a_json_round_trip() -> None:
    sim = _busy_case()
    for case in (sim.c, monitor_sev1().c, email_case().c):
        assert Case.model_validate_json(case.model_dump_json()) == case


# --- tickets and per-customer policy -------------------------------------------------------------------


def test_ticket_numbers_are_unique_across_partitions_and_dense() -> None:
    for partitions in range(1, 13):
        issued = {
            ticket_number(partition, counter, partitions)
            for partition in range(partitions)
            for counter in range(150)
        }
        assert len(issued) == partitions * 150
        assert {int(t.removeprefix("FW-")) for t in issued} == set(range(100000, 100000 + partitions * 150))
    assert ticket_number(3, 2, 4) == "FW-100011"
    for bad in [(4, 0, 4), (-1, 0, 4), (0, -1, 4), (0, 0, 0)]:
        with pytest.raises(ValueError, match="no ticket"):
            ticket_number(*bad)


def test_ticket_counter_moves_only_when_a_ticket_is_used() -> None:
    sim = email_case()
    sim.send(C.NOTE, 1, message="x")
    assert sim.counter == 0
    sim.send(C.TRIAGE, 2, severity=Severity.SEV3)
    assert sim.counter == 1
    assert sim.c.ticket == "FW-100000"
    sim.send(C.CLOSE, 3)
    sim.send(C.REOPEN, 4)
    sim.send(C.TRIAGE, 5, severity=Severity.SEV1)  # re-triage of a reopened case keeps its ticket
    assert sim.counter == 1
    assert sim.c.ticket == "FW-100000"


def test_per_customer_policy_override() -> None:
    book = PolicyBook.from_mapping(
        {"customers": {"acme": {"version": "acme-gold-1", "sev2_first_response": "PT4H"}}}
    )
    config = EngineConfig(policies=book)
    acme = staff_case(Severity.SEV2, customer="acme", config=config)
    globex = staff_case(Severity.SEV2, customer="globex", config=config)
    assert acme.c.policy_version == "acme-gold-1"
    assert globex.c.policy_version == "policy-2026-11"
    assert acme.events[0].details["policy_version"] == "acme-gold-1"
    for sim in (acme, globex):
        sim.run_until(hours(30))
    assert [e.at for e in acme.of(ET.SLA_BREACHED)] == [at(hours(4))]
    assert [e.at for e in globex.of(ET.SLA_BREACHED)] == [at(hours(24))]
    assert acme.of(ET.SLA_BREACHED)[0].details["policy_version"] == "acme-gold-1"


def test_a_case_given_the_wrong_command_is_not_touched() -> None:
    sim = staff_case()
    other = CaseCommand(command_id="x", case_id="case-2", type=C.NOTE, at=T0, actor="a", message="m")
    decision = apply(sim.c, other, sim.config, "FW-1")
    assert decision.case is sim.c
    assert decision.events == []
    assert decision.dead_letter is not None


def test_monitor_recovery_repeating_the_cases_identity_fields_is_accepted() -> None:
    from datetime import UTC, datetime

    from streams.detector import INITIAL, observe
    from tests.helpers import result

    now = datetime(2026, 11, 26, tzinfo=UTC)
    streak, commands = INITIAL, []
    for n in range(10):
        streak, out = observe(streak, result("x", n, ok=False), now)
        commands += out
    streak, out = observe(streak, result("x", 11, ok=True), now)
    commands += out
    opened = apply(None, commands[0], EngineConfig(), "FW-100000")
    recovered = apply(opened.case, commands[1], EngineConfig(), "FW-100004")
    assert recovered.events[0].type is CaseEventType.SERVER_RECOVERED


def test_status_clock_warning_is_logged_internally_but_emails_nobody() -> None:
    sim = staff_case(Severity.SEV1)
    before = len(sim.notifications)
    sim.tick(50)  # 75 % of the first hourly update (45 min) passed; the work clock warns only at 1:30
    warnings = sim.of(ET.SLA_WARNING)
    assert [w.details["clock"] for w in warnings] == ["status.update"]
    assert warnings[0].visibility is Visibility.INTERNAL
    assert len(sim.notifications) == before
    sim.tick(95)  # the 2 h work clock's warning still reaches on-call engineers
    oncall = [n for n in sim.notifications[before:] if n.role is Role.ONCALL_ENGINEERS]
    assert [n.purpose.split(":")[:2] for n in oncall] == [["sla.warning", "sev1.work"]]


def test_closed_case_is_purged_after_retention_and_reopen_works_until_then() -> None:
    config = EngineConfig(closed_retention=timedelta(days=30))
    sim = staff_case(Severity.SEV3, config=config)
    sim.send(C.RESOLVE, 10, reason="fixed")
    sim.send(C.CLOSE, 20)
    closed_at = at(20)
    assert next_due(sim.c, config) == closed_at + timedelta(days=30)
    early = sim.apply(tick_command(sim.c, closed_at + timedelta(days=29)))
    assert not early.purge
    assert early.case == sim.c
    late = sim.apply(tick_command(sim.c, closed_at + timedelta(days=30)))
    assert late.purge
    assert late.events == []
    assert late.notifications == []
    open_case = staff_case(Severity.SEV3, config=config)
    assert not open_case.apply(tick_command(open_case.c, at(60 * 24 * 400))).purge  # only closed cases go
    forever = EngineConfig(closed_retention=None)
    kept = staff_case(Severity.SEV3, config=forever)
    kept.send(C.CLOSE, 20)
    assert next_due(kept.c, forever) is None


def test_last_event_of_a_decision_carries_the_running_deadlines_and_the_chain_holds() -> None:
    sim = staff_case(Severity.SEV1)
    opened = sim.events[-1]
    assert opened.details["due"] == (f"sev1.work={at(120).isoformat()},status.update={at(60).isoformat()}")
    sim.send(C.START_WORK, 30)
    assert sim.events[-1].details["due"] == f"status.update={at(60).isoformat()}"
    sim.send(C.RESOLVE, 40)
    assert sim.events[-1].details["due"] == ""
    for before, after in zip(sim.events, sim.events[1:], strict=False):
        assert after.prev_hash == before.hash
    assert all(case_event_hash(e) == e.hash for e in sim.events)
    assert sim.c.last_hash == sim.events[-1].hash
