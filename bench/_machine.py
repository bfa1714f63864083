"""The machine a benchmark ran on: CPU model, cores, RAM, Python, kernel (printed before every result)."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def load() -> str:
    """The 1/5/15-minute load averages: other work on the box skews every figure."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min load average)"


def machine() -> dict[str, str]:
    """Facts about this machine and the key package versions."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} logical ({usable} usable)",
        "ram": f"{_ram_gib():.1f} GiB",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": f"{platform.system()} {platform.release()}",
        "load": load(),
        "packages": ", ".join(
            f"{p} {_version(p)}"
            for p in (
                "faust-streaming",
                "aiokafka",
                "quixstreams",
                "confluent-kafka",
                "kafka-python",
                "chdb",
                "clickhouse-connect",
                "pydantic",
                "orjson",
            )
        ),
    }


def print_machine(title: str) -> None:
    """Print the benchmark's title and the machine block."""
    print(f"== {title}")
    for key, value in machine().items():
        print(f"   {key:<9} {value}")
    print()
