"""Probe results and the per-partition batch envelope that carries them on the probe-results topic."""

from __future__ import annotations

from pydantic import Field

from schemas.base import Contract, UtcDatetime
from schemas.inventory import ID_PATTERN


class HealthMetrics(Contract):
    """Capacity figures a server reports in its JSON status body (all optional)."""

    load1: float | None = Field(default=None, ge=0)
    """One-minute load average."""
    connections: int | None = Field(default=None, ge=0)
    """Open client connections."""
    users: int | None = Field(default=None, ge=0)
    """Signed-in users."""
    cpu_percent: float | None = Field(default=None, ge=0, le=100)
    """CPU busy, percent."""
    memory_percent: float | None = Field(default=None, ge=0, le=100)
    """Memory used, percent."""
    disk_percent: float | None = Field(default=None, ge=0, le=100)
    """Disk used, percent."""


class ProbeResult(Contract):
    """The outcome of one health check of one server."""

    server_id: str = Field(pattern=ID_PATTERN)
    """The server probed."""
    customer_id: str = Field(pattern=ID_PATTERN)
    """The server's customer (copied from the inventory so consumers need no join)."""
    partner_id: str | None = Field(default=None, pattern=ID_PATTERN)
    """The Solution Partner or ISP supporting the customer, if the inventory names one (copied from it, so a
    monitor case carries the partner: the partner's help desk hears of it and the cases report counts it)."""
    probe_id: str = Field(min_length=1, max_length=200)
    """Unique id of this probe: `<server_id>@<started_at epoch ms>`."""
    started_at: UtcDatetime
    """When the probe started (UTC)."""
    latency_ms: int = Field(ge=0)
    """Time to the answer (or to the failure), whole milliseconds."""
    ok: bool
    """True when the server passed: expected status (http) or connection opened (tcp), within the timeout."""
    status_code: int | None = Field(default=None, ge=100, le=599)
    """HTTP status received, if any."""
    error_class: str | None = Field(default=None, max_length=100)
    """Failure class when not ok: timeout, refused, dns, unexpected_status, reset, tls, error."""
    error_message: str | None = Field(default=None, max_length=1000)
    """Human-readable failure detail when not ok."""
    worker_id: str = Field(min_length=1, max_length=200)
    """The probe worker that ran the check."""
    health: HealthMetrics | None = None
    """Capacity figures from the JSON status body, when the server sent them."""
    backup_of: str | None = Field(default=None, pattern=ID_PATTERN)
    """For a secondary server: the primary it backs up (copied from the inventory). The probe worker sends
    the result to the partition of `backup_of or server_id`, so a pair's results meet in one detector task."""


class ProbeBatch(Contract):
    """One probe-results message: results bound for one partition, in probe order per server."""

    batch_id: str = Field(min_length=1, max_length=200)
    """Unique id of the batch: `<worker_id>:<sequence>`."""
    worker_id: str = Field(min_length=1, max_length=200)
    """The probe worker that sent the batch."""
    partition: int = Field(ge=0)
    """The partition the batch was built for (murmur2 of each result's `backup_of or server_id`)."""
    results: list[ProbeResult]
    """The results, oldest first per server."""
