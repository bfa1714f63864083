"""`fleetwatch sim`: serve a simulated fleet in the foreground; and the child `up --fleet sim:N` starts.

`fleetwatch sim --servers N [--scenario FILE] [--seed S]` prints one JSON line saying where the fleet
listens (also written to `--ready-file`), then serves until Ctrl-C or SIGTERM. `up` runs it as a child
process (its own core) and publishes the inventory from that line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetwatch.simfleet.inventory import Endpoints, publish_sim_inventory
from fleetwatch.simfleet.layout import FleetLayout, SimFleetError
from fleetwatch.simfleet.scenario import DEFAULT_SCENARIO, Scenario
from fleetwatch.simfleet.server import TIMEOUT_S, SimFleet
from schemas.topics import Topics


def load_scenario(layout: FleetLayout, path: Path | None, seed: int) -> Scenario:
    """The scenario of FILE (YAML), or the default one."""
    if path is None:
        return Scenario.from_yaml(DEFAULT_SCENARIO, layout, seed, "default scenario")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SimFleetError(f"{path}: cannot read: {exc}") from exc
    return Scenario.from_yaml(text, layout, seed, str(path))


def register(sub: Any) -> None:
    """Add `fleetwatch sim` to the CLI."""
    p = sub.add_parser(
        "sim",
        help="serve a simulated fleet (up to 1,000,000 servers) on loopback in the foreground",
        description=__doc__,
    )
    p.add_argument("--servers", type=int, required=True, help="how many servers (1 to 1,000,000)")
    p.add_argument("--scenario", type=Path, default=None, help="YAML scenario (default: the built-in one)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scenario's picks (default 0)")
    p.add_argument("--host", default="127.0.0.1", help="http bind address (default 127.0.0.1)")
    p.add_argument("--ports", type=int, default=2, help="http ports, servers spread over them (default 2)")
    p.add_argument("--port", type=int, default=0, help="first http port (default: free ports)")
    p.add_argument("--tcp-port", type=int, default=0, help="port of the tcp servers (default: a free one)")
    p.add_argument("--tcp-fraction", type=float, default=0.01, help="share of tcp servers (default 0.01)")
    p.add_argument("--timeout", type=float, default=TIMEOUT_S, help=f"probe timeout (default {TIMEOUT_S:g})")
    p.add_argument("--ready-file", type=Path, default=None, help="also write the JSON line to this file")
    p.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    layout = FleetLayout(args.servers, tcp_fraction=args.tcp_fraction)
    scenario = load_scenario(layout, args.scenario, args.seed)
    ports = [args.port + n if args.port else 0 for n in range(max(1, args.ports))]
    fleet = SimFleet(
        scenario, host=args.host, ports=ports, tcp_port=args.tcp_port, timeout_s=args.timeout, seed=args.seed
    )
    asyncio.run(serve(fleet, args.ready_file))
    return 0


async def serve(fleet: SimFleet, ready_file: Path | None) -> None:
    """Serve until SIGINT/SIGTERM; say where on stdout (one JSON line) and in `ready_file`."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with fleet:
        line = json.dumps(fleet.info())
        print(line, flush=True)
        if ready_file is not None:
            tmp = ready_file.with_suffix(".tmp")
            tmp.write_text(line)
            tmp.replace(ready_file)  # whole or absent: the reader never sees half a line
        await stop.wait()


def sim_argv(servers: int, ready_file: Path, scenario: Path | None = None, seed: int = 0) -> list[str]:
    """The command line of the simulator child `up --fleet sim:N` starts."""
    argv = [sys.executable, "-m", "fleetwatch.cli", "sim", "--servers", str(servers)]
    argv += ["--seed", str(seed), "--ready-file", str(ready_file)]
    if scenario is not None:
        argv += ["--scenario", str(scenario)]
    return argv


def start_sim_child(
    servers: int, data_dir: Path, timeout_s: float = 120.0, on_wait: Callable[[], None] | None = None
) -> tuple[subprocess.Popen[bytes], Path, dict[str, Any]]:
    """Start `fleetwatch sim` as a child (own session) and wait for its JSON line: (process, log, info)."""
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    ready = data_dir / "sim-fleet.json"
    ready.unlink(missing_ok=True)
    log_file = logs / "sim.log"
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            sim_argv(servers, ready),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=dict(os.environ),
        )
    deadline = time.monotonic() + timeout_s
    while not ready.exists():
        if proc.poll() is not None:
            raise SimFleetError(f"the simulated fleet exited with {proc.returncode}; see {log_file}")
        if time.monotonic() > deadline:
            with contextlib.suppress(OSError):
                proc.kill()
            raise SimFleetError(f"the simulated fleet did not start within {timeout_s:.0f} s; see {log_file}")
        if on_wait is not None:
            on_wait()
        time.sleep(0.1)
    return proc, log_file, json.loads(ready.read_text())


def up_sim_fleet(
    bootstrap: str, topics: Topics, servers: int, data_dir: Path, say: Callable[[str], None]
) -> Any:
    """`up --fleet sim:N`: the simulator child, its inventory published (stale servers pruned). Returns the
    child (`stop()` ends it)."""
    from fleetwatch.stack import Child

    say(f"simulated fleet: starting {servers:,} servers (fleetwatch sim, own process)")
    proc, log_file, info = start_sim_child(servers, data_dir)
    child = Child("sim", proc, log_file)
    try:
        layout = FleetLayout(servers, **info["layout"])
        sent, seconds = publish_sim_inventory(bootstrap, topics, layout, Endpoints.from_info(info))
    except BaseException:
        child.stop()
        raise
    say(
        f"simulated fleet: {servers:,} servers on {', '.join(info['http'])} (tcp port {info['tcp_port']}), "
        f"pid {proc.pid}, log {log_file}; inventory of {sent:,} published in {seconds:.1f} s"
    )
    return child
