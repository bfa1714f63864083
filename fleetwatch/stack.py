"""`fleetwatch up`: the whole monitor on one machine.

Starts, in order: the local Kafka broker (unless a bootstrap server is configured), the topics, the demo fleet
(a dozen simulated MyCorpServers on 127.0.0.1) and its inventory, then the workers as child processes
(sink, which owns the embedded ClickHouse store and serves its queries; stream; probe). It prints each case
event as it appears on the case topic. Ctrl-C (or SIGTERM) stops the children in reverse order, then the
demo fleet, then the broker, each by its own PID.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetcore.errors import FleetwatchError
from fleetcore.kafka_admin import ensure_topics
from fleetcore.settings import Settings
from fleetwatch.kafka_local import LocalKafka
from schemas.cases import CaseEvent
from schemas.topics import Topics

log = logging.getLogger(__name__)

DEMO_CADENCE = {"probe_interval_s": 15.0, "probe_retry_interval_s": 3.0}
"""Demo cadences: a healthy server every 15 s, a failing one every 3 s, so 10 in a row take ~30 s."""

WORKERS = ("sink", "stream", "probe")
"""Start order; they stop in reverse."""


def _say(message: str) -> None:
    print(f"[fleetwatch up] {message}", flush=True)


def format_case_event(event: CaseEvent) -> str:
    """One readable line per case event."""
    stamp = event.at.strftime("%Y-%m-%d %H:%M:%S")
    what = event.details.get("reason") or ""
    if event.type.value == "server.recovered":
        what = f"server passed again after {event.details.get('outage_seconds')} s"
    error = event.details.get("error_class")
    return (
        f"{stamp}Z  {event.type.value:<17} SEV{int(event.severity)}  server={event.server_id} "
        f"customer={event.customer_id}  case={event.case_id}  {what}{f' ({error})' if error else ''}"
    )


def worker_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    """The environment of a child worker: every setting as FLEETWATCH_<NAME>."""
    env = dict(os.environ)
    values = {**settings.model_dump(), **overrides}
    for name, value in values.items():
        env[f"FLEETWATCH_{name.upper()}"] = str(value)
    return env


@dataclass
class Child:
    """One worker process started by `up`."""

    name: str
    proc: subprocess.Popen[bytes]
    log_file: Path

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_worker(name: str, env: dict[str, str], logs: Path) -> Child:
    """Start `fleetwatch <name>` in its own session (so Ctrl-C reaches only `up`, which stops it in order)."""
    logs.mkdir(parents=True, exist_ok=True)
    log_file = logs / f"{name}.log"
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetwatch.cli", name],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Child(name, proc, log_file)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - our own loopback URL
            return bool(resp.status == 200)
    except OSError:
        return False


def wait_until(check: Callable[[], bool], child: Child | None, timeout_s: float, what: str) -> float:
    """Poll `check` until true; fail early if the child died. Returns seconds waited."""
    start = time.monotonic()
    while not check():
        if child is not None and child.proc.poll() is not None:
            raise FleetwatchError(f"{child.name} exited with {child.proc.returncode}; see {child.log_file}")
        if time.monotonic() - start > timeout_s:
            raise FleetwatchError(f"{what} not ready after {timeout_s:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - start


class CaseWatcher(threading.Thread):
    """Follows the case topic from its end and hands each event to `on_event` (kafka-python, in a thread)."""

    def __init__(self, bootstrap: str, topic: str, on_event: Callable[[CaseEvent], None]) -> None:
        super().__init__(name="case-watcher", daemon=True)
        self.bootstrap, self.topic, self.on_event = bootstrap, topic, on_event
        self.stopping = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        try:
            parts = consumer.partitions_for_topic(self.topic) or set()
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            consumer.seek_to_end(*tps)
            for tp in tps:
                consumer.position(tp)
            self.ready.set()
            while not self.stopping.is_set():
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        try:
                            self.on_event(CaseEvent.model_validate_json(record.value))
                        except ValueError as exc:
                            log.warning("unreadable case event at offset %s: %s", record.offset, exc)
        finally:
            consumer.close()


@dataclass
class Stack:
    """Everything `up` started, so it can stop it in reverse order."""

    settings: Settings
    broker: LocalKafka | None = None
    children: list[Child] = field(default_factory=list)
    watcher: CaseWatcher | None = None
    demo: Any = None

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stopping.set()
        for child in reversed(self.children):
            _say(f"stopping {child.name} (pid {child.proc.pid})")
            child.stop()
        if self.demo is not None:
            self.demo.stop()
        if self.broker is not None:
            _say(f"stopping Kafka (pid {self.broker.pid})")
            self.broker.stop()


def run_up(
    settings: Settings, external_kafka: bool, demo: bool = True, run_for_s: float | None = None
) -> int:
    """Run the whole monitor until Ctrl-C (or for `run_for_s` seconds). Returns the exit code."""
    logging.basicConfig(level=logging.WARNING)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(settings)
    stopping = threading.Event()
    # Ctrl-C and SIGTERM both stop the stack in order. SIGINT is set explicitly: a process started in the
    # background by a non-interactive shell inherits SIGINT as ignored, and Python then keeps ignoring it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        return _up(stack, external_kafka, demo, run_for_s, stopping)
    except KeyboardInterrupt:
        return 0
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            stack.stop()
        _say("stopped")


def _up(
    stack: Stack, external_kafka: bool, demo: bool, run_for_s: float | None, stopping: threading.Event
) -> int:
    settings = stack.settings
    started = time.monotonic()
    if not external_kafka:
        from fleetwatch.kafka_local import ensure_jars

        _say("Kafka 4.4 jars: checking the cache (first run fetches them from Maven Central)")
        ensure_jars()
        broker = LocalKafka(
            settings.data_dir / "kafka",
            port=settings.local_kafka_port,
            controller_port=settings.local_kafka_controller_port,
            heap=settings.local_kafka_heap,
        )
        _say(f"starting Kafka on {broker.bootstrap} (heap {settings.local_kafka_heap})")
        broker.start()
        stack.broker = broker
        settings = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
        _say(f"Kafka ready (pid {broker.pid}, {time.monotonic() - started:.1f} s)")
    topics = Topics(settings.topic_prefix)
    created = ensure_topics(settings.kafka_bootstrap, topics)
    _say(f"topics ready ({len(created)} created)")

    overrides: dict[str, Any] = dict(DEMO_CADENCE) if demo else {}
    if demo:
        from fleetwatch.demo_fleet import DemoFleet, DemoFleetThread

        fleet_thread = DemoFleetThread(DemoFleet())
        servers = fleet_thread.start_serving()
        stack.demo = fleet_thread
        from probes.inventory import publish_inventory

        publish_inventory(settings.kafka_bootstrap, topics, servers, prune=True)
        _say(f"demo fleet: {len(servers)} servers on {fleet_thread.fleet.base_url} (inventory published)")

    env = worker_env(settings, **overrides)
    logs = settings.data_dir / "logs"
    stack.watcher = CaseWatcher(
        settings.kafka_bootstrap, topics.cases, lambda e: print(format_case_event(e), flush=True)
    )
    stack.watcher.start()
    stack.watcher.ready.wait(30)
    for name in WORKERS:
        child = start_worker(name, env, logs)
        stack.children.append(child)
        _say(f"{name} worker started (pid {child.proc.pid}, log {child.log_file})")
    sink = stack.children[0]
    waited = wait_until(lambda: _http_ok(f"{settings.sink_url()}/healthz"), sink, 120, "sink")
    _say(f"sink ready: ClickHouse store {settings.store_dsn()} ({waited:.1f} s)")
    _say(
        f"monitoring. Case events print below; `fleetwatch history <server>` shows history "
        f"(e.g. demo-srv-03). Ctrl-C stops. ({time.monotonic() - started:.1f} s since start)"
    )
    deadline = None if run_for_s is None else time.monotonic() + run_for_s
    while not stopping.is_set():
        for child in stack.children:
            if child.proc.poll() is not None:
                _say(f"{child.name} exited with {child.proc.returncode}; see {child.log_file}")
                return 1
        if deadline is not None and time.monotonic() > deadline:
            return 0
        stopping.wait(0.5)
    return 0
