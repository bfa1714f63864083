"""Topic creation from the registry, with kafka-python's admin client (never broker auto-create)."""

from __future__ import annotations

import logging
import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from fleetcore.errors import BrokerError
from fleetcore.settings import Settings
from schemas.topics import TOPICS, Topics, TopicSpec, check_partition_overrides, partitions_of

log = logging.getLogger(__name__)


def replication_for(brokers: int, configured: int = 0) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of new topics: `configured` (0: 3 on a cluster of 3 or
    more brokers, else 1), and min ISR 2 for 3 or more replicas (one may be down), else 1."""
    factor = configured or (3 if brokers >= 3 else 1)
    if factor > brokers:
        raise BrokerError(f"replication factor {factor} needs {factor} brokers; the cluster has {brokers}")
    return factor, max(1, min(2, factor - 1))


def new_topics(
    wanted: dict[str, TopicSpec], partitions: dict[str, int] | None, factor: int, min_isr: int
) -> list[NewTopic]:
    """The NewTopic requests for `wanted` (full name -> spec) under a partition and replication layout."""
    return [
        NewTopic(
            name,
            partitions_of(spec, partitions),
            factor,
            topic_configs={**spec.config(), "min.insync.replicas": str(min_isr)},
        )
        for name, spec in wanted.items()
    ]


def ensure_topics(
    bootstrap: str,
    topics: Topics,
    specs: list[TopicSpec] | None = None,
    timeout_s: float = 30.0,
    *,
    partitions: dict[str, int] | None = None,
    replication_factor: int = 0,
) -> list[str]:
    """Create every registry topic that is missing; return the names created. Idempotent.

    `partitions` overrides the registry's counts by unprefixed name (settings.topic_partitions);
    `replication_factor` 0 follows the cluster: 3 replicas with min.insync.replicas 2 on 3+ brokers, else 1/1.
    Existing topics are left as they are.
    """
    if partitions:
        check_partition_overrides(partitions)
    wanted = {topics.name(spec): spec for spec in (specs or list(TOPICS.values()))}
    deadline = time.monotonic() + timeout_s
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fleetwatch-admin")
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        brokers = len(admin.describe_cluster().get("brokers", []))
        factor, min_isr = replication_for(brokers, replication_factor)
        missing = new_topics(
            {name: spec for name, spec in wanted.items() if name not in existing}, partitions, factor, min_isr
        )
        created = []
        for new in missing:
            try:
                admin.create_topics([new])
                created.append(new.name)
            except TopicAlreadyExistsError:
                pass
        while time.monotonic() < deadline:
            described = admin.describe_topics(list(wanted))
            if all(t.get("error_code", 0) == 0 and t.get("partitions") for t in described):
                break
            time.sleep(0.1)
        else:
            raise BrokerError(f"topics not ready after {timeout_s} s: {sorted(wanted)}")
        if created:
            log.info("created topics %s", ", ".join(created))
        return created
    except KafkaError as exc:
        raise BrokerError(f"creating topics on {bootstrap} failed: {exc}") from exc
    finally:
        admin.close()


def ensure_topics_of(settings: Settings, topics: Topics, specs: list[TopicSpec] | None = None) -> list[str]:
    """`ensure_topics` at settings.kafka_bootstrap with the settings' partition and replication layout."""
    return ensure_topics(
        settings.kafka_bootstrap,
        topics,
        specs,
        partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
    )


def cluster_replication(bootstrap: str, configured: int = 0) -> tuple[int, int]:
    """`replication_for` the cluster at `bootstrap` (its broker count from the metadata)."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fleetwatch-admin")
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        return replication_for(len(admin.describe_cluster().get("brokers", [])), configured)
    except KafkaError as exc:
        raise BrokerError(f"describing the cluster at {bootstrap} failed: {exc}") from exc
    finally:
        admin.close()
