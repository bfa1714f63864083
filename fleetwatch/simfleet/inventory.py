"""The inventory of a simulated fleet: one `schemas.inventory.Server` record per server, generated from the
layout (nothing is kept per server), published to the inventory topic in batches."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError as AioKafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from kafka.errors import KafkaError

from fleetwatch.simfleet.layout import FleetLayout, SimFleetError
from probes.errors import InventoryPublishError
from probes.inventory import read_inventory_ids
from schemas.topics import Topics

log = logging.getLogger(__name__)

IN_FLIGHT = 32
"""Batches sent before waiting for their acks (bounds the producer's memory; a failure shows soon)."""


@dataclass(frozen=True)
class Endpoints:
    """Where a running simulated fleet listens (from `SimFleet.info()` or `fleetwatch sim`'s first line)."""

    host: str
    ports: tuple[int, ...]
    tcp_port: int | None
    timeout_s: float

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> Endpoints:
        try:
            urls = [str(u) for u in info["http"]]
            hosts = {u.removeprefix("http://").rpartition(":")[0] for u in urls}
            ports = tuple(int(u.rpartition(":")[2]) for u in urls)
            tcp = info.get("tcp_port")
            if len(hosts) != 1 or not ports:
                raise ValueError("http: one host, at least one port")
            return cls(hosts.pop(), ports, None if tcp is None else int(tcp), float(info["timeout_s"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SimFleetError(f"not a simulated fleet's info: {exc}") from exc

    def target(self, layout: FleetLayout, i: int) -> str:
        """How server `i` is probed: its status URL (http) or loopback host:port (tcp)."""
        if layout.is_tcp(i):
            if self.tcp_port is None:
                raise SimFleetError("the fleet has tcp servers but no tcp port")
            return f"{layout.tcp_host(i)}:{self.tcp_port}"
        return f"http://{self.host}:{self.ports[i % len(self.ports)]}/s/{i}"


def record(layout: FleetLayout, endpoints: Endpoints, i: int) -> dict[str, Any]:
    """The inventory record (a valid `Server`) of server `i`."""
    c = layout.customer_of(i)
    backup = layout.backup_of(i)
    return {
        "server_id": layout.server_id(i),
        "customer_id": layout.customer_id(c),
        "partner_id": layout.partner_id(c),
        "role": "primary" if backup is None else "secondary",
        "backup_of": None if backup is None else layout.server_id(backup),
        "probe": "tcp" if layout.is_tcp(i) else "http",
        "target": endpoints.target(layout, i),
        "expected_status": 200,
        "timeout_s": endpoints.timeout_s,
    }


def records(layout: FleetLayout, endpoints: Endpoints) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of every server, in index order: the inventory topic's records."""
    dumps = orjson.dumps
    for i in range(layout.servers):
        rec = record(layout, endpoints, i)
        yield rec["server_id"].encode(), dumps(rec)


def _ours(layout: FleetLayout, server_id: str) -> bool:
    try:
        return layout.server_id(layout.index_of(server_id)) == server_id
    except SimFleetError:
        return False


def publish_sim_inventory(
    bootstrap: str, topics: Topics, layout: FleetLayout, endpoints: Endpoints, prune: bool = True
) -> tuple[int, float]:
    """Publish the fleet's inventory (with `prune`, tombstone servers on the topic that are not in it).
    Returns (records sent, seconds taken). Raises InventoryPublishError when Kafka fails."""
    topic = topics.inventory
    started = time.monotonic()
    try:
        stale: list[str] = []
        if prune:
            stale = sorted(sid for sid in read_inventory_ids(bootstrap, topic) if not _ours(layout, sid))
        tombstones = ((sid.encode(), None) for sid in stale)
        sent = asyncio.run(
            send_batches(bootstrap, topic, itertools.chain(records(layout, endpoints), tombstones))
        )
    except (KafkaError, AioKafkaError) as exc:
        raise InventoryPublishError(f"publishing the simulated inventory to {topic} failed: {exc}") from exc
    if stale:
        log.info("removed %d servers not in the simulated fleet", len(stale))
    return sent - len(stale), time.monotonic() - started


async def send_batches(bootstrap: str, topic: str, items: Iterable[tuple[bytes, bytes | None]]) -> int:
    """Send (key, value) records in whole batches per partition (aiokafka's batch API: no future per record),
    partitioned by key as every Kafka client's default partitioner does (murmur2), so a server's record
    replaces the one `fleetwatch inventory load` wrote. Returns the records sent."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="fleetwatch-sim-inventory",
        acks="all",
        enable_idempotence=True,
        compression_type="lz4",
        max_batch_size=1024 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        partitioner = DefaultPartitioner()
        batches: dict[int, BatchBuilder] = {}
        in_flight: list[asyncio.Future[Any]] = []
        sent = 0
        for key, value in items:
            p = partitioner(key, partitions, partitions)
            batch = batches.get(p)
            if batch is None or batch.append(key=key, value=value, timestamp=None) is None:
                if batch is not None:
                    in_flight.append(await producer.send_batch(batch, topic, partition=p))
                batch = batches[p] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            sent += 1
            if len(in_flight) >= IN_FLIGHT:
                await asyncio.gather(*in_flight)
                in_flight.clear()
        for p, batch in batches.items():
            if batch.record_count():
                in_flight.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*in_flight)
        return sent
    finally:
        await producer.stop()
