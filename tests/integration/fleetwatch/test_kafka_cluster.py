"""The local three-node KRaft cluster: `fleetwatch kafka --brokers 3`, replicated registry topics, a node
killed with SIGKILL while a producer (acks=all, idempotent) keeps writing, its rejoin, and the stop by PID."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError

from fleetcore.kafka_admin import ensure_topics_of
from fleetcore.settings import Settings
from fleetwatch.kafka_local import LocalKafkaCluster
from schemas.topics import TOPICS, Topics
from tests.helpers import fleetwatch_env, wait_for

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _describe(bootstrap: str, names: list[str]) -> list[dict[str, Any]] | None:
    """describe_topics, or None while the client picked a dead node (ECONNREFUSED) or metadata lags."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    except KafkaError:
        return None
    try:
        described: list[dict[str, Any]] = admin.describe_topics(names)
        return described
    except KafkaError:
        return None
    finally:
        admin.close()


def _min_insync(bootstrap: str, name: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        answer = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, configs={"min.insync.replicas": None})],
            config_filter="all",
        )
    finally:
        admin.close()
    found = re.search(r"min\.insync\.replicas'?\W+(?:'value'\W+)?'?(\d+)", repr(answer))
    assert found, f"no min.insync.replicas in {answer!r}"
    return found.group(1)


def _check_replicated(bootstrap: str, topics: Topics, replicas: int, min_isr: str) -> None:
    names = [topics.name(spec) for spec in TOPICS.values()]
    described = wait_for(lambda: _describe(bootstrap, names), 30, "the topics' metadata")
    assert len(described) == len(names)
    for topic in described:
        for part in topic["partitions"]:
            assert len(part["replica_nodes"]) == replicas, (topic["topic"], part)
    assert _min_insync(bootstrap, topics.probe_results) == min_isr
    assert _min_insync(bootstrap, topics.cases) == min_isr


def test_kafka_command_with_three_brokers_serves_replicated_topics_and_stops_every_jvm(
    tmp_path: Path,
) -> None:
    topics = Topics(f"c{uuid.uuid4().hex[:8]}.")
    env = fleetwatch_env(topic_prefix=topics.prefix)
    out, err = tmp_path / "kafka.out", tmp_path / "kafka.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetwatch.cli", "kafka", "--brokers", "3", "--port", "0",
             "--controller-port", "0", "--data-dir", str(tmp_path / "data")],
            env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    jvms: list[int] = []
    try:

        def bootstrap() -> str | None:
            assert proc.poll() is None, err.read_text()[-3000:]
            found = re.search(r"^bootstrap=(\S+)$", out.read_text(), re.MULTILINE)
            return found.group(1) if found else None

        address = wait_for(bootstrap, 180, "the bootstrap line")
        assert len(address.split(",")) == 3
        jvms = [int(p) for p in re.findall(r"Kafka ready \(pid ([\d, ]+)\)", err.read_text())[0].split(",")]
        assert len(jvms) == 3
        assert all(_alive(pid) for pid in jvms)
        admin = KafkaAdminClient(bootstrap_servers=address)
        brokers = admin.describe_cluster()["brokers"]
        admin.close()
        assert sorted(b["broker_id"] for b in brokers) == [1, 2, 3]
        _check_replicated(address, topics, replicas=3, min_isr="2")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, err.read_text()[-3000:]
        assert not [pid for pid in jvms if _alive(pid)], "a node's JVM outlived `fleetwatch kafka`"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for pid in jvms:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_single_broker_topics_keep_one_replica_and_min_insync_one(kafka_bootstrap: str) -> None:
    topics = Topics(f"s{uuid.uuid4().hex[:8]}.")
    ensure_topics_of(Settings(kafka_bootstrap=kafka_bootstrap), topics)
    _check_replicated(kafka_bootstrap, topics, replicas=1, min_isr="1")


def _isr_full(cluster: LocalKafkaCluster, topic: str) -> bool:
    described = _describe(cluster.bootstrap, [topic])
    if not described or not described[0]["partitions"]:
        return False
    return all(sorted(p["isr_nodes"]) == [1, 2, 3] for p in described[0]["partitions"])


def test_producer_keeps_writing_through_a_killed_node_which_rejoins(kafka_cluster: LocalKafkaCluster) -> None:
    topics = Topics(f"k{uuid.uuid4().hex[:8]}.")
    settings = Settings(
        kafka_bootstrap=kafka_cluster.bootstrap,
        topic_prefix=topics.prefix,
        topic_partitions={"fleet-inventory": 6},
    )
    ensure_topics_of(settings, topics)
    inventory = wait_for(lambda: _describe(kafka_cluster.bootstrap, [topics.inventory]), 30, "inventory")
    assert len(inventory[0]["partitions"]) == 6  # the setting reached the created topic
    topic = topics.dead_letter
    wait_for(lambda: _isr_full(kafka_cluster, topic), 30, "ISR of 3")

    producer = KafkaProducer(
        bootstrap_servers=kafka_cluster.bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    try:
        for i in range(200):
            producer.send(topic, value=f"m{i}".encode())
        producer.flush(timeout=30)
        leader = wait_for(lambda: _describe(kafka_cluster.bootstrap, [topic]), 30, "leader")
        victim = kafka_cluster.nodes[leader[0]["partitions"][0]["leader_id"] - 1]  # the partition's leader
        victim.kill()
        assert not victim.running
        started = time.monotonic()
        futures = [producer.send(topic, value=f"m{i}".encode()) for i in range(200, 400)]
        for future in futures:
            future.get(timeout=60)
        stall = time.monotonic() - started
        print(f"200 messages with node {victim.node_id} killed took {stall:.1f} s")
        assert stall < 30
    finally:
        producer.close()

    restarted = time.monotonic()
    victim.start()
    wait_for(lambda: _isr_full(kafka_cluster, topic), 60, "the killed node back in the ISR")
    print(f"node {victim.node_id} back in the ISR {time.monotonic() - restarted:.1f} s after its restart")

    consumer = KafkaConsumer(bootstrap_servers=kafka_cluster.bootstrap, consumer_timeout_ms=10000)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    values = [m.value for m in consumer]
    consumer.close()
    assert sorted(values) == sorted(f"m{i}".encode() for i in range(400))  # all, once each
