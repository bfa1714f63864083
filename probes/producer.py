"""Thin kafka-python adapter: each ProbeBatch (JSON) goes to its explicit partition of probe-results.

The producer is idempotent with acks=all, so the broker keeps the order of the batches of one partition even
when the client retries internally. A batch the client finally gives up on (delivery timeout, or a
non-retriable error) surfaces as `SendError` from `send`; the worker's shipper retries it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from kafka import KafkaProducer
from kafka.codec import has_lz4
from kafka.errors import KafkaError

from fleetcore.errors import BrokerError
from probes.errors import SendError
from schemas.deadletter import DeadLetter
from schemas.probes import ProbeBatch

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1_000_000
"""Largest message the producer sends (the broker's default limit is about 1 MiB)."""


def compression() -> str | None:
    """lz4 when the lz4 package is installed, else no compression."""
    return "lz4" if has_lz4() else None


class KafkaBatchSender:
    """Sends ProbeBatch envelopes to `topic`, each to the partition named in the batch."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        dead_letter_topic: str | None = None,
        client_id: str = "fleetwatch-probe",
        linger_ms: int = 5,
        delivery_timeout_ms: int = 30_000,
    ) -> None:
        self.topic = topic
        self.dead_letter_topic = dead_letter_topic
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap,
                client_id=client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=linger_ms,
                compression_type=compression(),
                batch_size=MAX_MESSAGE_BYTES,
                max_request_size=MAX_MESSAGE_BYTES,
                request_timeout_ms=10_000,
                delivery_timeout_ms=max(delivery_timeout_ms, 10_000 + linger_ms),
                max_block_ms=10_000,
            )
        except KafkaError as exc:
            raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
        self._partitions: int | None = None

    def num_partitions(self) -> int:
        """Partition count of the probe-results topic, from the broker's metadata (asked once)."""
        if self._partitions is None:
            try:
                partitions = self._producer.partitions_for(self.topic)
            except KafkaError as exc:
                raise BrokerError(f"no metadata for topic {self.topic}: {exc}") from exc
            if not partitions:
                raise BrokerError(f"topic {self.topic} does not exist (create it with the registry)")
            self._partitions = len(partitions)
        return self._partitions

    async def send(self, batch: ProbeBatch) -> None:
        """Send one batch and wait for the broker's acknowledgement; raise SendError when it fails."""
        value = batch.model_dump_json().encode()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def _settle(exc: BaseException | None) -> None:
            if done.done():
                return
            if exc is None:
                done.set_result(None)
            else:
                done.set_exception(exc)

        def _ok(_meta: Any) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                loop.call_soon_threadsafe(_settle, None)

        def _fail(exc: BaseException) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, exc)

        try:
            future = await asyncio.to_thread(
                self._producer.send, self.topic, value=value, partition=batch.partition
            )
        except (KafkaError, ValueError, AssertionError) as exc:
            raise SendError(f"batch {batch.batch_id}: {type(exc).__name__}: {exc}") from exc
        future.add_callback(_ok)
        future.add_errback(_fail)
        try:
            await done
        except KafkaError as exc:
            raise SendError(f"batch {batch.batch_id}: {type(exc).__name__}: {exc}") from exc

    def send_dead_letter(self, key: str, letter: DeadLetter) -> None:
        """Fire-and-forget a dead letter (for rejected inventory records); failures are only logged."""
        if self.dead_letter_topic is None:
            return
        try:
            future = self._producer.send(
                self.dead_letter_topic, key=key.encode(), value=letter.model_dump_json().encode()
            )
            future.add_errback(lambda exc: log.warning("dead letter %s not sent: %s", key, exc))
        except KafkaError as exc:
            log.warning("dead letter %s not sent: %s", key, exc)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is buffered and close the producer."""
        await asyncio.to_thread(self._close, timeout_s)

    def _close(self, timeout_s: float) -> None:
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            log.warning("flush at close failed: %s", exc)
        self._producer.close(timeout=timeout_s)
