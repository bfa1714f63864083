"""Shared fixtures: one real Kafka 4.4 broker per test session, and unique topics per test.

Set FLEETWATCH_TEST_BOOTSTRAP to use an already running broker instead of starting one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from fleetcore.kafka_admin import ensure_topics
from schemas.topics import Topics

if TYPE_CHECKING:
    from fleetwatch.kafka_local import LocalKafkaCluster


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


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaCluster]:
    """A real three-node local Kafka cluster (KRaft), started on first use and stopped by its PIDs. Opt-in:
    only the cluster tests ask for it (about 7 s and 3 x 256 MB); the rest keep the single broker."""
    from fleetwatch.kafka_local import LocalKafkaCluster

    cluster = LocalKafkaCluster(Path(tmp_path_factory.mktemp("kafka-cluster")), size=3)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[Topics]:
    """A unique set of registry topics for one test, already created; deleted afterwards with every other
    topic of the prefix (Faust changelogs too), so a long session does not pile up partitions (and the
    broker's open files)."""
    names = Topics(prefix=f"t{uuid.uuid4().hex[:10]}.")
    ensure_topics(kafka_bootstrap, names)
    yield names
    delete_prefixed_topics(kafka_bootstrap, names.prefix)


def delete_prefixed_topics(bootstrap: str, prefix: str) -> None:
    """Delete every topic whose name starts with `prefix` (best effort: a failure only leaves them)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    except KafkaError:
        return
    try:
        doomed = [name for name in admin.list_topics() if name.startswith(prefix)]
        if doomed:
            admin.delete_topics(doomed, timeout_ms=10000)
    except KafkaError:
        pass
    finally:
        admin.close()
