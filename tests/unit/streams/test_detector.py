"""The detector rules, exhaustively: thresholds, resets, recovery, replays, one case per outage."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schemas.cases import CaseEventType, CaseSource, Severity, monitor_case_id
from streams.detector import INITIAL, ServerStreak, StreakState, observe
from tests.helpers import T0, result

NOW = T0 + timedelta(days=1)


def run(results: list, threshold: int = 10, start: ServerStreak = INITIAL) -> tuple[ServerStreak, list]:
    state, events = start, []
    for r in results:
        state, new = observe(state, r, NOW, threshold)
        events.extend(new)
    return state, events


def fails(n: int, start: int = 0, server: str = "s1") -> list:
    return [result(server, i, ok=False) for i in range(start, start + n)]


def test_nine_failures_open_nothing() -> None:
    state, events = run(fails(9))
    assert events == []
    assert state.state is StreakState.FAILING
    assert state.failures == 9


def test_tenth_failure_opens_exactly_one_sev1_monitor_case() -> None:
    state, events = run(fails(10))
    assert len(events) == 1
    opened = events[0]
    assert opened.type is CaseEventType.CASE_OPENED
    assert opened.severity is Severity.SEV1
    assert opened.source is CaseSource.MONITOR
    assert opened.at == result("s1", 9, ok=False).started_at
    assert opened.case_id == monitor_case_id("s1", T0)
    assert opened.details["failures"] == 10
    assert state.state is StreakState.OPEN
    assert state.case_id == opened.case_id


def test_further_failures_while_open_change_nothing() -> None:
    state, _ = run(fails(10))
    after, events = observe(state, result("s1", 10, ok=False), NOW)
    assert events == []
    assert after is state


def test_success_resets_the_streak_without_event() -> None:
    state, events = run([*fails(9), result("s1", 9, ok=True), *fails(9, start=10)])
    assert events == []
    assert state.failures == 9
    assert state.first_failure_at == result("s1", 10, ok=False).started_at


def test_first_success_after_open_emits_recovery_for_that_case() -> None:
    state, events = run(
        [*fails(10), *fails(3, start=10), result("s1", 13, ok=True), result("s1", 14, ok=True)]
    )
    assert [e.type for e in events] == [CaseEventType.CASE_OPENED, CaseEventType.SERVER_RECOVERED]
    assert events[1].case_id == events[0].case_id
    assert events[1].details["outage_seconds"] == 13 * 60
    assert state.state is StreakState.OK


def test_a_new_outage_is_a_new_case() -> None:
    _, events = run([*fails(10), result("s1", 10, ok=True), *fails(10, start=11)])
    opened = [e for e in events if e.type is CaseEventType.CASE_OPENED]
    assert len(opened) == 2
    assert opened[0].case_id != opened[1].case_id


@pytest.mark.parametrize("threshold", [1, 3, 25])
def test_other_thresholds(threshold: int) -> None:
    _, before = run(fails(threshold - 1), threshold=threshold)
    _, at = run(fails(threshold), threshold=threshold)
    assert before == []
    assert [e.type for e in at] == [CaseEventType.CASE_OPENED]


def test_invalid_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        observe(INITIAL, result("s1", 0, ok=False), NOW, threshold=0)


def test_healthy_server_never_changes_state() -> None:
    after, events = observe(INITIAL, result("s1", 0, ok=True), NOW)
    assert after is INITIAL
    assert events == []


def test_replayed_results_are_ignored() -> None:
    state, _ = run(fails(6))
    replayed, events = run(fails(6), start=state)
    assert replayed is state
    assert events == []
    _final, events = run(fails(4, start=6), start=replayed)
    assert [e.type for e in events] == [CaseEventType.CASE_OPENED]


def test_replay_from_empty_state_yields_the_same_ids() -> None:
    _, first = run([*fails(10), result("s1", 10, ok=True)])
    _, again = run([*fails(10), result("s1", 10, ok=True)])
    assert [e.event_id for e in first] == [e.event_id for e in again]
    assert len({e.event_id for e in first}) == 2


def test_old_success_replayed_while_failing_is_ignored() -> None:
    old_ok = result("s1", 0, ok=True)
    state, _ = run(fails(5, start=1))
    after, events = observe(state, old_ok, NOW)
    assert after is state
    assert events == []


def test_servers_do_not_share_state() -> None:
    mixed = [r for i in range(10) for r in (result("a", i, ok=False), result("b", i, ok=i % 2 == 0))]
    states: dict[str, ServerStreak] = {}
    events = []
    for r in mixed:
        states[r.server_id], new = observe(states.get(r.server_id, INITIAL), r, NOW)
        events.extend(new)
    assert [e.server_id for e in events] == ["a"]
