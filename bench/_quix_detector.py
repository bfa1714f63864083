"""The streak job as a Quix Streams app (bench only): the comparison point of bench/detector_throughput.py.

Same per-result work as the detector agent in streams/detection.py: validate a ProbeResult, run the pure
`streams.detector.observe`, write the server's state only when it changed, emit the case commands it returns
(open, server_recovered) as JSON keyed by case id. There is no case engine behind it: the Faust worker also
runs the engine (commands -> case events and notifications) in the same process, so the Quix figure is the
detector alone. Quix defaults otherwise (RocksDB state with a changelog topic, at-least-once, commit every
5 s).

  --mode single   one ProbeResult per message, keyed by server id (what a Quix user would write);
                  state is per message key, so the key is the server id.
  --mode batch    the ProbeBatch envelopes of probe-results (no key); the state of every server of the
                  partition lives under the message's (empty) key prefix, keyed by server id.

Progress: the counter bench_quix_results_total, watched in-process by bench/_progress.py exactly like the
Faust worker's fleetwatch_stream_results_total.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from _progress import counter_total, from_env
from prometheus_client import Counter
from quixstreams import Application, State

from fleetcore.clock import SystemClock
from schemas.probes import ProbeResult
from streams.detector import INITIAL, ServerStreak, observe

RESULTS = Counter("bench_quix_results_total", "Probe results seen by the Quix detector", ["outcome"])


def _step(
    result: ProbeResult, state: State[str, Any], key: str, threshold: int, clock: SystemClock
) -> list[Any]:
    RESULTS.labels("ok" if result.ok else "failed").inc()
    raw = state.get(key)
    before = INITIAL if raw is None else ServerStreak.model_validate(raw)
    after, commands = observe(before, result, clock.now(), threshold)
    if after is not before:
        state.set(key, after.model_dump(mode="json"))
    return [c.model_dump(mode="json") for c in commands]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--mode", choices=["single", "batch"], required=True)
    parser.add_argument("--threshold", type=int, default=10)
    args = parser.parse_args()

    from_env(lambda: counter_total(RESULTS))
    clock = SystemClock()
    threshold = args.threshold
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        loglevel="WARNING",
    )
    source = app.topic(args.input, value_deserializer="json", key_deserializer="str")
    commands = app.topic(args.output, value_serializer="json", key_serializer="str")
    sdf = app.dataframe(topic=source)

    if args.mode == "single":

        def detect(value: dict[str, Any], state: State[str, Any]) -> list[Any]:
            result = ProbeResult.model_validate(value)
            return _step(result, state, "streak", threshold, clock)

    else:

        def detect(value: dict[str, Any], state: State[str, Any]) -> list[Any]:
            out: list[Any] = []
            for item in value["results"]:
                result = ProbeResult.model_validate(item)
                out.extend(_step(result, state, result.server_id, threshold, clock))
            return out

    sdf = sdf.apply(detect, stateful=True, expand=True)
    sdf.to_topic(commands, key=lambda command: command["case_id"])
    logging.getLogger().setLevel(logging.WARNING)
    app.run()


if __name__ == "__main__":
    main()
