"""Scheduling: interval after a pass, retry interval after a failure, jitter bounds, first-round spread."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from probes.schedule import first_due, jittered, next_due

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def seconds_after(moment: datetime) -> float:
    return (moment - NOW).total_seconds()


def test_pass_waits_the_interval_without_jitter() -> None:
    assert next_due(True, NOW, 900, 60, 0.0, random.Random(1)) == NOW + timedelta(seconds=900)


def test_failure_waits_the_retry_interval_without_jitter() -> None:
    assert next_due(False, NOW, 900, 60, 0.0, random.Random(1)) == NOW + timedelta(seconds=60)


@pytest.mark.parametrize(("ok", "base"), [(True, 900.0), (False, 60.0)])
def test_jitter_stays_within_bounds_and_spreads(ok: bool, base: float) -> None:
    rng = random.Random(7)
    delays = [seconds_after(next_due(ok, NOW, 900, 60, 0.1, rng)) for _ in range(2000)]
    assert min(delays) >= base * 0.9
    assert max(delays) <= base * 1.1
    assert max(delays) - min(delays) > base * 0.15  # actually spread, not constant
    assert abs(sum(delays) / len(delays) - base) < base * 0.01


def test_jitter_is_clamped_to_half() -> None:
    rng = random.Random(3)
    values = [jittered(100, 5.0, rng) for _ in range(500)]
    assert min(values) >= 50
    assert max(values) <= 150


def test_same_seed_same_schedule() -> None:
    a = [next_due(True, NOW, 900, 60, 0.1, random.Random(42)) for _ in range(3)]
    b = [next_due(True, NOW, 900, 60, 0.1, random.Random(42)) for _ in range(3)]
    assert a == b


def test_new_servers_are_due_within_the_first_window_and_spread() -> None:
    rng = random.Random(5)
    delays = [seconds_after(first_due(NOW, 900, 60, rng)) for _ in range(5000)]
    assert min(delays) >= 0
    assert max(delays) <= 60
    # a big fleet does not all start at once: no one-second bucket holds more than ~3x its share
    buckets = [0] * 60
    for d in delays:
        buckets[min(int(d), 59)] += 1
    assert max(buckets) < 3 * len(delays) / 60


def test_first_window_is_the_shorter_interval() -> None:
    rng = random.Random(5)
    assert all(seconds_after(first_due(NOW, 0.2, 60, rng)) <= 0.2 for _ in range(100))
