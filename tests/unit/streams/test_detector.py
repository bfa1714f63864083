"""The detector rules, exhaustively: thresholds, resets, recovery, replays, planned failures."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schemas.cases import CaseSource, Severity, monitor_case_id
from schemas.commands import CaseCommand, CommandType
from schemas.notifications import Notification, Role
from schemas.probes import ProbeResult
from streams.detector import INITIAL, ServerStreak, StreakState, observe
from tests.helpers import T0, result

NOW = T0 + timedelta(days=1)


def run(
    results: list[ProbeResult],
    threshold: int = 10,
    start: ServerStreak = INITIAL,
    planned: set[int] | None = None,
) -> tuple[ServerStreak, list[CaseCommand]]:
    """Feed results in order; `planned` holds the indexes of results inside a maintenance window."""
    state, commands = start, []
    for i, r in enumerate(results):
        state, new = observe(state, r, NOW, threshold, planned=i in (planned or set()))
        commands.extend(new)
    return state, commands


def fails(n: int, start: int = 0, server: str = "s1") -> list[ProbeResult]:
    return [result(server, i, ok=False) for i in range(start, start + n)]


def test_nine_failures_open_nothing() -> None:
    state, commands = run(fails(9))
    assert commands == []
    assert state.state is StreakState.FAILING
    assert state.failures == 9


def test_tenth_failure_sends_exactly_one_open_command_with_every_field() -> None:
    state, commands = run(fails(10))
    case_id = monitor_case_id("s1", T0)
    tenth = result("s1", 9, ok=False)
    title = "s1 down: 10 consecutive failed status requests"
    assert commands == [
        CaseCommand(
            command_id=f"open:{case_id}",
            case_id=case_id,
            type=CommandType.OPEN,
            at=NOW,
            actor="monitor",
            reason=title,
            source=CaseSource.MONITOR,
            customer_id="acme",
            partner_id=None,
            server_id="s1",
            severity=Severity.SEV1,
            title=title,
            details={
                "failures": 10,
                "threshold": 10,
                "first_failure_at": T0.isoformat(),
                "probe_id": tenth.probe_id,
                "probe_started_at": tenth.started_at.isoformat(),
                "error_class": "timeout",
                "error_message": "no answer within 10 s",
                "status_code": None,
            },
        )
    ]
    assert state == ServerStreak(
        state=StreakState.OPEN,
        failures=10,
        first_failure_at=T0,
        last_change_at=tenth.started_at,
        case_id=case_id,
        severity=Severity.SEV1,
    )


def test_further_failures_while_open_change_nothing() -> None:
    state, _ = run(fails(10))
    after, commands = observe(state, result("s1", 10, ok=False), NOW)
    assert commands == []
    assert after is state


def test_success_resets_the_streak_without_command() -> None:
    state, commands = run([*fails(9), result("s1", 9, ok=True), *fails(9, start=10)])
    assert commands == []
    assert state.failures == 9
    assert state.first_failure_at == result("s1", 10, ok=False).started_at


def test_first_success_after_open_sends_recovered_for_that_case() -> None:
    ok = result("s1", 13, ok=True)
    state, commands = run([*fails(10), *fails(3, start=10), ok, result("s1", 14, ok=True)])
    case_id = monitor_case_id("s1", T0)
    assert [c.type for c in commands] == [CommandType.OPEN, CommandType.SERVER_RECOVERED]
    assert commands[1] == CaseCommand(
        command_id=f"recovered:{case_id}",
        case_id=case_id,
        type=CommandType.SERVER_RECOVERED,
        at=NOW,
        actor="monitor",
        reason="s1 passed a status request again after 780 s down",
        source=CaseSource.MONITOR,
        customer_id="acme",
        server_id="s1",
        details={
            "outage_seconds": 13 * 60,
            "first_failure_at": T0.isoformat(),
            "probe_id": ok.probe_id,
            "probe_started_at": ok.started_at.isoformat(),
            "latency_ms": 12,
        },
    )
    assert state == ServerStreak(last_change_at=ok.started_at)


def test_a_new_outage_is_a_new_case() -> None:
    _, commands = run([*fails(10), result("s1", 10, ok=True), *fails(10, start=11)])
    opened = [c for c in commands if c.type is CommandType.OPEN]
    assert len(opened) == 2
    assert opened[0].case_id != opened[1].case_id
    assert opened[1].case_id == monitor_case_id("s1", result("s1", 11, ok=False).started_at)


@pytest.mark.parametrize("threshold", [1, 3, 25])
def test_other_thresholds(threshold: int) -> None:
    _, before = run(fails(threshold - 1), threshold=threshold)
    _, at = run(fails(threshold), threshold=threshold)
    assert before == []
    assert [c.type for c in at] == [CommandType.OPEN]
    assert at[0].title == f"s1 down: {threshold} consecutive failed status requests"
    assert at[0].details["threshold"] == threshold


def test_invalid_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        observe(INITIAL, result("s1", 0, ok=False), NOW, threshold=0)


def test_healthy_server_never_changes_state() -> None:
    after, commands = observe(INITIAL, result("s1", 0, ok=True), NOW)
    assert after is INITIAL
    assert commands == []


def test_replayed_results_are_ignored() -> None:
    state, _ = run(fails(6))
    replayed, commands = run(fails(6), start=state)
    assert replayed is state
    assert commands == []
    _final, commands = run(fails(4, start=6), start=replayed)
    assert [c.type for c in commands] == [CommandType.OPEN]


def test_replay_from_empty_state_yields_the_same_ids() -> None:
    _, first = run([*fails(10), result("s1", 10, ok=True)])
    _, again = run([*fails(10), result("s1", 10, ok=True)])
    assert [c.command_id for c in first] == [c.command_id for c in again]
    assert len({c.command_id for c in first}) == 2


def test_replayed_success_after_recovery_sends_nothing() -> None:
    ok = result("s1", 10, ok=True)
    state, _ = run([*fails(10), ok])
    after, commands = observe(state, ok, NOW)
    assert after is state
    assert commands == []


def test_old_success_replayed_while_failing_is_ignored() -> None:
    old_ok = result("s1", 0, ok=True)
    state, _ = run(fails(5, start=1))
    after, commands = observe(state, old_ok, NOW)
    assert after is state
    assert commands == []


def test_servers_do_not_share_state() -> None:
    mixed = [r for i in range(10) for r in (result("a", i, ok=False), result("b", i, ok=i % 2 == 0))]
    states: dict[str, ServerStreak] = {}
    commands = []
    for r in mixed:
        states[r.server_id], new = observe(states.get(r.server_id, INITIAL), r, NOW)
        commands.extend(new)
    assert [c.server_id for c in commands] == ["a"]


# -- planned maintenance --------------------------------------------------------------------------------


def test_planned_failures_never_open_a_case() -> None:
    state, commands = run(fails(30), planned=set(range(30)))
    assert commands == []
    assert state.state is StreakState.OK
    assert state.failures == 0
    assert state.planned_down


def test_planned_failures_neither_count_nor_reset_the_streak() -> None:
    # 5 failures, 3 inside a window, 5 more: the case opens at the 10th unplanned failure (the 13th overall)
    state, commands = run(fails(12), planned={5, 6, 7})
    assert commands == []
    assert state.failures == 9
    assert state.first_failure_at == T0
    state, commands = run(fails(13), planned={5, 6, 7})
    assert [c.type for c in commands] == [CommandType.OPEN]
    assert commands[0].case_id == monitor_case_id("s1", T0)
    assert commands[0].details["failures"] == 10
    assert commands[0].details["probe_id"] == result("s1", 12, ok=False).probe_id


def test_a_planned_failure_records_itself_so_a_replay_cannot_count_it() -> None:
    state, _ = run(fails(5))
    planned = result("s1", 5, ok=False)
    after, commands = observe(state, planned, NOW, planned=True)
    assert commands == []
    assert after == state.model_copy(update={"last_change_at": planned.started_at, "planned_down": True})
    # the window was cancelled before the replay: the replayed failure is still not counted
    again, commands = observe(after, planned, NOW, planned=False)
    assert again is after
    assert commands == []


def test_an_unplanned_failure_clears_planned_down() -> None:
    state, _ = run(fails(4), planned={0, 1})
    assert state.state is StreakState.FAILING
    assert state.failures == 2
    assert not state.planned_down
    assert state.first_failure_at == result("s1", 2, ok=False).started_at


def test_a_success_inside_a_window_recovers_the_open_case() -> None:
    ok = result("s1", 12, ok=True)
    state, commands = run([*fails(12), ok], planned={10, 11, 12})
    assert [c.type for c in commands] == [CommandType.OPEN, CommandType.SERVER_RECOVERED]
    assert commands[1].details["outage_seconds"] == 12 * 60
    assert state == ServerStreak(last_change_at=ok.started_at)


def test_a_success_inside_a_window_resets_a_failing_streak() -> None:
    state, _ = run([*fails(8), *fails(2, start=8), result("s1", 10, ok=True)], planned={8, 9, 10})
    assert state == ServerStreak(last_change_at=result("s1", 10, ok=True).started_at)
    _, commands = run([*fails(8), result("s1", 8, ok=True), *fails(9, start=9)], planned={8})
    assert commands == []


def test_a_window_starting_while_the_case_is_open_changes_nothing() -> None:
    state, _ = run(fails(10))
    after, commands = observe(state, result("s1", 10, ok=False), NOW, planned=True)
    assert after is state
    assert commands == []


def test_success_after_planned_failures_of_a_healthy_server_clears_them_once() -> None:
    state, _ = run(fails(2), planned={0, 1})
    ok = result("s1", 2, ok=True)
    after, commands = observe(state, ok, NOW)
    assert after == ServerStreak(last_change_at=ok.started_at)
    assert commands == []
    assert observe(after, result("s1", 3, ok=True), NOW)[0] is after


def test_planned_flag_is_ignored_for_a_success() -> None:
    after, commands = observe(INITIAL, result("s1", 0, ok=True), NOW, planned=True)
    assert after is INITIAL
    assert commands == []


def test_a_monitor_case_carries_the_partner_and_the_engine_tells_its_help_desk() -> None:
    from streams.cases import EngineConfig, apply, ticket_number

    def told(commands: list[CaseCommand]) -> list[Notification]:
        """What the engine sends for the open command and a staff update on the case."""
        opened = apply(None, commands[0], EngineConfig(), ticket_number(0, 0, 1))
        assert opened.case is not None
        update = CaseCommand(
            command_id="update-1",
            case_id=opened.case.case_id,
            type=CommandType.POST_UPDATE,
            at=NOW + timedelta(minutes=20),
            actor="staff:alice",
            message="We are restarting the web tier.",
        )
        updated = apply(opened.case, update, EngineConfig(), ticket_number(0, 1, 1))
        assert updated.case is not None
        assert updated.case.partner_id == commands[0].partner_id
        assert opened.events[0].partner_id == commands[0].partner_id
        return updated.notifications

    supported = [r.model_copy(update={"partner_id": "northwind-partners"}) for r in fails(10)]
    _, commands = run(supported)
    assert [c.partner_id for c in commands] == ["northwind-partners"]
    helpdesk = [n for n in told(commands) if n.role is Role.PARTNER_HELPDESK]
    assert [n.partner_id for n in helpdesk] == ["northwind-partners"]
    _, unsupported = run(fails(10))
    assert [n.role for n in told(unsupported)] == [Role.CUSTOMER_TECHNICAL]
