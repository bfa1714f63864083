"""The topic registry: every topic fleetwatch uses, its key, partitions, cleanup policy and value model.

Topics are created by the project at start-up (admin client) from this registry, never by broker
auto-create. `Topics(prefix)` gives the full names for one installation (or one test).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from schemas.cases import CaseEvent
from schemas.commands import CaseCommand
from schemas.deadletter import DeadLetter
from schemas.inventory import Server
from schemas.maintenance import MaintenanceWindow
from schemas.notifications import Notification
from schemas.portal import PortalAuditEvent
from schemas.probes import ProbeBatch

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """One topic's contract."""

    name: str
    """Name without the installation prefix."""
    key: str
    """What the message key is (documentation)."""
    partitions: int
    """Partition count; tables of a Faust agent must match their source topic's."""
    cleanup_policy: str
    """`delete` or `compact`."""
    value_model: type[BaseModel]
    """The pydantic model of each message value (JSON, UTF-8)."""
    description: str
    """What flows on the topic, who writes and who reads it."""
    retention_ms: int | None = None
    """Retention for `delete` topics (None: broker default)."""
    extra_config: dict[str, str] = field(default_factory=dict)
    """Further topic configs."""
    keyed_state: bool = False
    """Whether state or placement depends on the partition count (Faust tables, case tickets, the
    notifier's ledger partition p beside notifications partition p, murmur2 server placement): such a
    topic keeps its registry count; the `topic_partitions` setting may not override it."""

    def config(self) -> dict[str, str]:
        """Topic configs to create the topic with."""
        conf = {"cleanup.policy": self.cleanup_policy, **self.extra_config}
        if self.retention_ms is not None:
            conf["retention.ms"] = str(self.retention_ms)
        return conf


INVENTORY = TopicSpec(
    name="fleet-inventory",
    key="server id",
    partitions=12,
    cleanup_policy="compact",
    value_model=Server,
    description="The fleet: one Server per key, a tombstone (null value) removes it. Written by "
    "`fleetwatch inventory load`; read by probe workers, which split its partitions as a consumer group.",
    extra_config={"min.cleanable.dirty.ratio": "0.1", "segment.ms": str(DAY_MS)},
)
PROBE_RESULTS = TopicSpec(
    name="probe-results",
    key="none (partition chosen with murmur2 of the server id, like Kafka's default partitioner)",
    partitions=4,
    cleanup_policy="delete",
    value_model=ProbeBatch,
    description="Probe results in per-partition ProbeBatch envelopes. Written by probe workers; read by the "
    "detector (stream) and the ClickHouse sink.",
    retention_ms=7 * DAY_MS,
    extra_config={"message.timestamp.type": "LogAppendTime"},
    keyed_state=True,
)
CASES = TopicSpec(
    name="cases",
    key="case id",
    partitions=4,
    cleanup_policy="delete",
    value_model=CaseEvent,
    description="Case events, the audit log (hash-chained per case). Written by the case engine (stream "
    "worker) only; read by the sink, the notifier's audit, the CLI and any downstream consumer (published "
    "JSON Schema in docs/schemas/).",
    retention_ms=-1,
    extra_config={"message.timestamp.type": "LogAppendTime"},
    keyed_state=True,
)
CASE_COMMANDS = TopicSpec(
    name="case-commands",
    key="case id",
    partitions=4,
    cleanup_policy="delete",
    value_model=CaseCommand,
    description="Intents for the case engine (open, triage, start work, update, resolve, tick, notification "
    "outcomes, ...). Written by the detector, the engine's timers, the notifier, the CLI (and later the "
    "portal and intake); read by the case engine. Same partition count as `cases`: one case, one partition.",
    retention_ms=14 * DAY_MS,
    extra_config={"message.timestamp.type": "LogAppendTime"},
    keyed_state=True,
)
NOTIFICATIONS = TopicSpec(
    name="notifications",
    key="notification key (idempotency key)",
    partitions=4,
    cleanup_policy="delete",
    value_model=Notification,
    description="Page, email and call requests addressed to roles. Written by the case engine; read by the "
    "notifier, which delivers each (key, contact) at most once.",
    retention_ms=14 * DAY_MS,
    keyed_state=True,
)
NOTIFY_LEDGER = TopicSpec(
    name="notify-ledger",
    key="`<notification key>|<contact id>`",
    partitions=4,
    cleanup_policy="compact,delete",
    value_model=Notification,
    description="The notifier's durable record of delivered (key, contact) pairs (value: the Notification "
    "delivered). Written and read by the notifier only. Compacted, and deleted after 15 days: a day longer "
    "than the notifications topic keeps a notification that could be redelivered, so the ledger (and the "
    "notifier's memory of it) stays bounded.",
    retention_ms=15 * DAY_MS,
    extra_config={"min.cleanable.dirty.ratio": "0.1", "segment.ms": str(DAY_MS)},
    keyed_state=True,
)
MAINTENANCE = TopicSpec(
    name="maintenance",
    key="window id",
    partitions=1,
    cleanup_policy="compact",
    value_model=MaintenanceWindow,
    description="Planned maintenance windows (cancelled ones kept with cancelled_at). Written by "
    "`fleetwatch maintenance`; read by the detector (no monitor case inside a window) and the sink "
    "(failures marked planned).",
    extra_config={"min.cleanable.dirty.ratio": "0.1", "segment.ms": str(DAY_MS)},
)
PORTAL_AUDIT = TopicSpec(
    name="portal-audit",
    key="user name",
    partitions=1,
    cleanup_policy="delete",
    value_model=PortalAuditEvent,
    description="Portal actions that are not case events: downloads, sign-ins. Written by the portal; read "
    "by auditors (and the sink, later).",
    retention_ms=-1,
    extra_config={"message.timestamp.type": "LogAppendTime"},
)
DEAD_LETTER = TopicSpec(
    name="dead-letter",
    key="`<source topic>:<partition>:<offset>`",
    partitions=1,
    cleanup_policy="delete",
    value_model=DeadLetter,
    description="Messages (or batch items) a consumer rejected, with the reason. Written by every consumer; "
    "read by operators.",
    retention_ms=30 * DAY_MS,
)

TOPICS: dict[str, TopicSpec] = {
    spec.name: spec
    for spec in (
        INVENTORY,
        PROBE_RESULTS,
        CASES,
        CASE_COMMANDS,
        NOTIFICATIONS,
        NOTIFY_LEDGER,
        MAINTENANCE,
        PORTAL_AUDIT,
        DEAD_LETTER,
    )
}
"""Every topic, by unprefixed name."""


def check_partition_overrides(overrides: dict[str, int]) -> None:
    """Refuse partition overrides of unknown topics, of keyed-state topics, and counts below 1."""
    for name, count in overrides.items():
        spec = TOPICS.get(name)
        if spec is None:
            raise ValueError(f"topic_partitions: no registry topic {name!r} (known: {', '.join(TOPICS)})")
        if spec.keyed_state and count != spec.partitions:
            raise ValueError(
                f"topic_partitions: {name!r} keeps {spec.partitions} partitions: its keyed state (tables, "
                "ticket numbers, server placement) depends on the count"
            )
        if count < 1:
            raise ValueError(f"topic_partitions: {name!r} needs at least 1 partition, not {count}")


def partitions_of(spec: TopicSpec, overrides: dict[str, int] | None = None) -> int:
    """The partition count a topic is created with: the override for its name, else the registry's."""
    return (overrides or {}).get(spec.name, spec.partitions)


@dataclass(frozen=True)
class Topics:
    """Full topic names of one installation: the registry names behind a prefix."""

    prefix: str = "fleetwatch."

    def name(self, spec: TopicSpec) -> str:
        """Full name of a registry topic."""
        return self.prefix + spec.name

    @property
    def inventory(self) -> str:
        return self.name(INVENTORY)

    @property
    def probe_results(self) -> str:
        return self.name(PROBE_RESULTS)

    @property
    def cases(self) -> str:
        return self.name(CASES)

    @property
    def dead_letter(self) -> str:
        return self.name(DEAD_LETTER)

    @property
    def case_commands(self) -> str:
        return self.name(CASE_COMMANDS)

    @property
    def notifications(self) -> str:
        return self.name(NOTIFICATIONS)

    @property
    def notify_ledger(self) -> str:
        return self.name(NOTIFY_LEDGER)

    @property
    def maintenance(self) -> str:
        return self.name(MAINTENANCE)

    @property
    def portal_audit(self) -> str:
        return self.name(PORTAL_AUDIT)
