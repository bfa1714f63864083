"""The partner directory: partners (Solution Partners, ISPs), their addresses and customers, and the people
who sign in to the portal (partner users and staff) with argon2 password hashes and API tokens.

Loaded from YAML/JSON (`FLEETWATCH_PARTNERS_FILE`, demo: `examples/partners.yaml`). Pure data plus lookups; no
IO besides `load_directory`. Isolation rests on it: a partner user may see a case only when
`Directory.may_see(user, case_partner_id, case_customer_id)`.

Each partner says what its email must prove (`mail_auth: {require: none|dkim|authres|any}`, default
`none`: the envelope sender aligned with From; see `portal.intake.auth`). An email that fails is filed as
a case of no partner under the reserved customer `UNAUTHENTICATED_CUSTOMER`, which no partner may list,
so only staff ever see it.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from fleetcore.errors import ConfigError
from schemas.inventory import ID_PATTERN

_HASHER = PasswordHasher()

UNAUTHENTICATED_CUSTOMER = "unauthenticated-email"
"""The customer of the cases the intake opens for email that failed sender authentication: no partner may
list it, so such a case (no partner either) is visible to staff only."""


class PartnerKind(StrEnum):
    SOLUTION_PARTNER = "solution_partner"
    ISP = "isp"


class UserRole(StrEnum):
    PARTNER = "partner"
    """A partner's help-desk user: sees and changes only the partner's own cases and customers."""
    STAFF = "staff"
    """Support staff: the triage queue and every case."""


class MailAuthRequirement(StrEnum):
    """What a partner's email must prove besides its envelope sender being aligned with its From."""

    NONE = "none"
    """Only the alignment (the default)."""
    DKIM = "dkim"
    """A DKIM signature the intake verifies, d= aligned with From."""
    AUTHRES = "authres"
    """A pass from a trusted receiving MTA's Authentication-Results (dmarc, dkim or spf, aligned)."""
    ANY = "any"
    """dkim or authres."""


class MailAuth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    require: MailAuthRequirement = MailAuthRequirement.NONE


class Partner(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    partner_id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    kind: PartnerKind = PartnerKind.SOLUTION_PARTNER
    addresses: tuple[str, ...] = ()
    """Exact sender addresses of the partner's help desk (lower case)."""
    email_domains: tuple[str, ...] = ()
    """Any sender at one of these domains is the partner (lower case, no @)."""
    customers: tuple[str, ...] = ()
    """The customers this partner supports."""
    default_customer: str | None = Field(default=None, pattern=ID_PATTERN)
    """The customer an emailed case is filed under when the mail does not say (default: the first one)."""
    helpdesk_email: str | None = None
    """Where the partner's replies go (default: the first address)."""
    mail_auth: MailAuth = MailAuth()
    """How the intake authenticates this partner's email (`portal.intake.auth`)."""

    def filing_customer(self) -> str:
        """The customer a case from this partner is filed under when nothing else says."""
        return self.default_customer or (self.customers[0] if self.customers else self.partner_id)


class User(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    username: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    name: str = Field(min_length=1, max_length=200)
    role: UserRole
    partner_id: str | None = Field(default=None, pattern=ID_PATTERN)
    """Required for partner users; None for staff."""
    email: str | None = None
    password_hash: str = Field(min_length=1)
    """argon2 hash (`fleetwatch portal hash-password`)."""
    api_token_sha256: tuple[str, ...] = ()
    """sha256 (hex) of each API token this user holds; the tokens themselves are never stored."""

    @model_validator(mode="after")
    def _check(self) -> User:
        if self.role is UserRole.PARTNER and not self.partner_id:
            raise ValueError(f"partner user {self.username} needs a partner_id")
        if self.role is UserRole.STAFF and self.partner_id:
            raise ValueError(f"staff user {self.username} must not name a partner")
        return self


class Directory(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    partners: dict[str, Partner] = Field(default_factory=dict)
    users: dict[str, User] = Field(default_factory=dict)
    support_address: str = "support@fleetwatch.local"
    """The address partners email (the intake's identity in replies)."""
    troubleshooting_links: tuple[str, ...] = ()
    """Links put in every automatic acknowledgement."""

    @model_validator(mode="after")
    def _check(self) -> Directory:
        for user in self.users.values():
            if user.partner_id and user.partner_id not in self.partners:
                raise ValueError(f"user {user.username} names unknown partner {user.partner_id}")
        for partner in self.partners.values():
            if (
                UNAUTHENTICATED_CUSTOMER in partner.customers
                or partner.default_customer == UNAUTHENTICATED_CUSTOMER
            ):
                raise ValueError(
                    f"partner {partner.partner_id} lists the reserved customer {UNAUTHENTICATED_CUSTOMER}"
                )
        return self

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> Directory:
        partners = _PARTNERS.validate_python(
            {pid: {"partner_id": pid, **(body or {})} for pid, body in (data.get("partners") or {}).items()}
        )
        users = {
            name: User.model_validate({"username": name, **(body or {})})
            for name, body in (data.get("users") or {}).items()
        }
        rest = {k: v for k, v in data.items() if k not in ("partners", "users")}
        return cls.model_validate({"partners": partners, "users": users, **rest})

    # -- lookups -------------------------------------------------------------------------------------

    def partner_for_sender(self, address: str) -> Partner | None:
        """The partner an email sender belongs to (exact address first, then domain), or None."""
        address = address.strip().lower()
        for partner in self.partners.values():
            if address in partner.addresses:
                return partner
        local, at, domain = address.rpartition("@")
        if not (local and at and domain):
            return None  # not an address
        for partner in self.partners.values():
            if domain and domain in partner.email_domains:
                return partner
        return None

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password matches its argon2 hash, else None (same cost either way)."""
        user = self.users.get(username.strip().lower())
        try:
            _HASHER.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return user

    def user_for_token(self, token: str) -> User | None:
        """The user holding this API token, or None."""
        digest = token_digest(token)
        for user in self.users.values():
            if digest in user.api_token_sha256:
                return user
        return None

    def may_see(self, user: User, partner_id: str | None, customer_id: str | None) -> bool:
        """Isolation: staff see everything; a partner user only its partner's cases or its customers'."""
        if user.role is UserRole.STAFF:
            return True
        partner = self.partners.get(user.partner_id or "")
        if partner is None:
            return False
        return partner_id == partner.partner_id or (
            partner_id is None and customer_id is not None and customer_id in partner.customers
        )


_PARTNERS = TypeAdapter(dict[str, Partner])
"""Partners by id (a validation error's location starts with the partner's id)."""


def hash_password(password: str) -> str:
    """An argon2id hash of `password` for the directory file."""
    return _HASHER.hash(password)


def token_digest(token: str) -> str:
    """What the directory stores for an API token."""
    return hashlib.sha256(token.encode()).hexdigest()


_DUMMY_HASH = hash_password("not a real password: equalises the time of unknown users")


def load_directory(path: Path | None) -> Directory:
    """The directory from a YAML/JSON file; an empty directory when no file is configured."""
    if path is None:
        return Directory()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the partner directory {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the partner directory must be a mapping")
    try:
        return Directory.from_mapping(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(
            f"invalid partner directory {path}: {where + ': ' if where else ''}{first['msg']}"
        ) from exc
