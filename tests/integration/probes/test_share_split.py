"""Several probe workers split one fleet through the consumer group: no overlap, no gaps, takeover on exit."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from fleetwatch.demo_fleet import DemoFleet, generated_servers
from probes.inventory import publish_inventory
from probes.share import KafkaShare
from probes.worker import ProbeWorker
from schemas.probes import ProbeBatch, ProbeResult
from schemas.topics import INVENTORY, Topics
from tests.integration.probes.kafka_io import eventually, probe_settings, read_batches, read_topic, results_of

pytestmark = pytest.mark.integration

FLEET_SIZE = 20
REPO = Path(__file__).parents[3]


class Recorder:
    """Every result any in-process worker produced, with the worker that produced it."""

    def __init__(self) -> None:
        self.results: list[ProbeResult] = []

    def __call__(self, result: ProbeResult) -> None:
        self.results.append(result)

    def since(self, moment: datetime) -> list[ProbeResult]:
        return [r for r in self.results if r.started_at >= moment]

    def probed_since(self, moment: datetime, worker_id: str | None = None) -> set[str]:
        return {r.server_id for r in self.since(moment) if worker_id is None or r.worker_id == worker_id}


class Running:
    """A ProbeWorker running as a task, stoppable."""

    def __init__(self, worker: ProbeWorker) -> None:
        self.worker = worker
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(worker.run(stop_event=self.stop_event))

    @property
    def partitions(self) -> set[int]:
        return cast(KafkaShare, self.worker.share).assigned_partitions()

    async def stop(self) -> None:
        self.stop_event.set()
        await self.task


@pytest.fixture
async def fleet(kafka_bootstrap: str, topics: Topics) -> AsyncIterator[DemoFleet]:
    async with DemoFleet(specs=generated_servers(FLEET_SIZE), script=[], timeout_s=1.0) as demo:
        await asyncio.to_thread(publish_inventory, kafka_bootstrap, topics, demo.servers(), False)
        yield demo


async def start_worker(kafka_bootstrap: str, topics: Topics, worker_id: str, recorder: Recorder) -> Running:
    settings = probe_settings(kafka_bootstrap, topics)
    worker = await asyncio.to_thread(
        ProbeWorker.from_settings, settings, worker_id=worker_id, on_result=recorder, session_timeout_ms=6000
    )
    return Running(worker)


def split_is_clean(a: Running, b: Running, all_ids: set[str]) -> bool:
    ids_a, ids_b = a.worker.share_ids(), b.worker.share_ids()
    parts_a, parts_b = a.partitions, b.partitions
    return (
        bool(ids_a)
        and bool(ids_b)
        and not ids_a & ids_b
        and ids_a | ids_b == all_ids
        and not parts_a & parts_b
        and len(parts_a | parts_b) == INVENTORY.partitions
    )


async def test_two_workers_split_the_fleet_and_one_takes_over_when_the_other_stops(
    kafka_bootstrap: str, topics: Topics, fleet: DemoFleet
) -> None:
    all_ids = {s.server_id for s in fleet.servers()}
    recorder = Recorder()
    a = await start_worker(kafka_bootstrap, topics, "worker-a", recorder)
    b: Running | None = None
    try:
        await eventually(lambda: a.worker.share_ids() == all_ids, 30, "worker-a to own the whole fleet")
        b = await start_worker(kafka_bootstrap, topics, "worker-b", recorder)
        joined = await eventually(lambda: split_is_clean(a, b, all_ids), 30, "a clean split between a and b")

        # a window after the split: every server probed, each by exactly one worker (its owner)
        window = datetime.now(UTC)
        owner = {sid: "worker-a" for sid in a.worker.share_ids()} | {
            sid: "worker-b" for sid in b.worker.share_ids()
        }
        await eventually(
            lambda: all(sum(1 for r in recorder.since(window) if r.server_id == sid) >= 3 for sid in all_ids),
            30,
            "three probes of every server after the split",
        )
        assert split_is_clean(a, b, all_ids)  # nothing moved during the window
        probed_by: dict[str, set[str]] = defaultdict(set)
        for r in recorder.since(window):
            probed_by[r.server_id].add(r.worker_id)
        assert set(probed_by) == all_ids  # no gaps
        assert all(len(workers) == 1 for workers in probed_by.values()), probed_by  # no overlap
        assert all(probed_by[sid] == {owner[sid]} for sid in all_ids)

        # worker-a stops cleanly (leaves the group): worker-b takes over everything
        await a.stop()
        stopped = datetime.now(UTC)
        took = await eventually(lambda: b.worker.share_ids() == all_ids, 30, "worker-b to take over")
        await eventually(lambda: recorder.probed_since(stopped, "worker-b") == all_ids, 30, "b probing all")
        assert not recorder.probed_since(stopped, "worker-a")
        print(f"split after {joined:.1f} s; takeover after a clean stop in {took:.1f} s")
    finally:
        if not a.task.done():
            await a.stop()
        if b is not None:
            await b.stop()

    # the same story from the topic: after the window every result of a server came from one worker
    batches = await asyncio.to_thread(read_batches, kafka_bootstrap, topics, len(recorder.results))
    on_topic = results_of(batches)
    assert len(on_topic) == len(recorder.results)
    topic_by: dict[str, set[str]] = defaultdict(set)
    for r in on_topic:
        if window <= r.started_at < stopped:
            topic_by[r.server_id].add(r.worker_id)
    assert set(topic_by) == all_ids
    assert all(len(w) == 1 for w in topic_by.values())


def spawn_worker(kafka_bootstrap: str, topics: Topics, worker_id: str, log: Path) -> subprocess.Popen[bytes]:
    """`fleetwatch probe` in its own process, configured through the environment."""
    env = {
        **os.environ,
        "FLEETWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "FLEETWATCH_TOPIC_PREFIX": topics.prefix,
        "FLEETWATCH_CREATE_TOPICS": "false",
        "FLEETWATCH_PROBE_INTERVAL_S": "0.2",
        "FLEETWATCH_PROBE_RETRY_INTERVAL_S": "0.2",
        "FLEETWATCH_PROBE_METRICS_PORT": "0",
        "FLEETWATCH_PROBE_WORKER_ID": worker_id,
        "FLEETWATCH_LOG_LEVEL": "INFO",
        "PYTHONPATH": str(REPO),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "fleetwatch.cli", "probe"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


def wait_for_results_of(kafka_bootstrap: str, topics: Topics, worker_id: str) -> list[ProbeResult]:
    """Read probe results from the topic until some came from `worker_id` (at most 30 s)."""

    def mine(msgs: list[tuple[int, bytes | None, bytes | None]]) -> list[ProbeResult]:
        return [r for _, b in decode(msgs) for r in b.results if r.worker_id == worker_id]

    return mine(read_topic(kafka_bootstrap, topics.probe_results, lambda m: bool(mine(m)), 30.0))


def decode(msgs: list[tuple[int, bytes | None, bytes | None]]) -> list[tuple[int, ProbeBatch]]:
    return [(p, ProbeBatch.model_validate_json(v)) for p, _, v in msgs if v]


@pytest.mark.parametrize("how", ["killed", "terminated"])
async def test_survivor_takes_over_from_a_worker_process_that_dies(
    kafka_bootstrap: str, topics: Topics, fleet: DemoFleet, tmp_path: Path, how: str
) -> None:
    all_ids = {s.server_id for s in fleet.servers()}
    recorder = Recorder()
    survivor = await start_worker(kafka_bootstrap, topics, "survivor", recorder)
    log = tmp_path / "victim.log"
    victim = spawn_worker(kafka_bootstrap, topics, "victim", log)
    try:
        await eventually(lambda: survivor.worker.share_ids() == all_ids, 30, "the survivor to own the fleet")
        await eventually(
            lambda: len(survivor.partitions) == INVENTORY.partitions // 2 and victim.poll() is None,
            60,
            "the victim process to join and take half the partitions",
        )
        assert survivor.worker.share_ids() < all_ids
        victim_results = await asyncio.to_thread(wait_for_results_of, kafka_bootstrap, topics, "victim")
        assert victim_results, log.read_text()[-3000:]
        if how == "killed":
            victim.send_signal(signal.SIGKILL)  # no goodbye: the coordinator must notice the silence
        else:
            victim.send_signal(signal.SIGTERM)  # clean stop: leaves the group, flushes, exits 0
        gone = datetime.now(UTC)
        started = time.monotonic()
        await eventually(lambda: survivor.worker.share_ids() == all_ids, 40, "the survivor to take over")
        took = time.monotonic() - started
        await eventually(
            lambda: recorder.probed_since(gone) == all_ids, 30, "the survivor probing all servers"
        )
        code = await asyncio.to_thread(victim.wait, 30)
        if how == "killed":
            assert code == -signal.SIGKILL
            assert took < 20  # session timeout 6 s + rebalance
        else:
            assert code == 0, log.read_text()[-3000:]
            assert took < 6  # a clean leave does not wait for the session timeout
        print(f"{how}: takeover in {took:.1f} s")
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        await survivor.stop()
