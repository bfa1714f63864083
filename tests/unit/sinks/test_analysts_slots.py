"""Fair query slots: one analyst cannot hold every slot; their further queries wait holding none."""

from __future__ import annotations

import asyncio

import pytest

from sinks.analysts.slots import QuerySlots, SlotsBusy
from tests.helpers import eventually


async def hold(slots: QuerySlots, who: str, release: asyncio.Event, wait_s: float = 30.0) -> None:
    async with slots.slot(who, wait_s):
        await release.wait()


async def test_a_hog_gets_its_share_and_another_analyst_gets_a_slot_at_once() -> None:
    slots = QuerySlots(total=4, per_user=2)
    release = asyncio.Event()
    hog = [asyncio.create_task(hold(slots, "a@10.0.0.1", release)) for _ in range(4)]
    await eventually(lambda: slots.waiting("a@10.0.0.1") == 2, 5, "the hog's extra queries queued")
    assert slots.running("a@10.0.0.1") == 2
    async with slots.slot("a@10.0.0.2", wait_s=0.0):  # no wait: a slot is free for another analyst
        assert slots.running("a@10.0.0.2") == 1
        assert not any(task.done() for task in hog)
    release.set()
    await asyncio.gather(*hog)
    assert len(slots) == 0  # nothing remembered once idle


async def test_queued_queries_run_when_the_share_frees_up() -> None:
    slots = QuerySlots(total=2, per_user=1)
    first, second = asyncio.Event(), asyncio.Event()
    one = asyncio.create_task(hold(slots, "a", first))
    two = asyncio.create_task(hold(slots, "a", second))
    await eventually(lambda: slots.waiting("a") == 1, 5, "the second query queued")
    first.set()
    await one
    await eventually(lambda: slots.running("a") == 1 and slots.waiting("a") == 0, 5, "the second runs")
    second.set()
    await two


async def test_over_the_queue_or_the_wait_a_query_is_refused_with_a_clear_message() -> None:
    slots = QuerySlots(total=2, per_user=1, queue_per_user=1)
    release = asyncio.Event()
    running = asyncio.create_task(hold(slots, "a", release))
    queued = asyncio.create_task(hold(slots, "a", release))
    await eventually(lambda: slots.waiting("a") == 1, 5, "one query queued")
    with pytest.raises(SlotsBusy, match=r"Maximum: 1 at a time per analyst, 2 in all"):
        async with slots.slot("a", wait_s=30.0):
            pass  # refused at once: the queue is full
    release.set()
    await asyncio.gather(running, queued)
    gate = asyncio.Event()
    holder = asyncio.create_task(hold(slots, "b", gate))
    await eventually(lambda: slots.running("b") == 1, 5, "b runs")
    with pytest.raises(SlotsBusy, match="share is in use"):
        async with slots.slot("b", wait_s=0.05):
            pass
    gate.set()
    await holder


def test_a_share_is_always_less_than_all_slots() -> None:
    assert QuerySlots(total=4, per_user=9).per_user == 3
    with pytest.raises(ValueError, match="at least two"):
        QuerySlots(total=1, per_user=1)
