"""Redundancy-aware severity: Sev2 while a partner serves, Sev1 (and an upgrade) when the group is down."""

from __future__ import annotations

from datetime import timedelta

import pytest

from schemas.cases import Severity, monitor_case_id
from schemas.commands import CaseCommand, CommandType
from schemas.probes import ProbeResult
from streams.detector import ServerStreak, StreakState
from streams.redundancy import DEFAULT_PARTNER_HORIZON, Detector
from tests.helpers import T0, result

NOW = T0 + timedelta(days=1)


def res(server: str, n: int, ok: bool, backup_of: str | None = None) -> ProbeResult:
    """The n-th result (minute n) of a server; a secondary names its primary."""
    return result(server, n, ok).model_copy(update={"backup_of": backup_of})


def p(n: int, ok: bool) -> ProbeResult:
    return res("p", n, ok)


def s(n: int, ok: bool) -> ProbeResult:
    return res("s", n, ok, backup_of="p")


class Harness:
    """A detector over an in-memory table, written the way the agent writes it (changed rows only)."""

    def __init__(self, redundancy_aware: bool = True, **kwargs: timedelta) -> None:
        self.detector = Detector(10, redundancy_aware, **kwargs)
        self.table: dict[str, ServerStreak] = {}
        self.commands: list[CaseCommand] = []
        self.writes: list[str] = []

    def feed(self, *results: ProbeResult, planned: bool = False) -> list[CaseCommand]:
        out: list[CaseCommand] = []
        for r in results:
            changed, commands = self.detector.observe(self.table.get, r, NOW, planned)
            self.table.update(changed)
            self.writes.extend(changed)
            out.extend(commands)
        self.commands.extend(out)
        return out


def opens(commands: list[CaseCommand]) -> list[CaseCommand]:
    return [c for c in commands if c.type is CommandType.OPEN]


def test_off_every_case_opens_sev1_and_nothing_is_indexed() -> None:
    h = Harness(redundancy_aware=False)
    h.feed(s(0, True))
    commands = h.feed(*(p(n, False) for n in range(1, 11)))
    assert [(c.type, c.severity) for c in commands] == [(CommandType.OPEN, Severity.SEV1)]
    assert commands[0].reason == "p down: 10 consecutive failed status requests"
    assert h.detector.partners("p") == []
    assert h.table["p"].severity is Severity.SEV1
    h.detector.learn("s", ServerStreak(backup_of="p"))
    assert h.detector.partners("p") == []


def test_off_rows_do_not_carry_backup_of_and_healthy_servers_write_nothing() -> None:
    h = Harness(redundancy_aware=False)
    h.feed(s(0, True), p(0, True), s(1, False))
    assert h.writes == ["s"]
    assert h.table["s"].backup_of is None


def test_primary_down_while_its_secondary_serves_opens_sev2() -> None:
    h = Harness()
    h.feed(s(0, True))
    commands = h.feed(*(p(n, False) for n in range(1, 11)))
    case_id = monitor_case_id("p", p(1, False).started_at)
    assert len(commands) == 1
    opened = commands[0]
    assert opened.type is CommandType.OPEN
    assert opened.command_id == f"open:{case_id}"
    assert opened.severity is Severity.SEV2
    assert opened.title == "p down: 10 consecutive failed status requests"
    assert (
        opened.reason
        == "p down: 10 consecutive failed status requests; a single server: its partner s serves"
    )
    assert opened.details["serving_partners"] == "s"
    assert opened.details["failures"] == 10
    assert h.table["p"].state is StreakState.OPEN
    assert h.table["p"].severity is Severity.SEV2


def test_secondary_down_while_its_primary_serves_opens_sev2() -> None:
    h = Harness()
    h.feed(p(0, True))
    commands = h.feed(*(s(n, False) for n in range(1, 11)))
    assert [(c.type, c.severity) for c in commands] == [(CommandType.OPEN, Severity.SEV2)]
    assert commands[0].reason.endswith("; a single server: its partner p serves")
    assert h.table["s"] == ServerStreak(
        state=StreakState.OPEN,
        failures=10,
        first_failure_at=s(1, False).started_at,
        last_change_at=s(10, False).started_at,
        case_id=commands[0].case_id,
        severity=Severity.SEV2,
        backup_of="p",
    )


def test_partner_failing_below_the_threshold_still_serves() -> None:
    h = Harness()
    h.feed(*(s(n, False) for n in range(0, 9)))
    commands = h.feed(*(p(n, False) for n in range(0, 10)))
    assert [c.severity for c in opens(commands)] == [Severity.SEV2]


def test_partner_failing_too_upgrades_the_open_sev2_case_to_sev1() -> None:
    h = Harness()
    h.feed(s(0, True))
    h.feed(*(p(n, False) for n in range(1, 11)))
    p_case = h.table["p"].case_id
    assert p_case is not None
    commands = h.feed(*(s(n, False) for n in range(11, 21)))
    s_case = monitor_case_id("s", s(11, False).started_at)
    assert [c.type for c in commands] == [CommandType.OPEN, CommandType.CHANGE_SEVERITY]
    opened, upgrade = commands
    assert opened.case_id == s_case
    assert opened.severity is Severity.SEV1
    assert opened.reason == (
        "s down: 10 consecutive failed status requests; no partner serves: p is down (case open)"
    )
    assert upgrade == CaseCommand(
        command_id=f"pair-sev1:{p_case}",
        case_id=p_case,
        type=CommandType.CHANGE_SEVERITY,
        at=NOW,
        actor="monitor",
        severity=Severity.SEV1,
        server_id="p",
        reason="p is down and its partner s is down too: no server serves; Sev1 from now",
        details={"partner_server_id": "s"},
    )
    assert h.table["p"].severity is Severity.SEV1
    assert h.table["s"].severity is Severity.SEV1
    assert h.writes[-1] == "p"  # the partner's row is written too, with its new severity


def test_both_failing_interleaved_the_first_opens_sev2_the_second_sev1() -> None:
    h = Harness()
    h.feed(*(r for n in range(10) for r in (s(n, False), p(n, False))))
    assert [(c.type, c.server_id, c.severity) for c in h.commands] == [
        (CommandType.OPEN, "s", Severity.SEV2),
        (CommandType.OPEN, "p", Severity.SEV1),
        (CommandType.CHANGE_SEVERITY, "s", Severity.SEV1),
    ]
    assert h.commands[2].case_id == h.table["s"].case_id
    assert h.commands[2].command_id == f"pair-sev1:{h.table['s'].case_id}"


def test_an_open_sev1_partner_is_not_upgraded_again() -> None:
    h = Harness()
    h.feed(*(p(n, False) for n in range(0, 10)))  # s never heard from: p opens Sev1 (fail-safe)
    assert h.table["p"].severity is Severity.SEV1
    commands = h.feed(*(s(n, False) for n in range(10, 20)))
    assert [(c.type, c.severity) for c in commands] == [(CommandType.OPEN, Severity.SEV1)]


def test_replays_after_the_upgrade_send_nothing() -> None:
    h = Harness()
    h.feed(s(0, True))
    h.feed(*(p(n, False) for n in range(1, 11)))
    h.feed(*(s(n, False) for n in range(11, 21)))
    before = dict(h.table)
    assert h.feed(*(s(n, False) for n in range(11, 21)), *(p(n, False) for n in range(1, 11))) == []
    assert h.table == before


def test_replay_from_an_empty_table_sends_the_same_command_ids() -> None:
    def scenario() -> list[str]:
        h = Harness()
        h.feed(s(0, True))
        h.feed(*(p(n, False) for n in range(1, 11)))
        h.feed(*(s(n, False) for n in range(11, 21)))
        return [c.command_id for c in h.commands]

    first = scenario()
    assert len(first) == 3
    assert scenario() == first


def test_a_partner_never_heard_from_does_not_serve() -> None:
    h = Harness()
    commands = h.feed(*(s(n, False) for n in range(0, 10)))  # its primary p: no result since start
    assert [(c.type, c.severity) for c in commands] == [(CommandType.OPEN, Severity.SEV1)]
    assert commands[0].details["partners_down"] == "p was not heard from recently"


def test_a_partner_heard_from_too_long_ago_does_not_serve() -> None:
    h = Harness(partner_horizon=timedelta(minutes=30))
    h.feed(p(0, True))
    late = h.feed(*(s(n, False) for n in range(22, 32)))  # the 10th failure at minute 31: 31 > 30
    assert [c.severity for c in opens(late)] == [Severity.SEV1]
    h = Harness(partner_horizon=timedelta(minutes=30))
    h.feed(p(0, True))
    in_time = h.feed(*(s(n, False) for n in range(21, 31)))  # the 10th at minute 30: still serving
    assert [c.severity for c in opens(in_time)] == [Severity.SEV2]


def test_a_partner_in_planned_maintenance_does_not_serve() -> None:
    h = Harness()
    h.feed(p(0, True))
    h.feed(p(1, False), planned=True)
    commands = h.feed(*(s(n, False) for n in range(1, 11)))
    assert [(c.type, c.severity) for c in commands] == [(CommandType.OPEN, Severity.SEV1)]
    assert commands[0].details["partners_down"] == "p is down for planned maintenance"


def test_a_partner_going_down_for_maintenance_upgrades_the_open_sev2_case() -> None:
    h = Harness()
    h.feed(s(0, True))
    h.feed(*(p(n, False) for n in range(1, 11)))
    p_case = h.table["p"].case_id
    commands = h.feed(s(11, False), s(12, False), planned=True)  # only the first planned failure acts
    assert [(c.type, c.command_id, c.severity) for c in commands] == [
        (CommandType.CHANGE_SEVERITY, f"pair-sev1:{p_case}", Severity.SEV1)
    ]
    assert commands[0].reason == (
        "p is down and its partner s is down for planned maintenance: no server serves; Sev1 from now"
    )
    assert h.table["p"].severity is Severity.SEV1
    assert not any(c.type is CommandType.OPEN for c in h.commands[1:])


def test_a_group_of_three_stays_sev2_while_one_member_serves() -> None:
    h = Harness()
    h.feed(res("s2", 0, True, backup_of="p"), s(0, True))
    h.feed(*(p(n, False) for n in range(1, 11)))
    assert h.table["p"].severity is Severity.SEV2
    # s goes into maintenance: s2 still serves, no upgrade
    assert h.feed(s(11, False), planned=True) == []
    # s2 fails too: nobody serves any more; s2 opens Sev1 and p's case is upgraded
    commands = h.feed(*(res("s2", n, False, backup_of="p") for n in range(11, 21)))
    assert [(c.type, c.server_id, c.severity) for c in commands] == [
        (CommandType.OPEN, "s2", Severity.SEV1),
        (CommandType.CHANGE_SEVERITY, "p", Severity.SEV1),
    ]
    assert h.detector.partners("s2") == ["p", "s"]


def test_recovery_passes_through_and_clears_the_severity() -> None:
    h = Harness()
    h.feed(s(0, True))
    h.feed(*(p(n, False) for n in range(1, 11)))
    commands = h.feed(p(11, True))
    assert [c.type for c in commands] == [CommandType.SERVER_RECOVERED]
    assert commands[0].command_id == f"recovered:{monitor_case_id('p', p(1, False).started_at)}"
    assert h.table["p"] == ServerStreak(last_change_at=p(11, True).started_at)


def test_the_secondary_index_is_learned_from_results() -> None:
    h = Harness()
    h.feed(p(0, True))
    assert h.detector.partners("p") == []
    h.feed(s(0, True))
    assert h.detector.partners("p") == ["s"]
    assert h.detector.partners("s") == ["p"]
    h.feed(res("s", 1, True, backup_of="q"))  # the inventory moved s to back up q
    assert h.detector.partners("p") == []
    assert h.detector.partners("q") == ["s"]
    h.feed(res("s", 2, True))  # s is a primary now
    assert h.detector.partners("q") == []
    assert h.detector.partners("s") == []
    assert h.writes == []  # healthy servers write nothing, pairs or not


def test_the_index_holds_one_entry_per_secondary() -> None:
    h = Harness()
    for n in range(50):
        h.feed(*(res(f"s{i}", n, True, backup_of=f"p{i % 5}") for i in range(20)))
    assert sum(len(h.detector.partners(f"p{i}")) for i in range(5)) == 20
    assert len(h.detector._primary_of) == 20
    assert len(h.detector._secondaries) == 5
    assert len(h.detector._seen) == 20


def test_written_rows_carry_backup_of_and_teach_a_restarted_detector() -> None:
    h = Harness()
    h.feed(p(0, True))
    h.feed(*(s(n, False) for n in range(1, 11)))
    assert h.table["s"].backup_of == "p"
    assert h.table["s"].severity is Severity.SEV2
    s_case = h.table["s"].case_id
    restarted = Harness()
    restarted.table = dict(h.table)
    for server_id, row in restarted.table.items():
        restarted.detector.learn(server_id, row)
    assert restarted.detector.partners("p") == ["s"]
    commands = restarted.feed(*(p(n, False) for n in range(11, 21)))
    assert [(c.type, c.server_id, c.severity) for c in commands] == [
        (CommandType.OPEN, "p", Severity.SEV1),
        (CommandType.CHANGE_SEVERITY, "s", Severity.SEV1),
    ]
    assert commands[1].command_id == f"pair-sev1:{s_case}"


def test_without_learning_a_restarted_detector_cannot_upgrade_the_partner() -> None:
    h = Harness()
    h.feed(p(0, True))
    h.feed(*(s(n, False) for n in range(1, 11)))
    restarted = Harness()
    restarted.table = dict(h.table)
    commands = restarted.feed(*(p(n, False) for n in range(11, 21)))
    assert [c.type for c in commands] == [CommandType.OPEN]


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        Detector(0, True)
    with pytest.raises(ValueError, match="horizon"):
        Detector(10, True, partner_horizon=timedelta(0))
    assert Detector(10, True).partner_horizon == DEFAULT_PARTNER_HORIZON
