"""`fleetwatch stream` plus a progress probe: the production stream worker (streams.worker.run) unchanged,
with a thread that records when the detector's results counter starts moving and reaches the target.

Settings come from FLEETWATCH_* like `fleetwatch stream`; the probe from BENCH_PROGRESS_TARGET/_FILE.
For tuning experiments only, BENCH_FAUST_CONF='{"consumer_max_fetch_size": 4194304}' overrides faust.App
settings that streams.app.create_app passes (never set by the benchmarks' default runs).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from _progress import counter_total, from_env

from fleetcore.settings import Settings
from streams import app as stream_app
from streams.worker import run


def _override_faust_conf(overrides: dict[str, Any]) -> None:
    original = stream_app.faust.App

    def app(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **{**kwargs, **overrides})

    stream_app.faust.App = app  # type: ignore[attr-defined]


if __name__ == "__main__":
    conf = os.environ.get("BENCH_FAUST_CONF")
    if conf:
        _override_faust_conf(json.loads(conf))
    from_env(lambda: counter_total(stream_app.RESULTS))
    sys.argv = [sys.argv[0]]
    run(Settings())
