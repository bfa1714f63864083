"""The fleet inventory: read a YAML/JSON file of servers and publish it to the compacted inventory topic.

File format (YAML, or JSON with the same shape)::

    servers:
      - server_id: acme-web-1
        customer_id: acme
        target: https://web1.acme.example/status
      - server_id: acme-db-1
        customer_id: acme
        probe: tcp
        target: db1.acme.example:5432

Every entry is a `schemas.inventory.Server`. The topic is keyed by server id; publishing a server again
replaces it, and a tombstone (null value) removes it. With `prune`, servers on the topic but not in the file
are removed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from pydantic import ValidationError

from fleetcore.settings import Settings
from probes.errors import InventoryFileError, InventoryPublishError
from schemas.inventory import Server
from schemas.topics import Topics

log = logging.getLogger(__name__)


def _entry_errors(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _parse(path: Path, text: str) -> Any:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InventoryFileError(f"{path}: not valid JSON: {exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InventoryFileError(f"{path}: not valid YAML: {exc}") from exc


def parse_servers(data: Any, source: str = "inventory") -> list[Server]:
    """Validate a parsed `{servers: [...]}` document; raise InventoryFileError naming the bad entry."""
    if not isinstance(data, dict) or "servers" not in data:
        raise InventoryFileError(f"{source}: expected a mapping with a top-level `servers:` list")
    entries = data["servers"]
    if not isinstance(entries, list):
        raise InventoryFileError(f"{source}: `servers` must be a list, not {type(entries).__name__}")
    servers: list[Server] = []
    first_seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            kind = type(entry).__name__
            raise InventoryFileError(f"{source}: servers[{index}] must be a mapping, not {kind}")
        name = entry.get("server_id")
        label = f"servers[{index}]" + (f" ({name!r})" if isinstance(name, str) else "")
        try:
            server = Server.model_validate(entry)
        except ValidationError as exc:
            raise InventoryFileError(f"{source}: {label}: {_entry_errors(exc)}") from exc
        if server.server_id in first_seen:
            raise InventoryFileError(
                f"{source}: {label}: duplicate server_id {server.server_id!r} "
                f"(first at servers[{first_seen[server.server_id]}])"
            )
        first_seen[server.server_id] = index
        servers.append(server)
    return servers


def load_inventory_file(path: Path | str) -> list[Server]:
    """The servers of a YAML (.yaml/.yml) or JSON (.json) inventory file, validated, in file order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InventoryFileError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryFileError(f"{path}: cannot read: {exc}") from exc
    return parse_servers(_parse(path, text), str(path))


def read_inventory_ids(bootstrap: str, topic: str, timeout_s: float = 30.0) -> set[str]:
    """Server ids currently on the inventory topic (latest value per key not a tombstone)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="fleetwatch-inventory-reader",
        group_id=None,
        enable_auto_commit=False,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        if not partitions:
            return set()
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        live: dict[str, bool] = {}
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise InventoryPublishError(f"reading {topic} took longer than {timeout_s} s")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.key is not None:
                        live[record.key.decode("utf-8", errors="replace")] = record.value is not None
        return {key for key, alive in live.items() if alive}
    finally:
        consumer.close(autocommit=False)


def publish_inventory(bootstrap: str, topics: Topics, servers: Sequence[Server], prune: bool) -> int:
    """Publish `servers` to the inventory topic (key: server id); with `prune`, tombstone the others.

    Returns the number of servers published. Raises InventoryPublishError when Kafka fails.
    """
    topic = topics.inventory
    try:
        stale: set[str] = set()
        if prune:
            stale = read_inventory_ids(bootstrap, topic) - {s.server_id for s in servers}
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            client_id="fleetwatch-inventory",
            acks="all",
            enable_idempotence=True,
            max_block_ms=10_000,
        )
        try:
            futures = [
                producer.send(topic, key=s.server_id.encode(), value=s.model_dump_json().encode())
                for s in servers
            ]
            futures += [producer.send(topic, key=sid.encode(), value=None) for sid in sorted(stale)]
            producer.flush(timeout=30)
            for future in futures:
                future.get(timeout=30)
        finally:
            producer.close(timeout=10)
    except KafkaError as exc:
        raise InventoryPublishError(f"publishing the inventory to {topic} failed: {exc}") from exc
    if stale:
        log.info("removed %d servers not in the file: %s", len(stale), ", ".join(sorted(stale)))
    log.info("published %d servers to %s", len(servers), topic)
    return len(servers)


def load_command(settings: Settings, path: Path, prune: bool) -> int:
    """`fleetwatch inventory load FILE [--prune]`: validate the file, ensure topics, publish; servers sent."""
    servers = load_inventory_file(path)
    topics = Topics(settings.topic_prefix)
    if settings.create_topics:
        from fleetcore.kafka_admin import ensure_topics_of

        ensure_topics_of(settings, topics)
    return publish_inventory(settings.kafka_bootstrap, topics, servers, prune)
