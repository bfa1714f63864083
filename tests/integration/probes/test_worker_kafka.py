"""A probe worker against a real broker: results on the right partitions, inventory updates, dead letters."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
import yaml
from kafka import KafkaProducer

from fleetwatch.demo_fleet import DemoFleet
from probes.errors import InventoryFileError
from probes.inventory import load_command, publish_inventory, read_inventory_ids
from probes.partitioner import partition_for, partition_key
from probes.worker import ProbeWorker
from schemas.inventory import Server
from schemas.probes import ProbeResult
from schemas.topics import PROBE_RESULTS, Topics
from tests.integration.probes.kafka_io import (
    eventually,
    probe_settings,
    read_batches,
    read_dead_letters,
    results_of,
)

pytestmark = pytest.mark.integration

SUBSET = ("demo-srv-01", "demo-srv-02", "demo-srv-03", "demo-srv-04", "demo-srv-08", "demo-tcp-01")


def write_inventory(path: Path, servers: list[Server]) -> Path:
    path.write_text(yaml.safe_dump({"servers": [s.model_dump(mode="json") for s in servers]}))
    return path


async def test_results_land_on_their_partitions_and_a_down_server_fails(
    kafka_bootstrap: str, topics: Topics
) -> None:
    async with DemoFleet(script=[], timeout_s=1.0) as fleet:
        fleet.set_down("demo-srv-03")
        servers = [s for s in fleet.servers() if s.server_id in SUBSET]
        await asyncio.to_thread(publish_inventory, kafka_bootstrap, topics, servers, False)
        seen: Counter[str] = Counter()

        def on_result(result: ProbeResult) -> None:
            seen[result.server_id] += 1

        settings = probe_settings(kafka_bootstrap, topics)
        worker = await asyncio.to_thread(
            ProbeWorker.from_settings, settings, worker_id="it-w1", on_result=on_result
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop_event=stop))
        try:
            await eventually(lambda: all(seen[s] >= 3 for s in SUBSET), 30, "three probes of every server")
        finally:
            stop.set()
            stats = await task

    assert stats.undelivered_batches == 0
    assert stats.send_errors == 0
    batches = await asyncio.to_thread(read_batches, kafka_bootstrap, topics, stats.results_sent)
    results = results_of(batches)
    assert len(results) == stats.results_sent == stats.results
    assert PROBE_RESULTS.partitions == 4
    for partition, batch in batches:
        assert batch.partition == partition
        assert batch.worker_id == "it-w1"
        assert all(
            partition_for(partition_key(r.server_id, r.backup_of), PROBE_RESULTS.partitions) == partition
            for r in batch.results
        )
    assert len({b.batch_id for _, b in batches}) == len(batches)
    by_server: dict[str, list[ProbeResult]] = {}
    for r in results:
        by_server.setdefault(r.server_id, []).append(r)
    assert set(by_server) == set(SUBSET)
    assert all(not r.ok and r.status_code == 503 for r in by_server["demo-srv-03"])
    assert all(r.ok for sid in SUBSET if sid != "demo-srv-03" for r in by_server[sid])
    assert all(r.health is not None for r in by_server["demo-srv-01"])
    assert all(r.backup_of == "demo-srv-01" for r in by_server["demo-srv-02"])  # a secondary: its primary's
    for rs in by_server.values():  # order per server survives batching and the partition
        assert [r.started_at for r in rs] == sorted(r.started_at for r in rs)


async def test_inventory_load_and_prune_reach_a_running_worker(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    async with DemoFleet(script=[], timeout_s=1.0) as fleet:
        servers = fleet.servers()[:6]
        ids = [s.server_id for s in servers]
        settings = probe_settings(kafka_bootstrap, topics)
        first = write_inventory(tmp_path / "a.yaml", servers[:4])
        assert await asyncio.to_thread(load_command, settings, first, False) == 4

        worker = await asyncio.to_thread(ProbeWorker.from_settings, settings, worker_id="it-inv")
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop_event=stop))
        try:
            await eventually(lambda: worker.share_ids() == set(ids[:4]), 30, "the first four servers")
            second = write_inventory(tmp_path / "b.yaml", servers[2:])
            assert await asyncio.to_thread(load_command, settings, second, True) == 4
            await eventually(lambda: worker.share_ids() == set(ids[2:]), 30, "servers 3-6 after the prune")
        finally:
            stop.set()
            await task
    assert await asyncio.to_thread(read_inventory_ids, kafka_bootstrap, topics.inventory) == set(ids[2:])


async def test_bad_inventory_records_are_dead_lettered_and_skipped(
    kafka_bootstrap: str, topics: Topics
) -> None:
    async with DemoFleet(script=[], timeout_s=1.0) as fleet:
        good = fleet.servers()[0]
        other = fleet.servers()[1]

        def send_raw() -> None:
            producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
            producer.send(topics.inventory, key=b"broken-1", value=b"{not json")
            producer.send(topics.inventory, key=b"liar", value=other.model_dump_json().encode())
            producer.send(
                topics.inventory, key=good.server_id.encode(), value=good.model_dump_json().encode()
            )
            producer.flush()
            producer.close()

        await asyncio.to_thread(send_raw)
        worker = await asyncio.to_thread(ProbeWorker.from_settings, probe_settings(kafka_bootstrap, topics))
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop_event=stop))
        try:
            await eventually(lambda: worker.stats.results >= 2, 30, "probes of the good server")
            assert worker.share_ids() == {good.server_id}
        finally:
            stop.set()
            await task
    letters = await asyncio.to_thread(read_dead_letters, kafka_bootstrap, topics, 2)
    reasons = sorted(letter.reason for letter in letters)
    assert len(letters) == 2
    assert any("does not match server_id" in r for r in reasons)
    assert any("not a valid Server" in r for r in reasons)
    assert all(letter.source_topic == topics.inventory for letter in letters)


async def test_load_command_creates_missing_topics(kafka_bootstrap: str, tmp_path: Path) -> None:
    import uuid

    fresh = Topics(prefix=f"t{uuid.uuid4().hex[:10]}.")
    settings = probe_settings(kafka_bootstrap, fresh, create_topics=True)
    path = write_inventory(
        tmp_path / "fleet.yaml",
        [Server(server_id="solo-1", customer_id="acme", target="http://127.0.0.1:9/status")],
    )
    assert await asyncio.to_thread(load_command, settings, path, False) == 1
    assert await asyncio.to_thread(read_inventory_ids, kafka_bootstrap, fresh.inventory) == {"solo-1"}


def test_a_bad_file_fails_before_kafka_is_touched(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("servers:\n  - {server_id: x, customer_id: c, target: 'gopher://x'}\n")
    settings = probe_settings("127.0.0.1:1", Topics("nowhere."), create_topics=True)
    with pytest.raises(InventoryFileError, match=r"servers\[0\] \('x'\)"):
        load_command(settings, path, prune=False)
