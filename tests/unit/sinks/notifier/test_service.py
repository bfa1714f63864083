"""Service bookkeeping without a broker: offsets commit only past finished messages; one key, one sender."""

from __future__ import annotations

import asyncio

from sinks.notifier.service import _KeyLocks, _Partition
from tests.helpers import eventually


def test_commit_point_moves_only_past_a_finished_prefix() -> None:
    state = _Partition(ledger=set())
    state.order.extend([10, 11, 12, 14])
    state.done.update({11, 12})
    assert state.advance() == 0
    assert state.next_commit is None  # 10 is still in flight: nothing behind it may be committed
    state.done.add(10)
    assert state.advance() == 3
    assert state.next_commit == 13
    assert list(state.order) == [14]
    state.done.add(14)
    assert state.advance() == 1
    assert state.next_commit == 15  # offsets may have gaps; the commit is the last finished + 1
    assert state.done == set()


async def test_key_locks_serialise_one_key_and_forget_it_afterwards() -> None:
    locks = _KeyLocks()
    order: list[str] = []
    first_inside = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with locks.hold("k|c"):
            order.append("first in")
            first_inside.set()
            await release_first.wait()
            order.append("first out")

    async def second() -> None:
        await first_inside.wait()
        async with locks.hold("k|c"):
            order.append("second in")

    async def other_key() -> None:
        await first_inside.wait()
        async with locks.hold("k|other"):
            order.append("other in")

    tasks = [asyncio.create_task(f()) for f in (first, second, other_key)]
    await first_inside.wait()
    await eventually(lambda: "other in" in order, 5, "another key to pass while the first is held")
    assert "second in" not in order
    release_first.set()
    await asyncio.gather(*tasks)
    assert order.index("first out") < order.index("second in")
    assert locks._locks == {}
