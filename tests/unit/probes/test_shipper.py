"""Shipper: ordered per-partition delivery, retries, drain and close."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from probes.errors import SendError
from probes.shipper import Shipper
from schemas.probes import ProbeBatch, ProbeResult

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def batch(seq: int, partition: int) -> ProbeBatch:
    r = ProbeResult(
        server_id="s",
        customer_id="c",
        probe_id=f"s@{seq}",
        started_at=T0,
        latency_ms=1,
        ok=True,
        worker_id="w",
    )
    return ProbeBatch(batch_id=f"w:{seq}", worker_id="w", partition=partition, results=[r])


async def test_batches_of_a_partition_arrive_in_order_despite_failures() -> None:
    delivered: list[str] = []
    failures = {"w:1": 2, "w:4": 1}
    errors: list[str] = []

    async def send(b: ProbeBatch) -> None:
        if failures.get(b.batch_id, 0) > 0:
            failures[b.batch_id] -= 1
            raise SendError("not now")
        delivered.append(b.batch_id)

    shipper = Shipper(send, on_error=lambda b, e: errors.append(b.batch_id), backoff_s=0.001)
    for seq in range(8):
        shipper.put(batch(seq, seq % 2))
    assert await shipper.drain(10)
    assert await shipper.close() == 0
    evens = [d for d in delivered if int(d[2:]) % 2 == 0]
    odds = [d for d in delivered if int(d[2:]) % 2 == 1]
    assert evens == ["w:0", "w:2", "w:4", "w:6"]
    assert odds == ["w:1", "w:3", "w:5", "w:7"]
    assert sorted(errors) == ["w:1", "w:1", "w:4"]


async def test_a_stuck_partition_does_not_hold_up_the_others() -> None:
    release = asyncio.Event()
    delivered: list[int] = []

    async def send(b: ProbeBatch) -> None:
        if b.partition == 0:
            await release.wait()
        delivered.append(b.partition)

    shipper = Shipper(send)
    shipper.put(batch(0, 0))
    shipper.put(batch(1, 1))
    assert not await shipper.drain(0.2)
    assert delivered == [1]
    assert shipper.pending == 1
    release.set()
    assert await shipper.drain(5)
    await shipper.close()


async def test_close_reports_what_could_not_be_delivered() -> None:
    async def send(b: ProbeBatch) -> None:
        raise SendError("broker gone")

    shipper = Shipper(send, backoff_s=0.01, max_backoff_s=0.02)
    shipper.put(batch(0, 0))
    shipper.put(batch(1, 0))
    assert await shipper.close(timeout_s=0.1) == 2


async def test_sent_callback_sees_every_batch_once() -> None:
    sent: list[str] = []

    async def send(b: ProbeBatch) -> None:
        return None

    shipper = Shipper(send, on_sent=lambda b: sent.append(b.batch_id))
    for seq in range(5):
        shipper.put(batch(seq, 3))
    assert await shipper.drain(5)
    await shipper.close()
    assert sent == [f"w:{i}" for i in range(5)]
