"""Memory of the whole local stack of `fleetwatch up` over time (budget: 2.5 GB RSS, no growth).

Runs `fleetwatch up` (its own broker on free ports, demo fleet, sink, stream, probe) in a temp data dir for
--minutes, samples the RSS of every process in its tree every --every seconds, and prints per-process
RSS at start/end, the peak total, and the growth of the total over the second half of the run (MB/hour).

    .venv/bin/python bench/stack_memory.py --minutes 60
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import print_machine

from fleetwatch.kafka_local import free_port

PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    kids = [int(x) for x in text.split()]
    return kids + [g for k in kids for g in _children(k)]


def _rss_mb(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 1e6
    except OSError:
        return 0.0


def _name(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    parts = [c.decode(errors="replace") for c in cmd if c]
    if parts and parts[0].endswith("java"):
        return "kafka broker (java)"
    if "fleetwatch.cli" in parts:
        return "fleetwatch " + parts[parts.index("fleetwatch.cli") + 1]
    return " ".join(parts[:3])[:40]


def sample(root: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for pid in [root, *_children(root)]:
        name = _name(pid)
        out[name] = out.get(name, 0.0) + _rss_mb(pid)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=30.0)
    args = parser.parse_args()
    print_machine(f"stack memory: fleetwatch up for {args.minutes:g} min, sampled every {args.every:g} s")
    data = Path(tempfile.mkdtemp(prefix="fw-mem-"))
    env = dict(os.environ)
    env.update(
        {
            "FLEETWATCH_DATA_DIR": str(data),
            "FLEETWATCH_LOCAL_KAFKA_PORT": str(free_port()),
            "FLEETWATCH_LOCAL_KAFKA_CONTROLLER_PORT": str(free_port()),
            "FLEETWATCH_PROBE_METRICS_PORT": str(free_port()),
            "FLEETWATCH_STREAM_METRICS_PORT": str(free_port()),
            "FLEETWATCH_STREAM_WEB_PORT": str(free_port()),
            "FLEETWATCH_SINK_HTTP_PORT": str(free_port()),
        }
    )
    env.pop("FLEETWATCH_KAFKA_BOOTSTRAP", None)
    log = (data / "up.out").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "fleetwatch.cli", "up"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    samples: list[tuple[float, dict[str, float]]] = []
    start = time.monotonic()
    try:
        while not (data / "up.out").read_text().count("monitoring."):
            if up.poll() is not None:
                raise SystemExit((data / "up.out").read_text())
            time.sleep(0.5)
        end = start + args.minutes * 60
        while time.monotonic() < end:
            s = sample(up.pid)
            samples.append((time.monotonic() - start, s))
            total = sum(s.values())
            print(
                f"  t={samples[-1][0] / 60:6.1f} min  total {total:7.1f} MB  "
                + "  ".join(f"{k}={v:.0f}" for k, v in sorted(s.items())),
                flush=True,
            )
            time.sleep(args.every)
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=120)
    first, last = samples[0][1], samples[-1][1]
    totals = [(t, sum(s.values())) for t, s in samples]
    half = [x for x in totals if x[0] >= totals[-1][0] / 2]
    slope = 0.0
    if len(half) >= 2:
        n = len(half)
        mt = sum(t for t, _ in half) / n
        mv = sum(v for _, v in half) / n
        den = sum((t - mt) ** 2 for t, _ in half) or 1.0
        slope = sum((t - mt) * (v - mv) for t, v in half) / den * 3600
    print()
    print(f"{'process':<28}{'start MB':>10}{'end MB':>10}")
    for name in sorted(last):
        print(f"{name:<28}{first.get(name, 0):>10.0f}{last[name]:>10.0f}")
    print(f"{'total':<28}{sum(first.values()):>10.0f}{sum(last.values()):>10.0f}")
    print(
        f"peak total {max(v for _, v in totals):.0f} MB (budget 2500 MB); "
        f"growth over the second half {slope:+.1f} MB/hour; exit code of up: {up.returncode}"
    )


if __name__ == "__main__":
    main()
