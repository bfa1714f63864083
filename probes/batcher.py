"""Group probe results into per-partition `ProbeBatch` envelopes. Pure: the time is passed in.

Each result goes to the partition Kafka's default partitioner gives its partition key (`partition_for` of
`partition_key`: the server id, or a secondary's primary id), so every result of one server lands on one
partition, in the order it was added, and a secondary's results land with its primary's. A partition's
batch is cut when it holds `max_results` results (returned by `add`) or when its oldest result has waited
`linger_s` (returned by `due`). Batch ids are `<worker_id>:<sequence>`, the sequence counting every batch
this batcher cut, so they are unique per worker run when the worker id is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from probes.partitioner import partition_for, partition_key
from schemas.probes import ProbeBatch, ProbeResult


@dataclass
class _Pending:
    first_at: float
    results: list[ProbeResult] = field(default_factory=list)


class Batcher:
    """Accumulates results per partition; hands out ready ProbeBatch envelopes."""

    def __init__(
        self, worker_id: str, num_partitions: int, max_results: int, linger_s: float, first_seq: int = 0
    ) -> None:
        if num_partitions <= 0 or max_results <= 0 or linger_s < 0:
            raise ValueError("num_partitions and max_results must be positive, linger_s not negative")
        self.worker_id = worker_id
        self.num_partitions = num_partitions
        self.max_results = max_results
        self.linger_s = linger_s
        self._seq = first_seq
        self._pending: dict[int, _Pending] = {}

    @property
    def pending_results(self) -> int:
        """Results waiting in partial batches."""
        return sum(len(p.results) for p in self._pending.values())

    def partition_of(self, result: ProbeResult) -> int:
        """The partition a result belongs to: its primary's for a secondary, else its server's own."""
        return partition_for(partition_key(result.server_id, result.backup_of), self.num_partitions)

    def add(self, result: ProbeResult, now: float) -> list[ProbeBatch]:
        """Add one result at time `now` (seconds); return the batch it filled, if it filled one."""
        partition = self.partition_of(result)
        pending = self._pending.get(partition)
        if pending is None:
            pending = self._pending[partition] = _Pending(first_at=now)
        pending.results.append(result)
        if len(pending.results) >= self.max_results:
            return [self._cut(partition)]
        return []

    def due(self, now: float) -> list[ProbeBatch]:
        """Batches whose oldest result has waited `linger_s` or longer at time `now`."""
        ready = [p for p, pending in self._pending.items() if now - pending.first_at >= self.linger_s]
        return [self._cut(p) for p in sorted(ready)]

    def drain(self) -> list[ProbeBatch]:
        """Every partial batch, now (at shutdown)."""
        return [self._cut(p) for p in sorted(self._pending)]

    def next_deadline(self) -> float | None:
        """When the next partial batch becomes due (None when nothing waits)."""
        if not self._pending:
            return None
        return min(p.first_at for p in self._pending.values()) + self.linger_s

    def _cut(self, partition: int) -> ProbeBatch:
        pending = self._pending.pop(partition)
        batch = ProbeBatch(
            batch_id=f"{self.worker_id}:{self._seq}",
            worker_id=self.worker_id,
            partition=partition,
            results=pending.results,
        )
        self._seq += 1
        return batch
