"""Portal audit events: what partners and staff did in the portal that is not a case event (downloads,
sign-ins). Key on the portal-audit topic: the user name."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from schemas.base import Contract, UtcDatetime
from schemas.cases import DetailValue
from schemas.inventory import ID_PATTERN


class PortalAction(StrEnum):
    DOWNLOAD = "download"
    """A signed-in partner downloaded a release file (details: product, version, file, sha256, bytes)."""
    SIGN_IN = "sign_in"
    SIGN_IN_FAILED = "sign_in_failed"
    SIGN_OUT = "sign_out"


class PortalAuditEvent(Contract):
    """One audited portal action."""

    event_id: str = Field(min_length=1, max_length=100)
    at: UtcDatetime
    action: PortalAction
    username: str = Field(min_length=1, max_length=200)
    partner_id: str | None = Field(default=None, pattern=ID_PATTERN)
    remote: str | None = Field(default=None, max_length=200)
    """The client address, as the portal saw it."""
    details: dict[str, DetailValue] = Field(default_factory=dict)
