"""The detector agent: probe-results → streak table → CaseCommands for the case engine.

Every decision is `streams.redundancy.Detector.observe`; this module only moves messages. One probe-results
message is a ProbeBatch bound for one partition (a pair of primary and secondary servers shares one), so each
server's results and its table row stay with one worker. Malformed envelopes and invalid results go to the
dead-letter topic with the reason; the rest of the batch is processed.

Failures inside a planned maintenance window are passed to the detector as planned (they open no case). The
windows come from the compacted maintenance topic: `streams.worker` follows it (`MaintenanceFeed`, a thread)
and waits until it is read before the worker starts; `stream.extras["planned"]` is the lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from prometheus_client import Counter

from policy.maintenance import MaintenanceBook
from policy.maintenance_feed import planned_by
from schemas.fastdecode import decode_probe_batch_fast
from streams.app import StreamApp, dead_letter_of
from streams.detector import ServerStreak
from streams.redundancy import Detector
from streams.tables import TableStore

log = logging.getLogger(__name__)

RESULTS = Counter("fleetwatch_stream_results_total", "Probe results seen by the detector", ["outcome"])
COMMANDS = Counter("fleetwatch_stream_commands_total", "Case commands sent by the detector", ["type"])
DEAD_LETTERS = Counter("fleetwatch_stream_dead_letters_total", "Messages or items dead-lettered")
TABLE_WRITES = Counter("fleetwatch_stream_table_writes_total", "Streak table writes")
PLANNED = Counter("fleetwatch_stream_planned_failures_total", "Failures inside a maintenance window")


def _lookup(
    changed: dict[str, tuple[int, ServerStreak]], table: TableStore[ServerStreak]
) -> Callable[[str], ServerStreak | None]:
    """A server's streak as of now: this take's pending change, else the table row."""

    def get(server_id: str) -> ServerStreak | None:
        pending = changed.get(server_id)
        return pending[1] if pending else table.get(server_id)

    return get


def install_detector(stream: StreamApp) -> None:
    """Register the detector agent and the maintenance feed on the stream app."""
    settings, app, outputs, streaks = stream.settings, stream.app, stream.outputs, stream.streaks
    results_topic = app.topic(
        stream.topics.probe_results,
        value_type=bytes,
        value_serializer="raw",
        key_serializer="raw",
        internal=False,
    )
    book = MaintenanceBook()
    detector = Detector(settings.failure_threshold, settings.redundancy_aware)
    # the worker replaces "planned" with its followed feed's lookup; tests fill this book
    stream.extras.update(maintenance=book, detector=detector)
    stream.extras["planned"] = lambda server_id, customer_id, started_at: planned_by(
        book, contextlib.nullcontext(), server_id, customer_id, started_at
    )

    ok_results, failed_results = RESULTS.labels("ok"), RESULTS.labels("failed")
    within_s = settings.stream_batch_within_ms / 1000
    learned = False

    async def dead_letter(event: Any, index: int | None, reason: str, now: datetime) -> None:
        DEAD_LETTERS.inc()
        await outputs.dead_letter(dead_letter_of(event, "stream", reason, now, index))

    async def detect(stream_: Any) -> AsyncIterator[None]:  # a faust Stream of raw envelopes
        # Takes up to stream_batch_max envelopes (or what came within stream_batch_within_ms) and writes each
        # server's changed streak once per take. Commands are acknowledged by the broker before the table is
        # written, and Faust commits the take's offsets only after this body: nothing is lost on a crash.
        nonlocal learned
        planned_of = stream.extras["planned"]
        async for events in stream_.take_events(settings.stream_batch_max, within=within_s):
            if not learned:  # table rows restored from the changelog teach the detector its pairs
                for server_id, row in streaks.items():
                    detector.learn(server_id, row)
                learned = True
            now = stream.clock.now()
            changed: dict[str, tuple[int, ServerStreak]] = {}
            acks: list[Any] = []
            failed = total = 0

            get = _lookup(changed, streaks)

            for event in events:
                decoded = decode_probe_batch_fast(event.value)  # the contract's verdicts, msgspec-fast
                for index, reason in decoded.rejected:
                    await dead_letter(event, index, reason, now)
                partition = event.message.partition
                for result in decoded.results:
                    failed += not result.ok
                    planned = (
                        not result.ok
                        and planned_of(result.server_id, result.customer_id, result.started_at) is not None
                    )
                    PLANNED.inc(planned)
                    updates, commands = detector.observe(get, result, now, planned)
                    for server_id, streak in updates.items():
                        changed[server_id] = (partition, streak)
                    for command in commands:
                        COMMANDS.labels(command.type.value).inc()
                        acks.append(await outputs.command(command))
                total += len(decoded.results)
            await asyncio.gather(*(a for a in acks if a is not None))
            for server_id, (partition, streak) in changed.items():
                # the changelog partition is the source partition: a server's results all land on one
                streaks.put(partition, server_id, streak)
            TABLE_WRITES.inc(len(changed))
            ok_results.inc(total - failed)
            failed_results.inc(failed)
            yield None

    stream.agent = app.agent(results_topic, name="detector", concurrency=1)(detect)
