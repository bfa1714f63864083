"""Settings of every fleetwatch process, from environment variables (prefix ``FLEETWATCH_``) and CLI flags.

Every setting has a default and an env name: ``FLEETWATCH_<FIELD>`` (upper case), e.g.
``FLEETWATCH_KAFKA_BOOTSTRAP=127.0.0.1:9092``. Entry points build a `Settings`, apply their flags with
`Settings.model_copy(update=...)`, and call their worker's ``run(settings)``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """Where local state lives unless FLEETWATCH_DATA_DIR says otherwise."""
    return Path.home() / ".local" / "share" / "fleetwatch"


class Settings(BaseSettings):
    """Settings shared by every worker; each worker reads the fields it needs."""

    model_config = SettingsConfigDict(env_prefix="FLEETWATCH_", extra="ignore")

    # -- Kafka ---------------------------------------------------------------------------------------
    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092",
        description="Kafka bootstrap servers (host:port[,host:port]).",
    )
    topic_prefix: str = Field(
        default="fleetwatch.",
        description="Prefix of every topic name, so several installations (or tests) share one broker.",
    )
    create_topics: bool = Field(
        default=True, description="Create missing topics at start-up with the admin client."
    )
    topic_partitions: dict[str, int] = Field(
        default_factory=dict,
        description="Partition counts by unprefixed topic name, over the registry's (JSON, e.g. "
        '`{"fleet-inventory": 48}`); applies when a topic is created. Only topics without keyed state '
        "(fleet-inventory, maintenance, portal-audit, dead-letter) can be overridden.",
    )
    topic_replication_factor: int = Field(
        default=0,
        ge=0,
        description="Replication factor of created topics (0: 3 when the cluster has 3 or more brokers, "
        "else 1); min.insync.replicas follows: 2 for 3 replicas, else 1.",
    )

    # -- local state ---------------------------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Local state: embedded ClickHouse, Kafka data of `fleetwatch up`, worker stores, logs, "
        "caught mail.",
    )
    log_level: str = Field(default="INFO", description="Log level of every worker.")

    # -- probes --------------------------------------------------------------------------------------
    probe_interval_s: float = Field(
        default=900.0, gt=0, description="Normal probe cadence per server (the policy's 15 minutes)."
    )
    probe_retry_interval_s: float = Field(
        default=60.0, gt=0, description="Re-check cadence after a failure, until the server passes again."
    )
    probe_jitter: float = Field(
        default=0.1, ge=0, le=0.5, description="Random spread of each interval, as a fraction of it."
    )
    probe_concurrency: int = Field(default=200, gt=0, description="Probes in flight per worker at most.")
    probe_worker_id: str = Field(default="", description="This probe worker's id (default: host-pid).")
    batch_max_results: int = Field(default=500, gt=0, description="Results per ProbeBatch message at most.")
    batch_linger_ms: int = Field(
        default=50, ge=0, description="How long a partial ProbeBatch may wait before it is sent."
    )
    probe_metrics_port: int = Field(default=9101, description="Prometheus port of the probe worker (0: off).")
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Bind address of the probe and stream workers' /metrics (0.0.0.0 in containers).",
    )

    # -- stream (Faust) ------------------------------------------------------------------------------
    failure_threshold: int = Field(
        default=10, ge=1, description="Consecutive failed probes that open a Severity 1 case."
    )
    stream_batch_max: int = Field(
        default=40,
        gt=0,
        description="ProbeBatch messages the detector takes at once (table writes coalesce).",
    )
    stream_batch_within_ms: int = Field(
        default=10,
        gt=0,
        description="How long the detector waits to fill a take (adds at most this latency).",
    )
    stream_web_port: int = Field(default=6066, description="Faust worker web port (internal).")
    stream_metrics_port: int = Field(
        default=9102, description="Prometheus port of the stream worker (0: off)."
    )
    stream_app_id: str = Field(
        default="stream", description="Faust app id after the topic prefix (consumer group, changelog names)."
    )

    # -- case engine, SLA policy, notifications -------------------------------------------------------
    clock_scale: float = Field(
        default=1.0,
        gt=0,
        description="Runtime clock speed: 60 makes one policy hour pass in one real minute (`up`'s demo: "
        "60).",
    )
    clock_origin_ms: int = Field(
        default=0,
        ge=0,
        description="Epoch ms at which a scaled clock starts counting (0: process start). Give every "
        "process of one stack the same origin so their scaled clocks agree.",
    )
    sla_policy_file: Path | None = Field(
        default=None,
        description="YAML/JSON SLA policy book (default policy and per-customer plans); None: the defaults.",
    )
    contacts_file: Path | None = Field(
        default=None,
        description="YAML/JSON contacts directory (roles; customers' and partners' contacts).",
    )
    timer_interval_s: float = Field(
        default=1.0, gt=0, description="How often (real seconds) case timers scan for due deadlines."
    )
    redundancy_aware: bool = Field(
        default=False,
        description="A failed server whose partner (primary/secondary) is healthy opens Sev2, not Sev1.",
    )
    auto_resolve_after_s: float | None = Field(
        default=None,
        gt=0,
        description="Auto-resolve a monitor case after its server stayed healthy this long (policy "
        "seconds; None: off, staff resolve).",
    )
    closed_case_retention_days: float | None = Field(
        default=30.0,
        gt=0,
        description="Days a closed case stays in the case engine's table after its last event (reopen works "
        "until then; its events stay on the case topic forever). None: kept forever.",
    )
    smtp_host: str = Field(default="127.0.0.1", description="SMTP server the notifier sends email through.")
    smtp_port: int = Field(default=2525, description="Its port.")
    smtp_sender: str = Field(default="support@fleetwatch.local", description="From: of notifier emails.")
    pager_url: str = Field(
        default="", description="PagerDuty Events API v2 endpoint for pages ('' : pages are not sent)."
    )
    call_url: str = Field(default="", description="Generic JSON webhook for calls ('' : calls are not sent).")
    webhook_url: str = Field(
        default="", description="Optional generic JSON webhook receiving every notification."
    )
    notify_max_attempts: int = Field(default=5, ge=1, description="Delivery attempts before giving up.")
    notify_backoff_s: float = Field(
        default=1.0, gt=0, description="First retry delay (real seconds); doubles per attempt, capped."
    )
    notify_metrics_port: int = Field(default=9104, description="Prometheus port of the notifier (0: off).")
    mail_catcher_port: int = Field(
        default=2525, description="Port of the SMTP catcher `fleetwatch up` runs for the demo."
    )

    # -- partners' front door: email intake, portal, staff console (issue 4) ----------------------------
    partners_file: Path | None = Field(
        default=None,
        description="YAML/JSON partner directory: partners, their addresses and customers, portal users.",
    )
    intake_host: str = Field(default="127.0.0.1", description="Bind address of the email intake (SMTP).")
    intake_port: int = Field(default=2526, description="SMTP port of the email intake (the support address).")
    intake_max_bytes: int = Field(
        default=10 * 1024 * 1024, gt=0, description="Largest email the intake accepts (bytes)."
    )
    intake_max_parts: int = Field(default=50, gt=0, description="MIME parts per email at most.")
    intake_rate_per_hour: int = Field(
        default=20, gt=0, description="Emails per sender per hour the intake answers (mail-loop guard)."
    )
    intake_dns_resolver: str = Field(
        default="",
        description="DNS server (host or host:port) for the intake's DKIM key lookups ('' : the system's).",
    )
    intake_dns_timeout_s: float = Field(default=5.0, gt=0, description="Time for one DKIM key lookup (s).")
    intake_trusted_authserv_ids: str = Field(
        default="",
        description="Comma-separated authserv-ids of the receiving MTAs whose Authentication-Results the "
        "intake trusts ('' : none).",
    )
    portal_host: str = Field(default="127.0.0.1", description="Bind address of the partner portal.")
    portal_port: int = Field(default=8080, description="Port of the partner portal and staff console.")
    portal_public_url: str = Field(
        default="", description="The portal's URL as users reach it ('' : http://<host>:<port>)."
    )
    portal_secret: str = Field(
        default="",
        description="Key that signs session cookies and CSRF tokens ('' : a random key kept in data_dir).",
    )
    portal_secure_cookies: bool = Field(
        default=True, description="Mark session cookies Secure (browsers keep them on https and localhost)."
    )
    portal_session_hours: float = Field(default=12.0, gt=0, description="Session lifetime (real hours).")
    kb_dir: Path | None = Field(
        default=None, description="Folder of Markdown knowledge-base articles (solution pointers)."
    )
    releases_dir: Path | None = Field(
        default=None, description="Folder of software releases (catalog.yaml + files) for downloads."
    )

    # -- audit chain signatures (casefile.signing) ------------------------------------------------------
    audit_signing_key: SecretStr = Field(
        default=SecretStr(""),
        description="The case engine's Ed25519 key that signs case events: a PEM (PKCS#8) key, the base64 of "
        "its 32-byte seed, or the path of a file holding either ('' : data_dir/audit/case-signing-key.pem, "
        "generated at first start). Readers (CLI, sink, portal) derive its public key from it too.",
    )
    audit_keys_file: Path | None = Field(
        default=None,
        description="JSON/YAML list of the public keys that verify case events, with their validity (keep "
        "old keys listed after a rotation); the signing key's own public key is always included.",
    )

    # -- sink / history ------------------------------------------------------------------------------
    clickhouse_dsn: str = Field(
        default="",
        description="History store: `chdb:///abs/path` (embedded, default under data_dir) or http://host:8123.",
    )
    clickhouse_database: str = Field(default="fleetwatch", description="ClickHouse database name.")
    analysts_host: str = Field(
        default="127.0.0.1", description="Bind address of the analysts' read-only ClickHouse HTTP endpoint."
    )
    analysts_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the analysts' endpoint, served by the sink for the embedded store (0: off; "
        "`up`'s demo: 8123).",
    )
    analysts_user: str = Field(default="analyst", description="User name analysts sign in with.")
    analysts_password: SecretStr = Field(
        default=SecretStr(""),
        description="Analysts' password (required when analysts_port is set; `up`'s demo: analyst-demo).",
    )
    analysts_max_execution_s: float = Field(
        default=30.0, gt=0, description="Time limit of one analysts' query (max_execution_time)."
    )
    analysts_max_memory_bytes: int = Field(
        default=1 << 30, gt=0, description="Memory limit of one analysts' query (max_memory_usage)."
    )
    analysts_max_result_bytes: int = Field(
        default=100 << 20, gt=0, description="Largest result (and response body) of one analysts' query."
    )
    analysts_query_slots: int = Field(
        default=4, ge=2, description="Analysts' queries running at once (all analysts together)."
    )
    analysts_query_slots_per_user: int = Field(
        default=2,
        ge=1,
        description="Analysts' queries one analyst (user and address) runs at once; fewer than "
        "analysts_query_slots (more wait their turn, holding no slot).",
    )
    sink_chunk_max_rows: int = Field(
        default=20000, gt=0, description="Rows per ClickHouse insert chunk at most (per partition)."
    )
    sink_chunk_seconds: int = Field(
        default=5, gt=0, description="Time bucket (broker time) that also cuts a chunk, so quiet topics land."
    )
    sink_http_host: str = Field(default="127.0.0.1", description="Bind address of the sink's query API.")
    sink_http_port: int = Field(
        default=9103, description="Port of the sink's query API and Prometheus /metrics."
    )
    history_raw_retention_days: int | None = Field(
        default=None,
        ge=1,
        description="Days raw probe results stay in the history store (TTL, applied at each sink start). "
        "None: kept forever. Rows older than this are dropped even when a replay inserts them again.",
    )
    history_rollup_retention_days: int | None = Field(
        default=None,
        ge=1,
        description="Days the probe rollups (minute, hour, day) stay in the history store. None: forever.",
    )

    # -- local stack (`fleetwatch up`) -----------------------------------------------------------------
    local_kafka_port: int = Field(
        default=9092, description="PLAINTEXT port of the broker `up` and `kafka` start (0: any free port)."
    )
    local_kafka_controller_port: int = Field(
        default=9093,
        description="KRaft controller port of the broker `up` and `kafka` start (0: any free port).",
    )
    local_kafka_heap: str = Field(
        default="512m", description="Heap (-Xmx) of the broker `up` and `kafka` start."
    )
    local_kafka_brokers: int = Field(
        default=1,
        description="Nodes of the local Kafka `up` and `kafka` start: 1, or 3 (a KRaft cluster, heap 256m "
        "each, topics replicated 3 times with min.insync.replicas 2).",
    )

    @field_validator("local_kafka_brokers")
    @classmethod
    def _one_or_three_brokers(cls, value: int) -> int:
        if value not in (1, 3):
            raise ValueError(f"local_kafka_brokers is 1 or 3, not {value}")
        return value

    @field_validator("topic_partitions")
    @classmethod
    def _partitions_resizable(cls, value: dict[str, int]) -> dict[str, int]:
        from schemas.topics import check_partition_overrides

        check_partition_overrides(value)
        return value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("kafka_bootstrap must name at least one host:port")
        return value.strip()

    def store_dsn(self) -> str:
        """The ClickHouse DSN in force: the configured one, or the embedded store under data_dir."""
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    def embedded_store(self) -> bool:
        """True when the history store is embedded chdb (owned by one process: the sink)."""
        return self.store_dsn().startswith("chdb://")

    def sink_url(self) -> str:
        """Base URL of the sink's query API."""
        return f"http://{self.sink_http_host}:{self.sink_http_port}"
