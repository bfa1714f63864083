"""The fleet inventory: which customer servers exist and how each is probed."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from schemas.base import Contract

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
"""Ids of servers, customers and partners: 1-128 characters, letters, digits and . _ : -"""


class ProbeKind(StrEnum):
    """How a server is health-checked."""

    HTTP = "http"
    """An HTTP(S) status request; ok when the expected status arrives within the timeout."""
    TCP = "tcp"
    """A TCP connect to host:port; ok when the connection opens within the timeout."""


class ServerRole(StrEnum):
    """A server's place in its customer's redundancy plan."""

    PRIMARY = "primary"
    """Serves the customer's users."""
    SECONDARY = "secondary"
    """A backup server standing in for `backup_of` when that one fails."""


class Server(Contract):
    """One customer server ("MyCorpServer") in the fleet inventory. Key on the inventory topic: server_id."""

    server_id: str = Field(pattern=ID_PATTERN)
    """Unique id of the server across the fleet."""
    customer_id: str = Field(pattern=ID_PATTERN)
    """The customer who owns the server."""
    partner_id: str | None = Field(default=None, pattern=ID_PATTERN)
    """The Solution Partner or ISP that supports this customer, if any."""
    role: ServerRole = ServerRole.PRIMARY
    """Primary, or secondary (backup) server."""
    backup_of: str | None = Field(default=None, pattern=ID_PATTERN)
    """For a secondary: the server id of the primary it backs up."""
    probe: ProbeKind = ProbeKind.HTTP
    """Probe kind: http status request or tcp connect."""
    target: str = Field(min_length=1, max_length=2048)
    """http(s)://host[:port]/path for http probes; host:port for tcp probes."""
    expected_status: int = Field(default=200, ge=100, le=599)
    """HTTP status that counts as healthy (http probes only)."""
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    """Per-probe timeout in seconds; slower answers count as failures."""

    @model_validator(mode="after")
    def _check_target(self) -> Server:
        if self.probe is ProbeKind.HTTP and not self.target.startswith(("http://", "https://")):
            raise ValueError("an http probe target must start with http:// or https://")
        if self.probe is ProbeKind.TCP:
            host, sep, port = self.target.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("a tcp probe target must be host:port")
        if self.role is ServerRole.SECONDARY and not self.backup_of:
            raise ValueError("a secondary server must name the server it backs up (backup_of)")
        if self.backup_of == self.server_id:
            raise ValueError("a server cannot back itself up")
        return self
