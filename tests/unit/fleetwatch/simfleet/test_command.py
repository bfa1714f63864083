"""`fleetwatch sim` and `fleetwatch up --fleet sim:N`: arguments, the plan, and the simulator child."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from fleetwatch.cli import build_parser, up_fleet
from fleetwatch.simfleet.command import load_scenario, sim_argv, start_sim_child
from fleetwatch.simfleet.layout import FleetLayout, SimFleetError
from fleetwatch.stack import Child


@pytest.mark.parametrize(
    ("argv", "plan"),
    [
        ([], (True, None)),
        (["--fleet", "demo"], (True, None)),
        (["--no-demo"], (False, None)),
        (["--fleet", "sim:1000"], (False, 1000)),
        (["--fleet", "sim:1m"], (False, 1_000_000)),
    ],
)
def test_up_runs_the_demo_fleet_unless_a_simulated_one_is_asked_for(
    argv: list[str], plan: tuple[bool, int | None]
) -> None:
    assert up_fleet(build_parser().parse_args(["up", *argv])) == plan


def test_up_refuses_a_bad_fleet(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--fleet", "sim:lots"])
    assert "expected demo or sim:N" in capsys.readouterr().err


def test_sim_command_line() -> None:
    args = build_parser().parse_args(["sim", "--servers", "500", "--seed", "3"])
    assert (args.servers, args.seed, args.scenario, args.ports) == (500, 3, None, 2)
    argv = sim_argv(500, Path("ready.json"), Path("s.yaml"), seed=3)
    assert argv[1:] == [
        "-m", "fleetwatch.cli", "sim", "--servers", "500", "--seed", "3",
        "--ready-file", "ready.json", "--scenario", "s.yaml",
    ]  # fmt: skip
    assert build_parser().parse_args(argv[3:]).ready_file == Path("ready.json")


def test_a_scenario_file_is_read_and_a_bad_one_named(tmp_path: Path) -> None:
    layout = FleetLayout(100)
    good = tmp_path / "good.yaml"
    good.write_text("- {what: down, customer: cust-0002}\n")
    assert load_scenario(layout, good, 0).rules[0].what == "down"
    assert len(load_scenario(layout, None, 0).rules) >= 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {what: down}\n")
    with pytest.raises(SimFleetError, match=r"bad\.yaml: rule 1"):
        load_scenario(layout, bad, 0)
    with pytest.raises(SimFleetError, match="cannot read"):
        load_scenario(layout, tmp_path / "missing.yaml", 0)


def test_the_simulator_child_says_where_it_listens_and_serves_there(tmp_path: Path) -> None:
    proc, log_file, info = start_sim_child(300, tmp_path)
    child = Child("sim", proc, log_file)
    try:
        assert info["servers"] == 300
        assert len(info["http"]) == 2
        with urllib.request.urlopen(f"{info['http'][1]}/s/5", timeout=5) as resp:
            assert json.loads(resp.read())["server_id"] == "sim-0000005"
    finally:
        child.stop()
    assert proc.returncode == 0  # SIGTERM ends it cleanly
