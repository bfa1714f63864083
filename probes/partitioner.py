"""Kafka's default partitioner for a string key, in pure Python (no Kafka import).

`partition_for(key, n)` is what the Java client's default partitioner (and kafka-python's
`DefaultPartitioner`) picks for `key` encoded as UTF-8: `murmur2(key) & 0x7fffffff % n`.
Probe results carry no key (they travel in per-partition batches), so the worker computes the partition
itself from `partition_key`: the server id, or for a secondary the id of the primary it backs up. A primary
and its secondaries thus share one partition, and the detector sees both sides of a pair in one task (the
redundancy-aware severity needs no cross-worker reads). A secondary of a secondary is keyed by its direct
primary only: redundancy is one level deep.
"""

from __future__ import annotations

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 of `data` as Kafka computes it (org.apache.kafka.common.utils.Utils.murmur2), unsigned."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    end = length - length % 4
    for i in range(0, end, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest >= 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_key(server_id: str, backup_of: str | None = None) -> str:
    """The key a server's results are partitioned by: its primary's id for a secondary, else its own id."""
    return backup_of or server_id


def partition_for(server_id: str, num_partitions: int) -> int:
    """The partition Kafka's default partitioner gives the key `server_id` among `num_partitions`."""
    if num_partitions <= 0:
        raise ValueError("num_partitions must be positive")
    return (murmur2(server_id.encode("utf-8")) & 0x7FFFFFFF) % num_partitions
