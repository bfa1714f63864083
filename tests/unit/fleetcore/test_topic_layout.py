"""Topic layout: partition counts from the settings and the replication factor from the cluster size."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fleetcore.errors import BrokerError
from fleetcore.kafka_admin import new_topics, replication_for
from fleetcore.settings import Settings
from schemas.topics import INVENTORY, PROBE_RESULTS, TOPICS, Topics


def _layout(settings: Settings, brokers: int) -> dict[str, tuple[int, int, str]]:
    topics = Topics("x.")
    wanted = {topics.name(spec): spec for spec in TOPICS.values()}
    factor, min_isr = replication_for(brokers, settings.topic_replication_factor)
    return {
        new.name.removeprefix("x."): (
            new.num_partitions,
            new.replication_factor,
            new.topic_configs["min.insync.replicas"],
        )
        for new in new_topics(wanted, settings.topic_partitions, factor, min_isr)
    }


def test_single_broker_keeps_one_replica_and_the_registry_partition_counts() -> None:
    layout = _layout(Settings(), brokers=1)
    assert layout == {name: (spec.partitions, 1, "1") for name, spec in TOPICS.items()}


def test_three_brokers_give_three_replicas_with_min_insync_two() -> None:
    layout = _layout(Settings(), brokers=3)
    assert {(rf, isr) for _, rf, isr in layout.values()} == {(3, "2")}
    assert replication_for(5) == (3, 2)
    assert replication_for(3, configured=2) == (2, 1)


def test_replication_beyond_the_cluster_is_refused() -> None:
    with pytest.raises(BrokerError, match="needs 3 brokers"):
        replication_for(1, configured=3)


def test_partition_setting_from_the_environment_reaches_the_created_topics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLEETWATCH_TOPIC_PARTITIONS", '{"fleet-inventory": 48, "dead-letter": 3}')
    layout = _layout(Settings(), brokers=3)
    assert layout["fleet-inventory"] == (48, 3, "2")
    assert layout["dead-letter"][0] == 3
    assert layout["probe-results"][0] == PROBE_RESULTS.partitions
    assert layout["maintenance"][0] == TOPICS["maintenance"].partitions


def test_keyed_state_topics_and_unknown_topics_cannot_be_resized() -> None:
    with pytest.raises(ValidationError, match="keyed state"):
        Settings(topic_partitions={"probe-results": 8})
    with pytest.raises(ValidationError, match="no registry topic"):
        Settings(topic_partitions={"fleet-inventry": 8})
    with pytest.raises(ValidationError, match="at least 1"):
        Settings(topic_partitions={"fleet-inventory": 0})
    assert Settings(topic_partitions={"probe-results": PROBE_RESULTS.partitions}).topic_partitions
    assert INVENTORY.keyed_state is False


def test_local_broker_count_comes_from_the_environment_as_one_or_three(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLEETWATCH_LOCAL_KAFKA_BROKERS", "3")
    assert Settings().local_kafka_brokers == 3
    monkeypatch.setenv("FLEETWATCH_LOCAL_KAFKA_BROKERS", "2")
    with pytest.raises(ValidationError, match="1 or 3"):
        Settings()
