"""Helpers for sink tests: build results and case events, produce them to explicit partitions, read topics."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from fleetcore.clock import to_epoch_ms
from fleetcore.settings import Settings
from fleetwatch.kafka_local import free_port  # noqa: F401 - re-exported for the tests here
from schemas.probes import ProbeBatch, ProbeResult
from schemas.topics import Topics
from tests.helpers import T0, case_event, wait_for  # noqa: F401 - re-exported for the tests here
from tests.unit.casefile.builders import SEED_B64

T = TypeVar("T")


def probe(server: str, n: int, customer: str = "cust-1") -> ProbeResult:
    at = T0 + timedelta(minutes=n)
    ok = n % 7 != 3
    return ProbeResult(
        server_id=server,
        customer_id=customer,
        probe_id=f"{server}@{to_epoch_ms(at)}",
        started_at=at,
        latency_ms=5 + n % 50,
        ok=ok,
        status_code=200 if ok else None,
        error_class=None if ok else "timeout",
        error_message=None if ok else "no answer within 10 s",
        worker_id="test-worker",
    )


def produce_batches(
    bootstrap: str, topic: str, results: list[ProbeResult], per_batch: int, partitions: int = 4
) -> int:
    """Send results as ProbeBatch messages, round-robin over explicit partitions; return messages sent."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    sent = 0
    try:
        for seq, start in enumerate(range(0, len(results), per_batch)):
            part = seq % partitions
            batch = ProbeBatch(
                batch_id=f"test:{seq}",
                worker_id="test-worker",
                partition=part,
                results=results[start : start + per_batch],
            )
            producer.send(topic, value=batch.model_dump_json().encode(), partition=part)
            sent += 1
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
    return sent


def produce_raw(bootstrap: str, topic: str, values: list[tuple[int, bytes | None, bytes | None]]) -> None:
    """Send (partition, key, value) messages."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for part, key, value in values:
            producer.send(topic, key=key, value=value, partition=part)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def read_topic(bootstrap: str, topic: str, count: int, timeout_s: float = 30.0) -> list[Any]:
    """Read `count` records of a topic from the beginning (all partitions)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                out.extend(records)
        return out
    finally:
        consumer.close()


@pytest.fixture
def sink_settings(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> Settings:
    """Settings of a sink on the test's topics with its own embedded store and a free HTTP port; it verifies
    case events with the test engine key (`tests.unit.casefile.builders.SIGNER`)."""
    return Settings(
        audit_signing_key=SEED_B64,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topics.prefix,
        data_dir=tmp_path / "data",
        create_topics=False,
        sink_chunk_max_rows=500,
        sink_chunk_seconds=1,
        sink_http_port=0,
    )
