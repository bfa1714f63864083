"""Test doubles of the probe worker's Kafka edges."""

from __future__ import annotations

from probes.errors import SendError
from schemas.probes import ProbeBatch, ProbeResult


class FakeSender:
    """Collects batches in memory; the first `fail_first` sends fail."""

    def __init__(self, partitions: int = 4, fail_first: int = 0) -> None:
        self.partitions = partitions
        self.fail_first = fail_first
        self.batches: list[ProbeBatch] = []
        self.attempts = 0
        self.closed = False

    def num_partitions(self) -> int:
        return self.partitions

    async def send(self, batch: ProbeBatch) -> None:
        self.attempts += 1
        if self.fail_first > 0:
            self.fail_first -= 1
            raise SendError(f"broker unavailable (batch {batch.batch_id})")
        self.batches.append(batch)

    async def close(self) -> None:
        self.closed = True

    def results(self) -> list[ProbeResult]:
        return [r for b in self.batches for r in b.results]
