"""The pure scenario: which simulated server does what at t (time passed in), and its ground truth."""

from __future__ import annotations

import itertools

import pytest

from fleetwatch.simfleet.layout import FleetLayout, SimFleetError
from fleetwatch.simfleet.scenario import DEFAULT_SCENARIO, Mode, Scenario, parse_duration

LAYOUT = FleetLayout(10_000, per_customer=8, sites=16)
SMALL = FleetLayout(2_000, per_customer=8, sites=16)


def scenario(text: str, seed: int = 0, layout: FleetLayout = LAYOUT) -> Scenario:
    return Scenario.from_yaml(text, layout, seed)


def test_durations() -> None:
    assert parse_duration(90, "at") == 90
    assert parse_duration("90s", "at") == 90
    assert parse_duration("1.5m", "at") == 90
    assert parse_duration("2h", "at") == 7200
    assert parse_duration("250ms", "at") == 0.25
    for bad in ("soon", "-5s", True):
        with pytest.raises(SimFleetError):
            parse_duration(bad, "at")


def test_customer_down_hits_exactly_that_customer_in_its_window() -> None:
    s = scenario("- {at: 60s, for: 10m, what: customer-down, customer: cust-0007}")
    members = set(range(56, 64))
    for i in (55, 56, 63, 64):
        assert s.mode_at(i, 59.9) is Mode.UP
        assert s.mode_at(i, 60.0) is (Mode.DOWN if i in members else Mode.UP)
        assert s.mode_at(i, 659.9) is (Mode.DOWN if i in members else Mode.UP)
        assert s.mode_at(i, 660.0) is Mode.UP


def test_site_down_hits_every_server_of_the_site() -> None:
    s = scenario("- {what: site-down, site: site-3, for: 5m}")
    down = {i for i in range(LAYOUT.servers) if s.mode_at(i, 1.0) is Mode.DOWN}
    assert down == {i for i in range(LAYOUT.servers) if LAYOUT.site_of(i) == 3}
    assert len(down) == 78 * 8  # 1,250 customers over 16 sites: site-3 has 78
    assert all(s.mode_at(i, 300.0) is Mode.UP for i in down)


def test_fractions_and_counts_are_drawn_from_the_seed() -> None:
    text = "- {what: '503', servers: 0.01}\n- {what: hang, servers: 7}"

    def hit(sc: Scenario, mode: Mode) -> set[int]:
        return {i for i in range(LAYOUT.servers) if sc.mode_at(i, 0) is mode}

    a, b, c = scenario(text, seed=1), scenario(text, seed=1), scenario(text, seed=2)
    assert len(hit(a, Mode.STATUS_503) | hit(a, Mode.HANG)) >= 100
    assert hit(a, Mode.STATUS_503) == hit(b, Mode.STATUS_503)
    assert hit(a, Mode.STATUS_503) != hit(c, Mode.STATUS_503)
    assert len(hit(a, Mode.HANG)) == 7


def test_flap_fails_for_its_duty_of_every_period_at_each_servers_own_phase() -> None:
    s = scenario("- {what: flap, servers: [10, 11, 12], period: 90s, duty: 0.25, mode: '503'}")
    for i in (10, 11, 12):
        samples = [s.mode_at(i, t / 10) for t in range(0, 9000)]  # ten periods, every 0.1 s
        assert samples.count(Mode.STATUS_503) == pytest.approx(2250, abs=20)
        assert set(samples) == {Mode.UP, Mode.STATUS_503}
    assert s.mode_at(13, 5.0) is Mode.UP
    phases = {next(t for t in range(900) if s.mode_at(i, t / 10) is Mode.STATUS_503) for i in (10, 11, 12)}
    assert len(phases) > 1  # not all in step


def test_a_later_rule_wins_where_rules_overlap() -> None:
    s = scenario("- {what: down, customer: cust-0001}\n- {at: 10s, for: 10s, what: slow, servers: [9]}")
    assert s.mode_at(9, 5) is Mode.DOWN
    assert s.mode_at(9, 15) is Mode.SLOW
    assert s.mode_at(9, 25) is Mode.DOWN
    assert s.rule_at(9, 15) is s.rules[1]


def test_outages_are_the_ground_truth_of_mode_at() -> None:
    s = scenario(
        """
- {at: 60s, for: 10m, what: customer-down, customer: [cust-0007, 9]}
- {at: 2m, for: 3m, what: site-down, site: site-3}
- {at: 1m, for: 15m, what: "503", servers: 0.002}
- {at: 200s, for: 100s, what: hang, servers: [56, 57, 1500]}
- {what: flap, servers: 0.001, period: 90s, duty: 0.3}
- {what: slow, servers: 5}
""",
        seed=4,
        layout=SMALL,
    )
    start, end = 30.0, 900.0
    outages = s.outages(start, end)
    by_server: dict[int, list[tuple[float, float, Mode]]] = {}
    for o in outages:
        assert start <= o.start_s < o.end_s <= end
        assert o.server_id == SMALL.server_id(o.index)
        assert o.customer_id == SMALL.customer_id(SMALL.customer_of(o.index))
        by_server.setdefault(o.index, []).append((o.start_s, o.end_s, o.mode))
    site_down = [
        o for o in outages if (o.site, o.mode, o.start_s, o.end_s) == ("site-3", Mode.DOWN, 120, 300)
    ]
    assert len(site_down) > 100
    assert any(o.mode is Mode.SLOW and not o.failing for o in outages)
    affected = set(by_server)
    # every server that is not up at some sampled moment has an interval covering it, and vice versa
    for i in range(SMALL.servers):
        for step in range(31, 900, 7):
            t = step + 0.5
            mode = s.mode_at(i, t)
            covering = [m for a, b, m in by_server.get(i, []) if a <= t < b]
            assert covering == ([] if mode is Mode.UP else [mode]), (i, t, mode, covering)
        if i not in affected:
            continue
        intervals = sorted(by_server[i])
        for (_, b, m1), (a2, _, m2) in itertools.pairwise(intervals):
            assert b < a2 or m1 is not m2  # merged: no two touching intervals of the same mode


def test_customer_down_shows_as_one_interval_per_server() -> None:
    s = scenario("- {at: 60s, for: 10m, what: customer-down, customer: cust-0007}")
    outages = s.outages(0, 3600)
    assert [(o.index, o.start_s, o.end_s, o.mode) for o in outages] == [
        (i, 60.0, 660.0, Mode.DOWN) for i in range(56, 64)
    ]
    assert s.outages(700, 800) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- {what: explode, servers: 1}", "what must be one of"),
        ("- {what: down}", "exactly one of servers, customer, site"),
        ("- {what: down, servers: 1, site: 1}", "exactly one of"),
        ("- {what: customer-down, servers: 1}", "customer-down needs `customer`"),
        ("- {what: flap, servers: 1}", "flap needs a `period`"),
        ("- {what: flap, servers: 1, period: 0}", "period must be"),
        ("- {what: down, customer: cust-99999}", "no customer"),
        ("- {what: down, servers: [sim-0000001, sim-0010000]}", "no server"),
        ("- {what: down, servers: 1, at: soon}", "at: not a duration"),
        ("- {what: down, servers: 1, colour: red}", "unknown keys"),
        ("- 5", "must be a mapping"),
        ("what: down", "expected a list of rules"),
        ("- [unclosed", "not valid YAML"),
    ],
)
def test_bad_scenarios_say_which_rule_and_why(text: str, message: str) -> None:
    with pytest.raises(SimFleetError, match=message):
        scenario("- {what: slow, servers: 1}\n" + text if text.startswith("- {") else text)


def test_a_bad_rule_is_named_by_its_number() -> None:
    with pytest.raises(SimFleetError, match="rule 2: what must be"):
        scenario("- {what: slow, servers: 1}\n- {what: nope, servers: 1}")


@pytest.mark.parametrize("servers", [1, 9, 1000, 1_000_000])
def test_the_default_scenario_fits_any_fleet(servers: int) -> None:
    s = Scenario.from_yaml(DEFAULT_SCENARIO, FleetLayout(servers), 0)
    assert {r.what for r in s.rules} >= {"customer-down", "site-down", "503", "hang", "flap", "slow"}
