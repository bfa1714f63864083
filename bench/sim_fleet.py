"""The simulated fleet's costs: simulator RSS by fleet size, requests/s it serves on one core to a bare
aiohttp client loop, and the time to publish a 1,000,000-server inventory.

Each size runs `fleetwatch sim --servers N` as its own process (as `fleetwatch up --fleet sim:N` does); its
RSS is read from /proc once it listens, and again after the request loop. The request loop is a bare aiohttp
client (one connection per request, as the probe worker does, `--concurrency` in flight) against the largest
fleet with an all-up scenario, the simulator pinned to one core and the client to another when there are
two. The publish step starts a private Kafka broker (or uses `--bootstrap`).

    .venv/bin/python bench/sim_fleet.py                      # 10k, 100k, 1M; 15 s loop; publish 1M
    .venv/bin/python bench/sim_fleet.py --sizes 10000 --publish 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import broker, log, stop_process, table, workdir
from _machine import print_machine

TICK = os.sysconf("SC_CLK_TCK")


def _status(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB -> MB
    return 0.0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def start_sim(servers: int, tmp: Path, scenario: Path | None, cpu: int | None) -> tuple[Any, dict[str, Any]]:
    ready = tmp / f"sim-{servers}.json"
    argv = [
        sys.executable,
        "-m",
        "fleetwatch.cli",
        "sim",
        "--servers",
        str(servers),
        "--ready-file",
        str(ready),
    ]
    if scenario is not None:
        argv += ["--scenario", str(scenario)]
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    if cpu is not None:
        os.sched_setaffinity(proc.pid, {cpu})
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() - started > 300:
            raise SystemExit(f"the simulator of {servers} servers did not start")
        time.sleep(0.05)
    info = json.loads(ready.read_text())
    info["start_s"] = time.monotonic() - started
    return proc, info


async def request_loop(info: dict[str, Any], seconds: float, concurrency: int) -> tuple[int, int, float]:
    """(answers, errors, seconds): GET random servers' status URLs for `seconds`, `concurrency` at a time."""
    import aiohttp

    from fleetwatch.simfleet.inventory import Endpoints
    from fleetwatch.simfleet.layout import FleetLayout

    layout = FleetLayout(int(info["servers"]), **info["layout"])
    endpoints = Endpoints.from_info(info)
    rng = random.Random(1)
    http = [i for i in (rng.randrange(layout.servers) for _ in range(20_000)) if not layout.is_tcp(i)]
    urls = [endpoints.target(layout, i) for i in http]
    done = errors = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(n: int) -> None:
            nonlocal done, errors
            k = n
            while time.monotonic() < deadline:
                try:
                    async with session.get(urls[k % len(urls)]) as resp:
                        await resp.read()
                        done += resp.status == 200
                        errors += resp.status != 200
                except (aiohttp.ClientError, OSError):
                    errors += 1
                k += concurrency

        started = time.monotonic()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        return done, errors, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000", help="fleet sizes (comma-separated)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the request loop")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight in the loop")
    parser.add_argument("--publish", type=int, default=1_000_000, help="inventory size to publish (0: skip)")
    parser.add_argument("--bootstrap", default=None, help="an existing Kafka broker (default: a private one)")
    args = parser.parse_args()
    print_machine("simulated fleet: memory, requests/s, inventory publish")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    cores = sorted(os.sched_getaffinity(0))
    sim_cpu, client_cpu = (cores[0], cores[1]) if len(cores) > 1 else (None, None)
    rows = []
    with workdir("bench-sim-") as tmp:
        all_up = tmp / "all-up.yaml"
        all_up.write_text("[]\n")
        for n, servers in enumerate(sizes):
            last = n == len(sizes) - 1
            proc, info = start_sim(servers, tmp, all_up if last else None, sim_cpu)
            try:
                rss = _status(proc.pid, "VmRSS")
                row: list[Any] = [f"{servers:,}", info["tcp_servers"], info["start_s"], rss]
                if last:
                    if client_cpu is not None:
                        os.sched_setaffinity(0, {client_cpu})
                    cpu0, client0 = _cpu_s(proc.pid), time.process_time()
                    ok, errors, took = asyncio.run(request_loop(info, args.seconds, args.concurrency))
                    sim_cpu_s, client_cpu_s = _cpu_s(proc.pid) - cpu0, time.process_time() - client0
                    os.sched_setaffinity(0, set(cores))
                    rss_after = _status(proc.pid, "VmRSS")
                    sim_pct, client_pct = 100 * sim_cpu_s / took, 100 * client_cpu_s / took
                    print(
                        f"request loop against {servers:,} servers: {ok:,} answers ({errors} errors) in "
                        f"{took:.1f} s = {ok / took:,.0f} req/s, concurrency {args.concurrency}, one "
                        f"connection per request; simulator CPU {sim_pct:.0f} % of a core, client "
                        f"{client_pct:.0f} %; simulator RSS {rss:.0f} -> {rss_after:.0f} MB"
                    )
                rows.append(row)
            finally:
                stop_process(proc)
        print(table(["servers", "tcp listeners", "start s", "RSS MB"], rows))
        if args.publish:
            publish(tmp, args.bootstrap, args.publish)


def publish(tmp: Path, bootstrap: str | None, servers: int) -> None:
    from fleetcore.kafka_admin import ensure_topics
    from fleetwatch.simfleet.inventory import Endpoints, publish_sim_inventory
    from fleetwatch.simfleet.layout import FleetLayout
    from schemas.topics import Topics

    with broker(tmp, bootstrap) as kafka:
        topics = Topics(prefix=f"bench-sim-{os.getpid()}.")
        ensure_topics(kafka, topics)
        layout = FleetLayout(servers)
        endpoints = Endpoints("127.0.0.1", (40001, 40002), 40100, 5.0)
        log(f"publishing {servers:,} inventory records")
        sent, seconds = publish_sim_inventory(kafka, topics, layout, endpoints, prune=True)
        print(f"inventory publish: {sent:,} records in {seconds:.1f} s = {sent / seconds:,.0f} records/s")


if __name__ == "__main__":
    main()
