"""Ordered, retrying delivery of ProbeBatch envelopes: one queue and one sending task per partition.

Batches of one partition are sent one after the other, each only after the previous one was acknowledged,
so a partition's results reach Kafka in probe order even when a send fails: a failed batch is logged,
counted, and sent again (exponential backoff) before anything behind it. Partitions do not wait for each
other. A send failure never propagates to the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from schemas.probes import ProbeBatch

log = logging.getLogger(__name__)

SendFn = Callable[[ProbeBatch], Awaitable[None]]


class Shipper:
    """Delivers batches through `send`, in order per partition, retrying failures until `close`."""

    def __init__(
        self,
        send: SendFn,
        *,
        on_sent: Callable[[ProbeBatch], None] | None = None,
        on_error: Callable[[ProbeBatch, BaseException], None] | None = None,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._send = send
        self._on_sent = on_sent
        self._on_error = on_error
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._queues: dict[int, deque[ProbeBatch]] = {}
        self._wakeups: dict[int, asyncio.Event] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    @property
    def pending(self) -> int:
        """Batches not yet acknowledged."""
        return sum(len(q) for q in self._queues.values())

    def put(self, batch: ProbeBatch) -> None:
        """Queue a batch behind the earlier ones of its partition."""
        if self._closing:
            raise RuntimeError("shipper is closed")
        partition = batch.partition
        if partition not in self._tasks:
            self._queues[partition] = deque()
            self._wakeups[partition] = asyncio.Event()
            self._tasks[partition] = asyncio.create_task(
                self._run(partition), name=f"ship-partition-{partition}"
            )
        self._queues[partition].append(batch)
        self._wakeups[partition].set()
        self._idle.clear()

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued batch is acknowledged; False when `timeout_s` ran out first."""
        try:
            async with asyncio.timeout(timeout_s):
                while self.pending:
                    self._idle.clear()
                    await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self, timeout_s: float = 10.0) -> int:
        """Deliver what is queued (for at most `timeout_s`), then stop; return batches left undelivered."""
        await self.drain(timeout_s)
        self._closing = True
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        left = self.pending
        if left:
            log.error("%d probe batches were not delivered before shutdown", left)
        return left

    async def _run(self, partition: int) -> None:
        queue = self._queues[partition]
        wakeup = self._wakeups[partition]
        delay = self._backoff_s
        while True:
            if not queue:
                if not self.pending:
                    self._idle.set()
                wakeup.clear()
                await wakeup.wait()
                continue
            batch = queue[0]
            try:
                await self._send(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "sending batch %s (partition %d, %d results) failed, retrying in %.1f s: %s",
                    batch.batch_id,
                    partition,
                    len(batch.results),
                    delay,
                    exc,
                )
                if self._on_error is not None:
                    self._on_error(batch, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_backoff_s)
                continue
            delay = self._backoff_s
            queue.popleft()
            if self._on_sent is not None:
                self._on_sent(batch)
