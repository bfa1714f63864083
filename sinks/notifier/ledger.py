"""The delivery ledger: which (notification key, contact) pairs were delivered, kept on a compacted topic.

Record key `<notification key>|<contact id>`, value the Notification delivered, written to the ledger
partition with the number of the notifications partition the request came from. So the notifier that owns
notifications partition p reads ledger partition p from the start to its end before it handles anything
of p, and knows every pair delivered for p, whichever process delivered it (`LedgerReader.load`).
"""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from fleetcore.errors import BrokerError


class LedgerReader:
    """Reads whole ledger partitions into sets of delivered ledger keys (own consumer, no group)."""

    def __init__(self, bootstrap: str, topic: str, timeout_s: float = 120.0) -> None:
        self.topic = topic
        self.timeout_s = timeout_s
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            client_id="fleetwatch-notify-ledger",
        )

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def load(self, partitions: list[int]) -> dict[int, set[str]]:
        """Every delivered key of each partition, read from the beginning to the current end."""
        keys: dict[int, set[str]] = {p: set() for p in partitions}
        if not partitions:
            return keys
        tps = [TopicPartition(self.topic, p) for p in partitions]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        ends = await self._consumer.end_offsets(tps)
        remaining = {tp for tp in tps if await self._consumer.position(tp) < ends[tp]}
        deadline = time.monotonic() + self.timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise BrokerError(f"reading ledger {self.topic} took longer than {self.timeout_s} s")
            batch = await self._consumer.getmany(*remaining, timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    if record.key is None:
                        continue
                    key = record.key.decode(errors="replace")
                    if record.value is None:
                        keys[tp.partition].discard(key)
                    else:
                        keys[tp.partition].add(key)
            for tp in list(remaining):
                if await self._consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return keys
