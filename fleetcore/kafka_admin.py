"""Topic creation from the registry, with kafka-python's admin client (never broker auto-create)."""

from __future__ import annotations

import logging
import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from fleetcore.errors import BrokerError
from schemas.topics import TOPICS, Topics, TopicSpec

log = logging.getLogger(__name__)


def ensure_topics(
    bootstrap: str, topics: Topics, specs: list[TopicSpec] | None = None, timeout_s: float = 30.0
) -> list[str]:
    """Create every registry topic that is missing; return the names created. Idempotent."""
    wanted = {topics.name(spec): spec for spec in (specs or list(TOPICS.values()))}
    deadline = time.monotonic() + timeout_s
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="fleetwatch-admin")
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, spec.partitions, 1, topic_configs=spec.config())
            for name, spec in wanted.items()
            if name not in existing
        ]
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
