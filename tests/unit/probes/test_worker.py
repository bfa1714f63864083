"""ProbeWorker against a local demo fleet, with a static share and an in-memory sender (no Kafka)."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncIterator

import pytest

from fleetcore.errors import BrokerError, ConfigError
from fleetcore.settings import Settings
from fleetwatch.demo_fleet import DemoFleet, Mode, generated_servers
from probes.partitioner import partition_for, partition_key
from probes.share import StaticShare
from probes.worker import ProbeWorker
from schemas.probes import ProbeResult
from tests.unit.probes.fakes import FakeSender


def fast_settings(**overrides: object) -> Settings:
    base: dict[str, object] = {
        "probe_interval_s": 0.2,
        "probe_retry_interval_s": 0.05,
        "probe_jitter": 0.1,
        "probe_concurrency": 50,
        "batch_linger_ms": 10,
        "probe_metrics_port": 0,
    }
    base.update(overrides)
    return Settings.model_validate(base)


@pytest.fixture
async def fleet() -> AsyncIterator[DemoFleet]:
    async with DemoFleet(script=[], timeout_s=2.0) as demo:  # generous: a loaded CI box answers slowly
        yield demo


def by_server(results: list[ProbeResult]) -> dict[str, list[ProbeResult]]:
    out: dict[str, list[ProbeResult]] = defaultdict(list)
    for r in results:
        out[r.server_id].append(r)
    return out


async def test_probes_every_server_and_batches_by_partition(fleet: DemoFleet) -> None:
    fleet.set_down("demo-srv-03")
    fleet.set_down("demo-tcp-02")
    servers = fleet.servers()
    sender = FakeSender(partitions=4)
    seen: Counter[str] = Counter()
    done = asyncio.Event()

    def on_result(result: ProbeResult) -> None:
        seen[result.server_id] += 1
        if all(seen[s.server_id] >= 2 for s in servers):
            done.set()

    worker = ProbeWorker(
        fast_settings(), share=StaticShare(servers), sender=sender, worker_id="w-unit", on_result=on_result
    )
    stats = await asyncio.wait_for(worker.run(stop_event=done), timeout=30)

    assert sender.closed
    assert stats.undelivered_batches == 0
    results = sender.results()
    assert len(results) == stats.results == stats.results_sent
    grouped = by_server(results)
    assert set(grouped) == {s.server_id for s in servers}
    for batch in sender.batches:
        assert batch.worker_id == "w-unit"
        assert all(
            partition_for(partition_key(r.server_id, r.backup_of), 4) == batch.partition
            for r in batch.results
        )
    secondaries = {s.server_id: s.backup_of for s in servers if s.backup_of}
    assert secondaries  # the demo fleet has pairs: a secondary's results name its primary
    assert all(r.backup_of == secondaries.get(r.server_id) for r in results)
    assert len({b.batch_id for b in sender.batches}) == len(sender.batches)
    assert not any(r.ok for r in grouped["demo-srv-03"])
    assert all(r.error_class == "unexpected_status" for r in grouped["demo-srv-03"])
    assert all(r.error_class == "refused" for r in grouped["demo-tcp-02"])
    assert all(r.ok for r in grouped["demo-srv-01"])
    assert grouped["demo-srv-01"][0].health is not None
    for rs in grouped.values():  # probe order kept per server across batches
        assert [r.started_at for r in rs] == sorted(r.started_at for r in rs)
        assert len({r.probe_id for r in rs}) == len(rs)


async def test_failed_server_is_rechecked_at_the_retry_interval(fleet: DemoFleet) -> None:
    fleet.set_down("demo-srv-04", Mode.RESET)
    servers = [s for s in fleet.servers() if s.server_id in ("demo-srv-01", "demo-srv-04")]
    sender = FakeSender()
    done = asyncio.Event()
    failures = 0

    def on_result(result: ProbeResult) -> None:
        nonlocal failures
        if result.server_id == "demo-srv-04":
            failures += 1
            if failures >= 6:
                done.set()

    settings = fast_settings(probe_interval_s=60.0, probe_retry_interval_s=0.02, probe_jitter=0.0)
    worker = ProbeWorker(settings, share=StaticShare(servers), sender=sender, on_result=on_result)
    await asyncio.wait_for(worker.run(stop_event=done), timeout=30)
    grouped = by_server(sender.results())
    assert len(grouped["demo-srv-04"]) >= 6
    assert all(r.error_class == "reset" for r in grouped["demo-srv-04"])
    assert len(grouped["demo-srv-01"]) == 1  # passed once; next check is a minute away


async def test_recovered_server_goes_back_to_the_normal_interval(fleet: DemoFleet) -> None:
    fleet.set_down("demo-srv-05")
    servers = [s for s in fleet.servers() if s.server_id == "demo-srv-05"]
    sender = FakeSender()
    done = asyncio.Event()
    results: list[ProbeResult] = []

    def on_result(result: ProbeResult) -> None:
        results.append(result)
        if len(results) == 3:
            fleet.set_up("demo-srv-05")
        if result.ok:
            done.set()

    settings = fast_settings(probe_interval_s=60.0, probe_retry_interval_s=0.02)
    worker = ProbeWorker(settings, share=StaticShare(servers), sender=sender, on_result=on_result)
    await asyncio.wait_for(worker.run(stop_event=done), timeout=30)
    assert [r.ok for r in results][:3] == [False, False, False]
    assert results[-1].ok


async def test_send_failures_are_counted_retried_and_never_crash(fleet: DemoFleet) -> None:
    servers = fleet.servers()[:4]
    sender = FakeSender(fail_first=3)
    settings = fast_settings(batch_linger_ms=0)
    worker = ProbeWorker(settings, share=StaticShare(servers), sender=sender)
    stats = await asyncio.wait_for(worker.run(max_results=12), timeout=60)
    assert stats.send_errors == 3
    assert stats.results >= 12
    assert stats.results_sent == stats.results
    assert len(sender.results()) == stats.results
    assert sender.attempts == len(sender.batches) + 3


async def test_concurrency_is_bounded() -> None:
    specs = generated_servers(12)
    async with DemoFleet(specs=specs, script=[], timeout_s=2.0, slow_s=0.05) as demo:
        for spec in specs:
            demo.set_down(spec.server_id, Mode.SLOW)
        settings = fast_settings(probe_concurrency=3, probe_retry_interval_s=0.01, probe_interval_s=0.01)
        worker = ProbeWorker(settings, share=StaticShare(demo.servers()), sender=FakeSender())
        stats = await asyncio.wait_for(worker.run(max_results=24), timeout=30)
    assert stats.max_in_flight == 3
    assert stats.ok >= 24


async def test_share_changes_add_and_remove_servers(fleet: DemoFleet) -> None:
    servers = fleet.servers()
    first, second = servers[:3], servers[3:6]
    old_ids, new_ids = {s.server_id for s in first}, {s.server_id for s in second}
    share = StaticShare(first)
    sender = FakeSender()
    done = asyncio.Event()
    seen: set[str] = set()
    switched_at = None
    late: list[ProbeResult] = []
    worker: ProbeWorker

    def on_result(result: ProbeResult) -> None:
        nonlocal switched_at
        seen.add(result.server_id)
        if switched_at is None and seen >= old_ids:
            share.replace(second)
            switched_at = worker._clock.now()
            assert worker.share_ids() == old_ids  # applied by the scheduler, not from here
        elif switched_at is not None:
            late.append(result)
            if {r.server_id for r in late} >= new_ids:
                done.set()

    worker = ProbeWorker(fast_settings(), share=share, sender=sender, on_result=on_result)
    await asyncio.wait_for(worker.run(stop_event=done), timeout=30)
    assert switched_at is not None
    # no probe of a server that left the share started after the worker learned of it
    assert all(r.started_at <= switched_at for r in late if r.server_id in old_ids)
    assert {r.server_id for r in late} >= new_ids
    assert worker.share_ids() == set()  # given up at shutdown


async def test_duration_option_stops_the_worker(fleet: DemoFleet) -> None:
    worker = ProbeWorker(fast_settings(), share=StaticShare(fleet.servers()), sender=FakeSender())
    stats = await asyncio.wait_for(worker.run(duration_s=0.3), timeout=30)
    assert stats.results > 0


async def test_empty_share_idles_until_stopped() -> None:
    stop = asyncio.Event()
    worker = ProbeWorker(fast_settings(), share=StaticShare([]), sender=FakeSender())
    task = asyncio.create_task(worker.run(stop_event=stop))
    await asyncio.sleep(0)
    stop.set()
    stats = await asyncio.wait_for(task, timeout=10)
    assert stats.results == 0


async def test_metrics_count_outcomes(fleet: DemoFleet) -> None:
    fleet.set_down("demo-srv-01")
    servers = [s for s in fleet.servers() if s.server_id in ("demo-srv-01", "demo-srv-02")]
    worker = ProbeWorker(fast_settings(), share=StaticShare(servers), sender=FakeSender())
    stats = await asyncio.wait_for(worker.run(max_results=4), timeout=30)
    reg = worker.metrics.registry
    ok = reg.get_sample_value("fleetwatch_probes_total", {"outcome": "ok"}) or 0
    bad = reg.get_sample_value("fleetwatch_probes_total", {"outcome": "unexpected_status"}) or 0
    assert ok + bad == stats.results
    assert bad >= 1
    assert reg.get_sample_value("fleetwatch_probe_latency_seconds_count") == stats.results
    assert reg.get_sample_value("fleetwatch_probe_batches_sent_total") == stats.batches_sent


def test_worker_id_defaults_to_host_pid_and_is_checked() -> None:
    worker = ProbeWorker(fast_settings(), share=StaticShare([]), sender=FakeSender())
    assert worker.worker_id.endswith(f"-{__import__('os').getpid()}")
    with pytest.raises(ConfigError, match="worker id"):
        ProbeWorker(fast_settings(), share=StaticShare([]), sender=FakeSender(), worker_id="x" * 300)


class DyingShare(StaticShare):
    """A share source whose consumer thread fails after the first snapshot."""

    error: BaseException | None = None

    def die(self) -> None:
        self.error = RuntimeError("consumer thread crashed")
        self.replace([])


async def test_a_failed_share_source_stops_the_worker_loudly(fleet: DemoFleet) -> None:
    share = DyingShare(fleet.servers()[:2])

    def on_result(result: ProbeResult) -> None:
        share.die()

    worker = ProbeWorker(fast_settings(), share=share, sender=FakeSender(), on_result=on_result)
    with pytest.raises(BrokerError, match="consumer thread crashed"):
        await asyncio.wait_for(worker.run(), timeout=30)
