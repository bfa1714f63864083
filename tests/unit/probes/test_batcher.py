"""Batcher: per-partition grouping, size and linger bounds, order per server, batch ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from probes.batcher import Batcher
from probes.partitioner import partition_for
from schemas.probes import ProbeResult

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def result(server_id: str, n: int = 0, backup_of: str | None = None) -> ProbeResult:
    started = T0 + timedelta(seconds=n)
    return ProbeResult(
        server_id=server_id,
        customer_id="acme",
        probe_id=f"{server_id}@{n}",
        started_at=started,
        latency_ms=1,
        ok=True,
        worker_id="w",
        backup_of=backup_of,
    )


def test_results_go_to_their_server_partition() -> None:
    b = Batcher("w", 4, 1000, 0.05)
    ids = [f"srv-{i}" for i in range(40)]
    for sid in ids:
        assert b.add(result(sid), now=0.0) == []
    batches = b.drain()
    assert sorted(x.partition for x in batches) == sorted({partition_for(s, 4) for s in ids})
    for batch in batches:
        assert all(partition_for(r.server_id, 4) == batch.partition for r in batch.results)
    assert sum(len(x.results) for x in batches) == 40
    assert b.pending_results == 0


def test_a_secondary_lands_on_its_primary_partition_in_order() -> None:
    b = Batcher("w", 12, 1000, 0.05)
    primaries = [f"srv-{i}" for i in range(30)]
    # a secondary whose own id hashes elsewhere than its primary's (so the test can fail)
    pairs = [
        (p, s)
        for p in primaries
        for s in (f"{p}-backup", f"{p}-b2")
        if partition_for(s, 12) != partition_for(p, 12)
    ]
    assert len(pairs) >= 20
    for n in range(3):
        for primary, secondary in pairs:
            b.add(result(primary, n), 0.0)
            b.add(result(secondary, n, backup_of=primary), 0.0)
    for batch in b.drain():
        for r in batch.results:
            assert batch.partition == partition_for(r.backup_of or r.server_id, 12)
            assert b.partition_of(r) == batch.partition
        by_server: dict[str, list[str]] = {}
        for r in batch.results:
            by_server.setdefault(r.server_id, []).append(r.probe_id)
        assert all(ids == sorted(ids) for ids in by_server.values())
    primary, secondary = pairs[0]
    assert b.partition_of(result(secondary, backup_of=primary)) == partition_for(primary, 12)
    assert b.partition_of(result(secondary)) == partition_for(secondary, 12)


def test_full_batch_is_returned_at_max_results() -> None:
    b = Batcher("w", 1, 3, 10.0)
    assert b.add(result("a", 0), 0.0) == []
    assert b.add(result("a", 1), 0.0) == []
    full = b.add(result("a", 2), 0.0)
    assert len(full) == 1
    assert [r.probe_id for r in full[0].results] == ["a@0", "a@1", "a@2"]
    assert b.pending_results == 0
    assert b.next_deadline() is None


def test_no_batch_exceeds_max_results() -> None:
    b = Batcher("w", 2, 5, 10.0)
    out = []
    for i in range(53):
        out += b.add(result(f"s{i % 7}", i), 0.0)
    out += b.drain()
    assert all(1 <= len(x.results) <= 5 for x in out)
    assert sum(len(x.results) for x in out) == 53


def test_linger_cuts_a_partial_batch_after_its_oldest_result_waited() -> None:
    b = Batcher("w", 1, 500, 0.05)
    b.add(result("a", 0), now=10.0)
    b.add(result("a", 1), now=10.04)
    assert b.next_deadline() == pytest.approx(10.05)
    assert b.due(10.049) == []
    due = b.due(10.05)
    assert len(due) == 1
    assert len(due[0].results) == 2
    assert b.due(11.0) == []


def test_linger_is_per_partition() -> None:
    b = Batcher("w", 12, 500, 1.0)
    a, c = "demo-srv-01", "x"  # partitions 8 and 10 of 12
    assert partition_for(a, 12) != partition_for(c, 12)
    b.add(result(a), now=0.0)
    b.add(result(c), now=0.5)
    first = b.due(1.0)
    assert [x.partition for x in first] == [partition_for(a, 12)]
    assert b.next_deadline() == pytest.approx(1.5)
    assert [x.partition for x in b.due(1.5)] == [partition_for(c, 12)]


def test_zero_linger_flushes_on_next_due() -> None:
    b = Batcher("w", 1, 500, 0.0)
    b.add(result("a"), now=3.0)
    assert len(b.due(3.0)) == 1


def test_order_per_server_is_kept_across_batches() -> None:
    b = Batcher("w", 3, 4, 10.0)
    out = []
    for i in range(30):
        for sid in ("a", "b", "c"):
            out += b.add(result(sid, i), 0.0)
    out += b.drain()
    seen: dict[str, list[datetime]] = {}
    for batch in sorted(out, key=lambda x: int(x.batch_id.split(":")[1])):
        for r in batch.results:
            seen.setdefault(r.server_id, []).append(r.started_at)
    for times in seen.values():
        assert times == sorted(times)
        assert len(times) == 30


def test_batch_ids_count_up_and_name_the_worker() -> None:
    b = Batcher("host-1", 1, 1, 0.0, first_seq=5)
    ids = [b.add(result("a", i), 0.0)[0].batch_id for i in range(3)]
    assert ids == ["host-1:5", "host-1:6", "host-1:7"]
    batch = b.add(result("a", 9), 0.0)[0]
    assert batch.worker_id == "host-1"


@pytest.mark.parametrize(("n", "size", "linger"), [(0, 1, 0.0), (1, 0, 0.0), (1, 1, -1.0)])
def test_bad_arguments(n: int, size: int, linger: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Batcher("w", n, size, linger)
