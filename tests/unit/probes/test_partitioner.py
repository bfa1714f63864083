"""partition_for() must agree with Kafka's default partitioner (Java client and kafka-python)."""

from __future__ import annotations

import random

import pytest
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from probes.partitioner import murmur2, partition_for, partition_key


@pytest.mark.parametrize(
    ("data", "signed"),
    [  # org.apache.kafka.common.utils.UtilsTest.testMurmur2
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_the_java_client(data: bytes, signed: int) -> None:
    assert murmur2(data) == signed & 0xFFFFFFFF


@pytest.mark.parametrize(
    ("key", "partition"),
    [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742)],
)
def test_partition_of_1000_matches_the_java_client(key: bytes, partition: int) -> None:
    assert (murmur2(key) & 0x7FFFFFFF) % 1000 == partition


@pytest.mark.parametrize(
    ("server_id", "n", "partition"),
    [("demo-srv-01", 4, 0), ("demo-srv-01", 12, 8), ("acme-web-1", 4, 3), ("x", 12, 10)],
)
def test_pinned_server_partitions(server_id: str, n: int, partition: int) -> None:
    assert partition_for(server_id, n) == partition


def test_agrees_with_kafka_python_on_random_keys() -> None:
    rng = random.Random(11)
    for _ in range(500):
        data = rng.randbytes(rng.randrange(0, 40))
        assert murmur2(data) == kafka_python_murmur2(data) & 0xFFFFFFFF


def test_partition_is_in_range_and_rejects_zero() -> None:
    assert all(0 <= partition_for(f"s{i}", 7) < 7 for i in range(200))
    with pytest.raises(ValueError, match="positive"):
        partition_for("s", 0)


def test_a_secondary_is_keyed_by_its_primary() -> None:
    assert partition_key("acme-web-2", "acme-web-1") == "acme-web-1"
    assert partition_key("acme-web-1", None) == "acme-web-1"
    assert partition_key("acme-web-1") == "acme-web-1"
