"""Fixtures of the notifier's integration tests: SMTP and webhook catchers on 127.0.0.1, a contacts file,
notifier settings on the test's topics, and helpers to produce notifications and read what came out."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaProducer

from fleetcore.settings import Settings
from fleetwatch.mailcatcher import MailCatcher
from fleetwatch.webhook_catcher import WebhookCatcher
from schemas.cases import Severity
from schemas.commands import CaseCommand
from schemas.notifications import Channel, Notification, Role
from schemas.topics import Topics
from tests.helpers import T0, TopicReader

CONTACTS: dict[str, Any] = {
    "contacts": {
        "om": {"name": "Olga Manager", "email": "olga@ops.example", "pager_routing_key": "rk-om"},
        "vp": {"name": "Victor VP", "email": "victor@ops.example", "pager_routing_key": "rk-vp"},
        "eng1": {"name": "Eng One", "email": "one@ops.example", "pager_routing_key": "rk-oncall"},
        "eng2": {"name": "Eng Two", "phone": "+1 555 0002"},
        "acme-ops": {"name": "Acme Ops", "email": "ops@acme.example", "phone": "+1 555 0100"},
        "desk": {"name": "Partner Desk", "email": "desk@partner.example"},
    },
    "roles": {
        "operations_manager": ["om"],
        "vp_operations": ["vp"],
        "support_team": ["eng1", "eng2"],
        "oncall_engineers": ["eng1"],
        "support_lead": ["vp"],
    },
    "customers": {"acme": ["acme-ops"]},
    "partners": {"northwind": ["desk"]},
}


@dataclass
class Catchers:
    mail: MailCatcher
    hooks: WebhookCatcher


@pytest.fixture
def catchers(tmp_path: Path) -> Iterator[Catchers]:
    mail = MailCatcher(tmp_path / "mail").start()
    try:
        hooks = WebhookCatcher(path=tmp_path / "hooks.jsonl").start()
        try:
            yield Catchers(mail, hooks)
        finally:
            hooks.stop()
    finally:
        mail.stop()


@pytest.fixture
def contacts_file(tmp_path: Path) -> Path:
    path = tmp_path / "contacts.yaml"
    path.write_text(yaml.safe_dump(CONTACTS))
    return path


@pytest.fixture
def notify_settings(
    kafka_bootstrap: str, topics: Topics, catchers: Catchers, contacts_file: Path
) -> Settings:
    return Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topics.prefix,
        create_topics=False,
        contacts_file=contacts_file,
        smtp_host="127.0.0.1",
        smtp_port=catchers.mail.port,
        pager_url=catchers.hooks.pager_url,
        call_url=catchers.hooks.call_url,
        webhook_url="",
        notify_max_attempts=5,
        notify_backoff_s=0.05,
        notify_metrics_port=0,
        clock_scale=1.0,
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """FLEETWATCH_* variables that give a child process these settings."""
    names = (
        "kafka_bootstrap",
        "topic_prefix",
        "create_topics",
        "contacts_file",
        "smtp_host",
        "smtp_port",
        "pager_url",
        "call_url",
        "webhook_url",
        "notify_max_attempts",
        "notify_backoff_s",
        "notify_metrics_port",
    )
    return {f"FLEETWATCH_{name.upper()}": str(getattr(settings, name)) for name in names}


def note(purpose: str, role: Role, channel: Channel, case_id: str = "mon-abc", **fields: Any) -> Notification:
    """A notification of `case_id` with the engine's key scheme."""
    values: dict[str, Any] = {
        "key": f"{case_id}:{purpose}:{role.value}:{channel.value}",
        "case_id": case_id,
        "ticket": "FW-100001",
        "customer_id": "acme",
        "partner_id": "northwind",
        "server_id": "srv-1",
        "severity": Severity.SEV1,
        "channel": channel,
        "role": role,
        "purpose": purpose,
        "subject": f"{purpose}: server srv-1 is down",
        "body": "srv-1 failed 10 probes in a row.",
        "at": T0,
    }
    values.update(fields)
    return Notification(**values)


def produce(
    bootstrap: str,
    topic: str,
    items: Sequence[Notification | tuple[bytes, bytes | None]],
    partition: int | None = None,
) -> None:
    """Send notifications (key = notification key) or raw (key, value) pairs, in order, acknowledged
    (to `partition` when given, else where the key hashes to)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for item in items:
            value: bytes | None
            if isinstance(item, Notification):
                key, value = item.key.encode(), item.model_dump_json().encode()
            else:
                key, value = item
            producer.send(topic, key=key, value=value, partition=partition)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def outcomes(reader: TopicReader) -> list[CaseCommand]:
    """The notification outcome commands on case-commands so far."""
    return [CaseCommand.model_validate_json(v) for _, v in reader.poll() if v is not None]


def outcome_ids(reader: TopicReader) -> list[str]:
    return [c.command_id for c in outcomes(reader)]
