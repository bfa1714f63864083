"""In-process progress probe for measured child processes (the Faust worker, the Quix app).

A daemon thread reads a counter every few milliseconds and, once it reaches the target, writes the
time.monotonic() of the first non-zero reading and of the target reading to a JSON file (CLOCK_MONOTONIC is
system-wide on Linux, so the parent can compare it with its own clock). Reading a counter in-process
needs the GIL for a few bytecodes only: unlike scraping the HTTP metrics endpoint of a busy worker (which
took up to 0.6 s per scrape here), it resolves to a few milliseconds.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

ENV_TARGET = "BENCH_PROGRESS_TARGET"
ENV_FILE = "BENCH_PROGRESS_FILE"
STEP = float(os.environ.get("BENCH_PROGRESS_STEP", "0.1"))
"""Seconds between timeline points."""


def start_progress(read: Callable[[], float], target: float, path: Path, interval: float = 0.005) -> None:
    """Watch `read()` until it reaches `target`; then write {first, done, cpu, timeline} to `path`.

    `cpu` is the process's CPU time (all threads, user + system) between the two readings: unlike wall
    time it barely moves when other work on the machine competes for the cores.
    """

    def watch() -> None:
        first: float | None = None
        cpu_first = 0.0
        timeline: list[tuple[float, float]] = []
        last_mark = 0.0
        while True:
            value = read()
            now = time.monotonic()
            if value > 0 and first is None:
                first = now
                cpu_first = time.process_time()
            if first is not None and (now - last_mark >= STEP or value >= target):
                timeline.append((round(now - first, 3), value))
                last_mark = now
            if value >= target:
                tmp = path.with_suffix(".tmp")
                cpu = time.process_time() - cpu_first
                tmp.write_text(json.dumps({"first": first, "done": now, "cpu": cpu, "timeline": timeline}))
                tmp.rename(path)
                return
            time.sleep(interval)

    threading.Thread(target=watch, name="bench-progress", daemon=True).start()


def from_env(read: Callable[[], float]) -> None:
    """start_progress with the target and file named in the environment (no-op when unset)."""
    target = os.environ.get(ENV_TARGET)
    path = os.environ.get(ENV_FILE)
    if target and path:
        start_progress(read, float(target), Path(path))


def counter_total(counter: object) -> float:
    """Sum of every sample of a prometheus_client counter (all label sets), without HTTP."""
    total = 0.0
    for metric in counter.collect():  # type: ignore[attr-defined]
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                total += sample.value
    return total
