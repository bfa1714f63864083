"""EXPERIMENT, not production: the stream worker with a proposed agent body for streams/app.py.

Everything is streams.worker.run / streams.app.create_app except the detector agent's function, replaced
before the worker starts. Two changes to measure (bench/detector_throughput.py --proposal):

1. coalesced table writes: the agent takes up to TAKE envelopes at a time (`stream.take_events(TAKE,
   within=WITHIN_S)`), keeps the streaks it changes in a local dict per partition, and writes each changed
   server's final streak once per batch (one changelog message instead of one per changed result). Faust
   acks the batch's events only after the body has handled them, so offsets are committed after the writes;
   a replay after a crash is absorbed by the detector's replay rule as today. The changelog partition of a
   write is the current event's partition, so writes are issued per partition with that partition's last
   event as the current event.
2. results counted once per envelope (`RESULTS.labels(...)` resolved once, `.inc(n)` per envelope) instead
   of a labels() lookup and inc() per result.

Dead letters are handled exactly as in streams/app.py.
"""

from __future__ import annotations

import os
import sys
import weakref
from collections.abc import AsyncIterator
from typing import Any

from _progress import counter_total, from_env
from faust.streams import _current_event

import streams.app as stream_app
import streams.worker as stream_worker
from fleetcore.settings import Settings
from schemas.deadletter import DeadLetter
from schemas.envelope import decode_probe_batch, item_payload
from streams.detector import INITIAL, ServerStreak, observe

TAKE = int(os.environ.get("BENCH_PROPOSAL_TAKE", "40"))
"""Envelopes per batch at most (about TAKE / partitions per partition)."""
WITHIN_S = float(os.environ.get("BENCH_PROPOSAL_WITHIN_S", "0.01"))
"""How long a partial batch waits for more envelopes (adds at most this to detection latency)."""

_create_app = stream_app.create_app


def create_app(settings: Settings, clock: Any = None) -> stream_app.StreamApp:
    built = _create_app(settings, clock)
    streaks, outputs, clock_ = built.streaks, built.outputs, built.clock
    threshold = settings.failure_threshold
    ok_count = stream_app.RESULTS.labels("ok")
    failed_count = stream_app.RESULTS.labels("failed")

    async def detect(stream: Any) -> AsyncIterator[None]:
        async for batch in stream.take_events(TAKE, within=WITHIN_S):
            now = clock_.now()
            by_partition: dict[int, list[Any]] = {}
            for event in batch:
                by_partition.setdefault(event.message.partition, []).append(event)
            for events in by_partition.values():
                changed: dict[str, ServerStreak] = {}
                for event in events:
                    message = event.message
                    decoded = decode_probe_batch(event.value)
                    for index, reason in decoded.rejected:
                        stream_app.DEAD_LETTERS.inc()
                        await outputs.dead_letter(
                            DeadLetter(
                                source_topic=message.topic,
                                partition=message.partition,
                                offset=message.offset,
                                item=index,
                                consumer="stream",
                                reason=reason,
                                payload=item_payload(event.value, index),
                                rejected_at=now,
                            )
                        )
                    failed = 0
                    for result in decoded.results:
                        failed += not result.ok
                        key = result.server_id
                        before = changed.get(key) or streaks.get(key) or INITIAL
                        after, case_events = observe(before, result, now, threshold)
                        for case_event in case_events:
                            stream_app.CASE_EVENTS.labels(case_event.type.value).inc()
                            await outputs.case(case_event)
                        if after is not before:
                            changed[key] = after
                    ok_count.inc(len(decoded.results) - failed)
                    failed_count.inc(failed)
                # the table takes the changelog partition from the current event
                _current_event.set(weakref.ref(events[-1]))
                for key, streak in changed.items():
                    stream_app.TABLE_WRITES.inc()
                    streaks[key] = streak
            yield None

    built.agent.fun = detect
    return built


if __name__ == "__main__":
    stream_worker.create_app = create_app
    from_env(lambda: counter_total(stream_app.RESULTS))
    sys.argv = [sys.argv[0]]
    stream_worker.run(Settings())
