"""`fleetwatch stream` plus a progress probe: the production stream worker (streams.worker.run) unchanged,
with a thread that records when one of its counters starts moving and reaches the target.

Settings come from FLEETWATCH_* like `fleetwatch stream`; the probe from BENCH_PROGRESS_TARGET/_FILE and
BENCH_PROGRESS_COUNTER: `detector` (default: probe results seen by the detector agent,
fleetwatch_stream_results_total) or `engine` (case commands handled by the case-engine agent,
fleetwatch_engine_commands_total). For tuning experiments only, BENCH_FAUST_CONF='{"consumer_max_fetch_size":
4194304}' overrides faust.App settings that streams.app.create_app passes (never set by default runs).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import faust
from _progress import counter_total, from_env

from fleetcore.settings import Settings
from streams import detection, engine
from streams.worker import run

COUNTERS = {"detector": detection.RESULTS, "engine": engine.COMMANDS}
"""What BENCH_PROGRESS_COUNTER may name."""


def _override_faust_conf(overrides: dict[str, Any]) -> None:
    """Patch faust.App, which streams.app.create_app calls, to take these settings over its own."""
    original = faust.App

    def app(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **{**kwargs, **overrides})

    faust.App = app  # type: ignore[misc,assignment]


if __name__ == "__main__":
    conf = os.environ.get("BENCH_FAUST_CONF")
    if conf:
        _override_faust_conf(json.loads(conf))
    counter = COUNTERS[os.environ.get("BENCH_PROGRESS_COUNTER", "detector")]
    from_env(lambda: counter_total(counter))
    sys.argv = [sys.argv[0]]
    run(Settings())
