"""Helpers of the probe integration tests: settings, deadline polls, reading topics."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from fleetcore.settings import Settings
from schemas.deadletter import DeadLetter
from schemas.probes import ProbeBatch, ProbeResult
from schemas.topics import Topics
from tests.helpers import eventually  # noqa: F401 - re-exported for the probe tests


def probe_settings(bootstrap: str, topics: Topics, **overrides: Any) -> Settings:
    """Fast settings for tests: 0.2 s cadence, no metrics port, topics already created."""
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "topic_prefix": topics.prefix,
        "create_topics": False,
        "probe_interval_s": 0.2,
        "probe_retry_interval_s": 0.2,
        "probe_jitter": 0.1,
        "probe_metrics_port": 0,
        "batch_linger_ms": 20,
    }
    values.update(overrides)
    return Settings.model_validate(values)


def read_topic(
    bootstrap: str,
    topic: str,
    done: Callable[[list[tuple[int, bytes | None, bytes | None]]], bool],
    timeout_s: float,
) -> list[tuple[int, bytes | None, bytes | None]]:
    """(partition, key, value) of a topic's messages from the beginning, until `done(messages)` or timeout."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        out: list[tuple[int, bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout_s
        while not done(out) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=300).items():
                out.extend((tp.partition, r.key, r.value) for r in records)
        return out
    finally:
        consumer.close(autocommit=False)


def read_batches(
    bootstrap: str, topics: Topics, min_results: int, timeout_s: float = 30.0
) -> list[tuple[int, ProbeBatch]]:
    """ProbeBatch messages of the probe-results topic with their partitions, until `min_results` results."""

    def count(msgs: list[tuple[int, bytes | None, bytes | None]]) -> int:
        return sum(len(ProbeBatch.model_validate_json(v).results) for _, _, v in msgs if v)

    msgs = read_topic(bootstrap, topics.probe_results, lambda m: count(m) >= min_results, timeout_s)
    return [(p, ProbeBatch.model_validate_json(v)) for p, _, v in msgs if v]


def read_dead_letters(
    bootstrap: str, topics: Topics, count: int, timeout_s: float = 20.0
) -> list[DeadLetter]:
    msgs = read_topic(bootstrap, topics.dead_letter, lambda m: len(m) >= count, timeout_s)
    return [DeadLetter.model_validate_json(v) for _, _, v in msgs if v]


def results_of(batches: list[tuple[int, ProbeBatch]]) -> list[ProbeResult]:
    return [r for _, b in batches for r in b.results]
