"""The probe worker: probes its share of the fleet on the policy's cadence and ships the results to Kafka.

One asyncio loop runs:
- the scheduler: a heap of (due time, server); new servers are due within the first window
  (`schedule.first_due`), a passed server again after `probe_interval_s`, a failed one after
  `probe_retry_interval_s` (`schedule.next_due`), each jittered. At most `probe_concurrency` probes run at
  once; when all slots are busy the scheduler waits (backpressure).
- the probes: `checks.check` (aiohttp / asyncio IO) then `classify.classify` (pure);
- the flusher: results go into the `Batcher` (per-partition ProbeBatch envelopes); full or lingering batches
  go to the `Shipper`, which sends them in order per partition and retries failures.

The share (which servers) comes from a `ShareSource`: the Kafka consumer group (`share.KafkaShare`) in
production, a `StaticShare` in tests and benchmarks. Time comes from a fleetcore Clock (a ScaledClock makes
the policy's 15 minutes pass faster); latency and batch linger are measured with `time.monotonic`.

`run(settings)` is the blocking entry point of `fleetwatch probe`: SIGINT/SIGTERM stop it cleanly (leave the
group, finish running probes, deliver pending batches, close the producer). `ProbeWorker.run()` has
run-until options (`stop_event`, `max_results`, `duration_s`) for tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import random
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import aiohttp

from fleetcore.clock import Clock, SystemClock
from fleetcore.errors import BrokerError, ConfigError
from fleetcore.logs import setup_logging
from fleetcore.settings import Settings
from probes import checks
from probes.batcher import Batcher
from probes.classify import classify
from probes.metrics import ProbeMetrics
from probes.schedule import first_due, next_due
from probes.share import KafkaShare, ShareSource
from probes.shipper import Shipper
from schemas.inventory import Server
from schemas.probes import ProbeBatch, ProbeResult
from schemas.topics import Topics

log = logging.getLogger(__name__)

MAX_WORKER_ID = 150


class BatchSender(Protocol):
    """Where ProbeBatch envelopes go (`producer.KafkaBatchSender` in production)."""

    def num_partitions(self) -> int:
        """Partition count of the results topic (may block: called in a thread)."""
        ...

    async def send(self, batch: ProbeBatch) -> None:
        """Deliver one batch to its partition; raise on failure."""
        ...

    async def close(self) -> None:
        """Flush and release the client."""
        ...


def default_worker_id() -> str:
    """`<hostname>-<pid>`."""
    return f"{socket.gethostname()}-{os.getpid()}"


def probe_group_id(settings: Settings) -> str:
    """The consumer group the probe workers of one installation share."""
    return f"{settings.topic_prefix}probes"


@dataclass
class WorkerStats:
    """What a worker did so far."""

    results: int = 0
    """Probe results produced."""
    ok: int = 0
    """Of which passed."""
    outcomes: Counter[str] = field(default_factory=Counter)
    """Results by outcome: `ok` or the error class."""
    batches_sent: int = 0
    """ProbeBatch messages acknowledged."""
    results_sent: int = 0
    """Results in acknowledged batches."""
    send_errors: int = 0
    """Failed sends (each retried)."""
    undelivered_batches: int = 0
    """Batches still undelivered when the worker stopped."""
    max_in_flight: int = 0
    """Most probes that ran at the same time."""


@dataclass(eq=False)
class _Entry:
    server: Server
    due: datetime
    last_ok: bool | None = None
    in_flight: bool = False


class ProbeWorker:
    """Probes one share of the fleet. Owns (and closes) the share source and the sender it is given."""

    def __init__(
        self,
        settings: Settings,
        *,
        share: ShareSource,
        sender: BatchSender,
        clock: Clock | None = None,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        metrics: ProbeMetrics | None = None,
        on_result: Callable[[ProbeResult], None] | None = None,
        stop_grace_s: float = 5.0,
    ) -> None:
        wid = worker_id or settings.probe_worker_id or default_worker_id()
        if not 0 < len(wid) <= MAX_WORKER_ID:
            raise ConfigError(f"probe worker id must be 1-{MAX_WORKER_ID} characters: {wid!r}")
        self.worker_id = wid
        self.settings = settings
        self.metrics = metrics or ProbeMetrics()
        self.stats = WorkerStats()
        self._share = share
        self._sender = sender
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._on_result = on_result
        self._stop_grace_s = stop_grace_s
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[datetime, int, str, _Entry]] = []
        self._seq = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = 0
        self._share_error: BaseException | None = None
        self._max_results: int | None = None
        self._sleep_until: datetime | None = None
        self._started = False
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._share_changed = asyncio.Event()
        self._batch_wake = asyncio.Event()
        self._sem = asyncio.Semaphore(settings.probe_concurrency)
        self._shipper = Shipper(self._sender.send, on_sent=self._sent, on_error=self._send_failed)
        self._batcher_: Batcher | None = None
        self._session_: aiohttp.ClientSession | None = None

    @property
    def _batcher(self) -> Batcher:
        if self._batcher_ is None:
            raise RuntimeError("the worker is not running")
        return self._batcher_

    @property
    def _session(self) -> aiohttp.ClientSession:
        if self._session_ is None:
            raise RuntimeError("the worker is not running")
        return self._session_

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        worker_id: str | None = None,
        metrics: ProbeMetrics | None = None,
        on_result: Callable[[ProbeResult], None] | None = None,
        session_timeout_ms: int = 6000,
    ) -> ProbeWorker:
        """A worker wired to Kafka (group share of the inventory, batches to probe-results). Blocks."""
        from probes.producer import KafkaBatchSender

        wid = worker_id or settings.probe_worker_id or default_worker_id()
        topics = Topics(settings.topic_prefix)
        sender = KafkaBatchSender(
            settings.kafka_bootstrap,
            topics.probe_results,
            dead_letter_topic=topics.dead_letter,
            client_id=f"fleetwatch-probe-{wid}",
        )
        share = KafkaShare(
            settings.kafka_bootstrap,
            topics.inventory,
            probe_group_id(settings),
            client_id=f"fleetwatch-probe-{wid}",
            session_timeout_ms=session_timeout_ms,
            on_invalid=sender.send_dead_letter,
            clock=clock,
        )
        return cls(
            settings,
            share=share,
            sender=sender,
            clock=clock,
            worker_id=wid,
            metrics=metrics,
            on_result=on_result,
        )

    # -- inspection (tests, health) --------------------------------------------------------------------
    def share_ids(self) -> set[str]:
        """Server ids this worker schedules now (its share as the scheduler applied it)."""
        return set(self._entries)

    @property
    def share(self) -> ShareSource:
        return self._share

    def stop(self) -> None:
        """Ask a running worker to stop (from the worker's loop)."""
        self._stopping.set()
        self._wake.set()

    # -- main ----------------------------------------------------------------------------------------
    async def run(
        self,
        *,
        stop_event: asyncio.Event | None = None,
        max_results: int | None = None,
        duration_s: float | None = None,
    ) -> WorkerStats:
        """Probe until `stop_event` is set, `max_results` results were produced, or `duration_s` (real
        seconds) passed, whichever comes first (no option: until `stop()` or cancellation). Then leave the
        share, finish running probes (up to `stop_grace_s`), deliver pending batches, close everything."""
        if self._started:
            raise RuntimeError("a ProbeWorker runs once")
        self._started = True
        loop = asyncio.get_running_loop()
        self._max_results = max_results
        try:
            partitions = await asyncio.to_thread(self._sender.num_partitions)
        except BaseException:
            await self._sender.close()
            raise
        self._batcher_ = Batcher(
            self.worker_id, partitions, self.settings.batch_max_results, self.settings.batch_linger_ms / 1000
        )
        self._session_ = checks.new_session(self.settings.probe_concurrency)
        helpers: list[asyncio.Task[None]] = []
        timer: asyncio.TimerHandle | None = None
        share_started = False
        try:
            if stop_event is not None:
                helpers.append(asyncio.create_task(self._stop_when(stop_event)))
            if duration_s is not None:
                timer = loop.call_later(duration_s, self.stop)

            loop_thread = threading.get_ident()

            def changed() -> None:
                if threading.get_ident() == loop_thread:
                    self._mark_share_changed()
                    return
                with contextlib.suppress(RuntimeError):  # loop already closed
                    loop.call_soon_threadsafe(self._mark_share_changed)

            await asyncio.to_thread(self._share.start, changed)
            share_started = True
            log.info("probe worker %s started (%d result partitions)", self.worker_id, partitions)
            helpers.append(asyncio.create_task(self._flush_loop()))
            await self._schedule_loop()
        finally:
            if timer is not None:
                timer.cancel()
            await self._shutdown(share_started, helpers)
        if self._share_error is not None:
            raise BrokerError(
                f"the share of probe worker {self.worker_id} failed: {self._share_error}"
            ) from (self._share_error)
        return self.stats

    async def _stop_when(self, event: asyncio.Event) -> None:
        await event.wait()
        self.stop()

    def _mark_share_changed(self) -> None:
        self._share_changed.set()
        self._wake.set()

    async def _shutdown(self, share_started: bool, helpers: list[asyncio.Task[None]]) -> None:
        self.stop()
        if share_started:
            await asyncio.to_thread(self._share.stop)
        self._entries.clear()
        self.metrics.servers.set(0)
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=self._stop_grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        for task in helpers:
            task.cancel()
        for task in helpers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for batch in self._batcher.drain():
            self._shipper.put(batch)
        self.stats.undelivered_batches = await self._shipper.close(timeout_s=10.0)
        await self._session.close()
        await self._sender.close()
        log.info(
            "probe worker %s stopped: %d results, %d batches sent, %d send errors",
            self.worker_id,
            self.stats.results,
            self.stats.batches_sent,
            self.stats.send_errors,
        )

    # -- scheduling ----------------------------------------------------------------------------------
    def _apply_share(self, now: datetime) -> None:
        self._share_changed.clear()
        error = getattr(self._share, "error", None)
        if isinstance(error, BaseException) and self._share_error is None:
            # the share source died (its consumer thread failed): stop rather than idle unnoticed
            log.error("share source failed, stopping the worker: %s", error)
            self._share_error = error
            self.stop()
        _version, servers = self._share.snapshot()
        for server_id in [sid for sid in self._entries if sid not in servers]:
            del self._entries[server_id]
        s = self.settings
        for server_id, server in servers.items():
            entry = self._entries.get(server_id)
            if entry is None:
                due = first_due(now, s.probe_interval_s, s.probe_retry_interval_s, self._rng)
                entry = self._entries[server_id] = _Entry(server, due)
                self._push(entry)
            elif entry.server != server:
                entry.server = server
        self.metrics.servers.set(len(self._entries))

    def _push(self, entry: _Entry) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (entry.due, self._seq, entry.server.server_id, entry))
        if self._wake is not None and (self._sleep_until is None or entry.due < self._sleep_until):
            self._wake.set()

    def _pop_due(self, now: datetime) -> _Entry | None:
        while self._heap and self._heap[0][0] <= now:
            due, _seq, server_id, entry = heapq.heappop(self._heap)
            if self._entries.get(server_id) is entry and entry.due == due and not entry.in_flight:
                return entry
        return None

    async def _schedule_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            now = self._clock.now()
            if self._share_changed.is_set():
                self._apply_share(now)
            while not self._stopping.is_set():
                entry = self._pop_due(now)
                if entry is None:
                    break
                if not await self._acquire_slot():
                    return
                if self._share_changed.is_set():  # the share moved while we waited for a slot
                    self._apply_share(self._clock.now())
                if self._entries.get(entry.server.server_id) is not entry:
                    self._release_slot()  # left the share while we waited for a slot
                    continue
                entry.in_flight = True
                task = asyncio.create_task(self._probe(entry))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                now = self._clock.now()
            timeout: float | None = None
            self._sleep_until = None
            if self._heap:
                self._sleep_until = self._heap[0][0]
                timeout = max(0.0, (self._sleep_until - self._clock.now()).total_seconds())
                timeout /= self._clock.scale()
            await _wait(self._wake, timeout)

    async def _acquire_slot(self) -> bool:
        if not self._sem.locked():
            await self._sem.acquire()
            return True
        acquire = asyncio.ensure_future(self._sem.acquire())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({acquire, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if acquire.done() and not acquire.cancelled():
            return True
        acquire.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            if await acquire:  # it got the slot just before the cancel
                self._release_slot()
        return False

    def _release_slot(self) -> None:
        self._sem.release()

    async def _probe(self, entry: _Entry) -> None:
        server = entry.server
        self.metrics.in_flight.inc()
        self._running += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self._running)
        ok = False
        try:
            if self._share_changed.is_set():
                self._apply_share(self._clock.now())
            if self._entries.get(server.server_id) is not entry:
                return  # the server left this worker's share before its probe started
            raw = await checks.check(self._session, server, self._clock)
            result = classify(
                server, raw.started_at, raw.latency_ms, raw.status_code, raw.body, raw.error, self.worker_id
            )
            ok = result.ok
            self._record(result)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("probe of %s failed unexpectedly", server.server_id)
        finally:
            self.metrics.in_flight.dec()
            self._running -= 1
            self._release_slot()
            entry.in_flight = False
        if self._entries.get(server.server_id) is entry:
            s = self.settings
            entry.last_ok = ok
            entry.due = next_due(
                ok, self._clock.now(), s.probe_interval_s, s.probe_retry_interval_s, s.probe_jitter, self._rng
            )
            self._push(entry)

    # -- results -------------------------------------------------------------------------------------
    def _record(self, result: ProbeResult) -> None:
        outcome = "ok" if result.ok else (result.error_class or "error")
        self.stats.results += 1
        self.stats.ok += int(result.ok)
        self.stats.outcomes[outcome] += 1
        self.metrics.probes.labels(outcome=outcome).inc()
        self.metrics.latency.observe(result.latency_ms / 1000.0)
        was_empty = self._batcher.pending_results == 0
        for batch in self._batcher.add(result, time.monotonic()):
            self._shipper.put(batch)
        if was_empty:
            self._batch_wake.set()
        if self._on_result is not None:
            self._on_result(result)
        if self._max_results is not None and self.stats.results >= self._max_results:
            self.stop()

    async def _flush_loop(self) -> None:
        while True:
            deadline = self._batcher.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            await _wait(self._batch_wake, timeout)
            self._batch_wake.clear()
            for batch in self._batcher.due(time.monotonic()):
                self._shipper.put(batch)

    def _sent(self, batch: ProbeBatch) -> None:
        self.stats.batches_sent += 1
        self.stats.results_sent += len(batch.results)
        self.metrics.batches_sent.inc()
        self.metrics.results_sent.inc(len(batch.results))

    def _send_failed(self, batch: ProbeBatch, exc: BaseException) -> None:
        self.stats.send_errors += 1
        self.metrics.send_errors.inc()


async def _wait(event: asyncio.Event, seconds: float | None) -> None:
    """Wait for `event` or `seconds`, whichever comes first."""
    if event.is_set():
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


async def _main(settings: Settings, clock: Clock | None) -> None:
    topics = Topics(settings.topic_prefix)
    if settings.create_topics:
        from fleetcore.kafka_admin import ensure_topics

        await asyncio.to_thread(ensure_topics, settings.kafka_bootstrap, topics)
    worker = await asyncio.to_thread(ProbeWorker.from_settings, settings, clock=clock)
    metrics_server = None
    if settings.probe_metrics_port:
        metrics_server = worker.metrics.serve(settings.probe_metrics_port, addr=settings.metrics_host)
        log.info("probe metrics on :%d/metrics", settings.probe_metrics_port)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await worker.run(stop_event=stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if metrics_server is not None:
            metrics_server.shutdown()


def run(settings: Settings, *, clock: Clock | None = None) -> None:
    """`fleetwatch probe`: run one probe worker until SIGINT/SIGTERM. Blocking."""
    setup_logging(settings.log_level)
    asyncio.run(_main(settings, clock))
