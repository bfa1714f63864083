"""Shared fixtures: one real Kafka 4.4 broker per test session, and unique topics per test.

Set FLEETWATCH_TEST_BOOTSTRAP to use an already running broker instead of starting one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcore.kafka_admin import ensure_topics
from schemas.topics import Topics


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real local Kafka broker, started for this session and stopped by its PID."""
    external = os.environ.get("FLEETWATCH_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    from fleetwatch.kafka_local import LocalKafka

    broker = LocalKafka(Path(tmp_path_factory.mktemp("kafka")))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def topics(kafka_bootstrap: str) -> Topics:
    """A unique set of registry topics for one test, already created."""
    names = Topics(prefix=f"t{uuid.uuid4().hex[:10]}.")
    ensure_topics(kafka_bootstrap, names)
    return names
