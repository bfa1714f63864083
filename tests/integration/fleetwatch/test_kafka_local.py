"""The local broker really serves Kafka: topics from the registry, produce and consume round trip."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from fleetcore.kafka_admin import ensure_topics
from schemas.topics import TOPICS, Topics

pytestmark = pytest.mark.integration


def test_registry_topics_have_their_partitions_and_policies(kafka_bootstrap: str, topics: Topics) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        described = {t["name"]: t for t in admin.describe_topics([topics.name(s) for s in TOPICS.values()])}
        for spec in TOPICS.values():
            assert len(described[topics.name(spec)]["partitions"]) == spec.partitions
        from kafka.admin import ConfigResource, ConfigResourceType

        for spec in TOPICS.values():
            res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topics.name(spec))])
            config = res["topic"][topics.name(spec)]
            assert config["cleanup.policy"]["value"] == spec.cleanup_policy
    finally:
        admin.close()
    # a second call creates nothing
    assert ensure_topics(kafka_bootstrap, topics) == []


def test_produce_consume_round_trip(kafka_bootstrap: str, topics: Topics) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    producer.send(topics.dead_letter, key=b"k", value=b"hello").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, consumer_timeout_ms=10000)
    tp = TopicPartition(topics.dead_letter, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    values = [m.value for m in consumer]
    consumer.close()
    assert values == [b"hello"]


def test_no_auto_create(kafka_bootstrap: str) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_block_ms=3000)
    with pytest.raises(Exception, match=r"(?i)timeout|unknown|not"):
        producer.send("never-created-topic", b"x").get(timeout=5)
    producer.close(timeout=1)
