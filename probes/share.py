"""Which servers this probe worker probes: its share of the fleet, from a Kafka consumer group.

Mechanism
---------
The inventory topic is compacted and keyed by server id, so each server lives on exactly one of its
partitions. Every probe worker joins one consumer group (`<topic_prefix>probes`) subscribed to that topic;
the group coordinator gives each partition to exactly one live member. A worker's share is the set of
servers on the partitions it holds, so the workers together cover the fleet without overlap or gaps:

- On assignment (`on_partitions_assigned`) the worker seeks the assigned partitions to the beginning and
  (re)reads them, servers keyed by id (the latest value wins, a tombstone removes the server). Later
  records on those partitions (servers added, changed or removed with `fleetwatch inventory load`) arrive
  the same way while the worker keeps polling.
- On revocation (`on_partitions_revoked`, or `on_partitions_lost` after an eviction) it drops the servers
  of those partitions at once. The group protocol is eager: every member gives its partitions up before any
  member is given new ones, so two workers never hold a server at the same time.
- It never commits offsets: a share is always rebuilt from the start of the compacted topic, so there is no
  offset state to go stale.
- A worker that stops cleanly leaves the group (the consumer's close sends LeaveGroup) and the others take
  its partitions at once. A worker that dies stops heartbeating; the coordinator evicts it after the session
  timeout (`session_timeout_ms`, 6 s by default, heartbeat every second) and rebalances its partitions to the
  survivors, so its servers are probed again within seconds.

The consumer runs in its own thread (kafka-python is blocking; its rebalance callbacks run on the client's
IO thread). Both update one lock-protected table; the asyncio scheduler reads a copy with `snapshot()` and
is told of every change through the `on_change` callback it passes to `start()` (which must be thread-safe,
e.g. `loop.call_soon_threadsafe`). Records that are not a valid Server (bad JSON, schema violation, key not
matching server_id) are skipped, logged and reported to `on_invalid` as dead letters; the previous value of
that server, if any, stays in force.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from pydantic import ValidationError

from fleetcore.clock import Clock, SystemClock
from fleetcore.errors import BrokerError
from schemas.deadletter import DeadLetter
from schemas.inventory import Server

log = logging.getLogger(__name__)

OnChange = Callable[[], None]


class ShareSource(Protocol):
    """Where a worker's share comes from."""

    def start(self, on_change: OnChange) -> None:
        """Begin tracking the share (may block while connecting); call `on_change` after each change."""
        ...

    def snapshot(self) -> tuple[int, dict[str, Server]]:
        """(version, a copy of the share: server id -> Server); the version grows with every change."""
        ...

    def stop(self) -> None:
        """Give the share up (leave the group) and stop tracking; blocking."""
        ...


class StaticShare:
    """A fixed share (tests, benchmarks, a single worker without Kafka). `replace` swaps it at runtime."""

    def __init__(self, servers: Iterable[Server]) -> None:
        self._servers = {s.server_id: s for s in servers}
        self._version = 1
        self._lock = threading.Lock()
        self._on_change: OnChange | None = None

    def start(self, on_change: OnChange) -> None:
        self._on_change = on_change
        on_change()

    def snapshot(self) -> tuple[int, dict[str, Server]]:
        with self._lock:
            return self._version, dict(self._servers)

    def replace(self, servers: Iterable[Server]) -> None:
        """Make `servers` the whole share."""
        with self._lock:
            self._servers = {s.server_id: s for s in servers}
            self._version += 1
        if self._on_change is not None:
            self._on_change()

    def stop(self) -> None:
        self._on_change = None


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, share: KafkaShare) -> None:
        self._share = share

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._share._revoke(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._share._assign(assigned)


class KafkaShare:
    """A worker's share from the probe consumer group on the inventory topic (see the module docstring)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group_id: str,
        *,
        client_id: str = "fleetwatch-probe",
        session_timeout_ms: int = 6000,
        heartbeat_interval_ms: int = 1000,
        poll_timeout_ms: int = 200,
        on_invalid: Callable[[str, DeadLetter], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self._client_id = client_id
        self._session_timeout_ms = session_timeout_ms
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._poll_timeout_ms = poll_timeout_ms
        self._on_invalid = on_invalid
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._parts: dict[int, dict[str, Server]] = {}
        self._version = 0
        self._rejected: set[tuple[int, int]] = set()
        self._on_change: OnChange | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: KafkaConsumer | None = None
        self.error: BaseException | None = None
        """The exception that ended the consumer thread, if one did."""

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self, on_change: OnChange) -> None:
        """Connect, subscribe, and start the consumer thread. Raises BrokerError when Kafka is unreachable."""
        self._on_change = on_change
        try:
            consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id=self._client_id,
                group_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=self._session_timeout_ms,
                heartbeat_interval_ms=self._heartbeat_interval_ms,
                max_poll_records=2000,
            )
            # Join only once this client knows the topic's partitions: a group leader that assigns before its
            # metadata has them logs "No partition metadata" and leaves every member with nothing to probe.
            deadline = time.monotonic() + 30.0
            while not consumer.partitions_for_topic(self.topic):
                if time.monotonic() > deadline:
                    consumer.close()
                    raise BrokerError(f"inventory topic {self.topic} has no partitions (not created?)")
                time.sleep(0.2)
            consumer.subscribe([self.topic], listener=_Listener(self))
        except KafkaError as exc:
            raise BrokerError(f"cannot join probe group {self.group_id} at {self.bootstrap}: {exc}") from exc
        self._consumer = consumer
        self._thread = threading.Thread(target=self._run, name=f"share-{self.group_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Leave the group (partitions move to the other workers at once) and end the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("share consumer thread did not stop within %.0f s", timeout_s)
        self._on_change = None

    def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        try:
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=self._poll_timeout_ms)
                if batches:
                    self._apply(batches)
        except Exception as exc:
            self.error = exc
            log.exception("share consumer of group %s failed", self.group_id)
        finally:
            try:
                consumer.close(autocommit=False, timeout_ms=5000)
            except Exception:
                log.exception("closing the share consumer failed")
            with self._lock:
                self._parts.clear()
                self._version += 1
            self._notify()

    # -- state ---------------------------------------------------------------------------------------
    def snapshot(self) -> tuple[int, dict[str, Server]]:
        with self._lock:
            merged: dict[str, Server] = {}
            for servers in self._parts.values():
                merged.update(servers)
            return self._version, merged

    def assigned_partitions(self) -> set[int]:
        """Inventory partitions this worker holds now."""
        with self._lock:
            return set(self._parts)

    def _notify(self) -> None:
        callback = self._on_change
        if callback is not None:
            try:
                callback()
            except Exception:
                log.exception("share change callback failed")

    def _revoke(self, revoked: Iterable[TopicPartition]) -> None:
        partitions = {tp.partition for tp in revoked if tp.topic == self.topic}
        with self._lock:
            dropped = sum(len(self._parts.pop(p, {})) for p in partitions)
            self._version += 1
        if partitions:
            log.info("inventory partitions %s revoked (%d servers dropped)", sorted(partitions), dropped)
        self._notify()

    def _assign(self, assigned: Iterable[TopicPartition]) -> None:
        mine = [tp for tp in assigned if tp.topic == self.topic]
        with self._lock:
            for tp in mine:
                self._parts[tp.partition] = {}
            self._version += 1
        if mine and self._consumer is not None:
            self._consumer.seek_to_beginning(*mine)
        if mine:
            log.info(
                "inventory partitions %s assigned; reading them from the beginning",
                sorted(tp.partition for tp in mine),
            )
        self._notify()

    def _apply(self, batches: Mapping[TopicPartition, list[Any]]) -> None:
        changed = False
        letters: list[tuple[str, DeadLetter]] = []
        with self._lock:
            for tp, records in batches.items():
                servers = self._parts.get(tp.partition)
                if servers is None:  # revoked meanwhile: its records are stale
                    continue
                for record in records:
                    problem = self._apply_one(servers, record)
                    if problem is None:
                        changed = True
                    elif (tp.partition, record.offset) not in self._rejected:
                        self._rejected.add((tp.partition, record.offset))
                        letters.append(self._letter(tp.partition, record, problem))
            if changed:
                self._version += 1
        for key, letter in letters:
            log.warning("inventory record %s rejected: %s", key, letter.reason)
            if self._on_invalid is not None:
                self._on_invalid(key, letter)
        if changed:
            self._notify()

    @staticmethod
    def _apply_one(servers: dict[str, Server], record: Any) -> str | None:
        if record.key is None:
            return "inventory record without a key (the key must be the server id)"
        key = record.key.decode("utf-8", errors="replace")
        if record.value is None:
            servers.pop(key, None)
            return None
        try:
            server = Server.model_validate_json(record.value)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "(value)"
            return f"not a valid Server: {loc}: {first['msg']}"
        if server.server_id != key:
            return f"key {key!r} does not match server_id {server.server_id!r}"
        servers[key] = server
        return None

    def _letter(self, partition: int, record: Any, reason: str) -> tuple[str, DeadLetter]:
        payload = (record.value or b"").decode("utf-8", errors="replace")[:65536]
        key = f"{self.topic}:{partition}:{record.offset}"
        return key, DeadLetter(
            source_topic=self.topic,
            partition=partition,
            offset=record.offset,
            consumer=self.group_id,
            reason=reason,
            payload=payload,
            rejected_at=self._clock.now(),
        )
