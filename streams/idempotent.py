"""Faust's Kafka transport with an idempotent producer (acks=all, enable_idempotence=True).

faust-streaming 0.15.3 turns idempotence on only inside exactly-once transactions; its producer settings
otherwise have no such switch. This transport's producer always adds it, so a send retried after a lost ack
(a broker killed in a cluster) is not written twice. The stream app names it with the `fwkafka://` scheme.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka

SCHEME = "fwkafka"


class Producer(faust_aiokafka.Producer):
    """Faust's aiokafka producer, always idempotent with acks=all."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with the idempotent `Producer`."""

    Producer = Producer


def register() -> None:
    """Make `fwkafka://host:port` broker URLs resolve to this transport (idempotent)."""
    TRANSPORTS.aliases.setdefault(SCHEME, f"{__name__}:Transport")
