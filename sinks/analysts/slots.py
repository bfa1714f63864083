"""Query slots shared fairly between analysts (asyncio).

At most `total` queries run at once, and one analyst (a user signing in from one address: the endpoint
has one account that several people may share) runs at most `per_user` of them, fewer than `total`: one
analyst's slow queries cannot hold every slot, and another analyst's query gets a free one. An analyst's
queries beyond their share wait in their own queue (holding no slot) up to the wait given; beyond
`queue_per_user` waiting they are refused at once. An analyst with nothing running or waiting is forgotten,
so memory follows the requests in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fleetcore.errors import FleetwatchError


class SlotsBusy(FleetwatchError):
    """No slot for a query: ClickHouse's TOO_MANY_SIMULTANEOUS_QUERIES."""


@dataclass
class _Analyst:
    share: asyncio.Semaphore
    running: int = 0
    waiting: int = 0


async def _acquire(semaphore: asyncio.Semaphore, timeout_s: float) -> None:
    if not semaphore.locked():
        await semaphore.acquire()  # free: does not wait
        return
    await asyncio.wait_for(semaphore.acquire(), max(timeout_s, 0.0))


class QuerySlots:
    """`total` query slots, at most `per_user` (< total) of them for one analyst."""

    def __init__(self, total: int, per_user: int, queue_per_user: int = 8) -> None:
        if total < 2:
            raise ValueError("a fair share needs at least two query slots")
        self.total = total
        self.per_user = max(1, min(per_user, total - 1))
        self.queue_per_user = queue_per_user
        self._slots = asyncio.Semaphore(total)
        self._analysts: dict[str, _Analyst] = {}

    def running(self, who: str) -> int:
        """Queries of `who` holding a slot."""
        analyst = self._analysts.get(who)
        return analyst.running if analyst else 0

    def waiting(self, who: str) -> int:
        """Queries of `who` waiting for a slot."""
        analyst = self._analysts.get(who)
        return analyst.waiting if analyst else 0

    def __len__(self) -> int:
        """Analysts with queries running or waiting."""
        return len(self._analysts)

    def _busy(self, who: str, analyst: _Analyst, why: str) -> SlotsBusy:
        return SlotsBusy(
            f"Too many simultaneous queries: {why} ({who}: {analyst.running} running, {analyst.waiting} "
            f"waiting). Maximum: {self.per_user} at a time per analyst, {self.total} in all"
        )

    @asynccontextmanager
    async def slot(self, who: str, wait_s: float) -> AsyncIterator[None]:
        """Hold a slot for one query of `who`, waiting at most `wait_s`; raises SlotsBusy."""
        analyst = self._analysts.get(who)
        if analyst is None:
            analyst = self._analysts[who] = _Analyst(asyncio.Semaphore(self.per_user))
        if analyst.share.locked() and analyst.waiting >= self.queue_per_user:
            raise self._busy(who, analyst, "too many queries of one analyst waiting")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        held_share = held_slot = False
        analyst.waiting += 1
        try:
            try:
                await _acquire(analyst.share, deadline - loop.time())
                held_share = True
                await _acquire(self._slots, deadline - loop.time())
                held_slot = True
            except TimeoutError as exc:
                why = "no free slot in time" if held_share else "this analyst's share is in use"
                raise self._busy(who, analyst, why) from exc
            finally:
                analyst.waiting -= 1
            analyst.running += 1
            try:
                yield
            finally:
                analyst.running -= 1
        finally:
            if held_slot:
                self._slots.release()
            if held_share:
                analyst.share.release()
            if analyst.running == 0 and analyst.waiting == 0:
                self._analysts.pop(who, None)
