"""The contacts directory: who stands behind a role, a customer's technical staff, a partner's help desk.

Loaded from YAML or JSON (`settings.contacts_file`, see `examples/contacts.yaml`):

    contacts:                      # by id
      om-alice: {name: Alice Moreau, email: alice@ops.example, phone: "+33 1 40 00 00 01",
                 pager_routing_key: R0UT1NGKEY0PS}
    roles:                         # internal roles -> contact ids
      operations_manager: [om-alice]
      vp_operations: [...]
      support_team: [...]
      oncall_engineers: [...]
      support_lead: [...]
    customers:                     # customer id -> technical contact ids
      acme: [acme-ops]
    partners:                      # partner id -> help desk contact ids
      northwind-partners: [northwind-desk]

Every id a role, customer or partner names must be a contact; a bad file is a `ContactsError` that says
what to fix.

The partner help desk falls back to the requester: a partner_helpdesk notification whose partner has no
help desk contact here (no entry, an empty list, or no partner named) but that carries a
`reply_to_address` (the address that emailed the case in) goes to that address, as contact `requester`.
So a partner not yet in the directory still gets its ticket number and answers; a listed help desk always
wins (the policy answers partners through their desk, not whoever forwarded the email).

Pure: no IO except `load_directory`, which reads the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fleetcore.errors import ConfigError
from schemas.inventory import ID_PATTERN
from schemas.notifications import Notification, Role

EMAIL_PATTERN = r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$"
PHONE_PATTERN = r"^\+?[0-9][0-9 ().-]{3,30}$"

REQUESTER = "requester"
"""Contact id of the fallback delivery to a notification's `reply_to_address`."""
PER_CUSTOMER_ROLES = frozenset({Role.CUSTOMER_TECHNICAL, Role.PARTNER_HELPDESK})
"""Roles resolved through `customers:` / `partners:` rather than `roles:`."""


class ContactsError(ConfigError):
    """The contacts directory file cannot be read or is invalid."""


class Contact(BaseModel):
    """One person (or desk) who can be emailed, paged or called."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    id: str = Field(pattern=ID_PATTERN)
    """Directory id; part of the ledger key `<notification key>|<contact id>`."""
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, pattern=EMAIL_PATTERN, max_length=254)
    """Where emails go (none: emails to this contact fail with a reason)."""
    phone: str | None = Field(default=None, pattern=PHONE_PATTERN)
    """Where calls go (none: calls fail with a reason)."""
    pager_routing_key: str | None = Field(default=None, min_length=1, max_length=100)
    """PagerDuty Events API v2 routing key of this contact's service (none: pages fail with a reason)."""


class Directory(BaseModel):
    """The whole directory, validated: every referenced contact id exists."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    contacts: dict[str, Contact] = Field(default_factory=dict)
    """Contacts by id (the id may be left out inside each entry: the key is the id)."""
    roles: dict[Role, list[str]] = Field(default_factory=dict)
    """Internal roles (not customer_technical / partner_helpdesk) to contact ids."""
    customers: dict[str, list[str]] = Field(default_factory=dict)
    """Customer id to its technical contacts' ids."""
    partners: dict[str, list[str]] = Field(default_factory=dict)
    """Partner id to its help desk contacts' ids."""

    @model_validator(mode="before")
    @classmethod
    def _ids_from_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("contacts"), dict):
            contacts = {
                key: {"id": key, **value} if isinstance(value, dict) else value
                for key, value in data["contacts"].items()
            }
            data = {**data, "contacts": contacts}
        return data

    @field_validator("roles")
    @classmethod
    def _internal_roles_only(cls, roles: dict[Role, list[str]]) -> dict[Role, list[str]]:
        misplaced = sorted(role.value for role in roles if role in PER_CUSTOMER_ROLES)
        if misplaced:
            raise ValueError(
                f"{', '.join(misplaced)} cannot be listed under roles: put customers' technical "
                "contacts under customers: and partners' help desks under partners:"
            )
        return roles

    @model_validator(mode="after")
    def _references_exist(self) -> Directory:
        problems = [
            f"contact {key!r} has id {contact.id!r}"
            for key, contact in self.contacts.items()
            if key != contact.id
        ]
        groups: list[tuple[str, dict[Any, list[str]]]] = [
            ("roles", self.roles),
            ("customers", self.customers),
            ("partners", self.partners),
        ]
        for section, mapping in groups:
            for name, ids in mapping.items():
                label = name.value if isinstance(name, Role) else name
                unknown = [cid for cid in ids if cid not in self.contacts]
                if unknown:
                    problems.append(f"{section}.{label} names unknown contacts {unknown}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def resolve(self, notification: Notification) -> list[Contact]:
        """The contacts a notification is for, in directory order, each once (may be empty)."""
        if notification.role is Role.CUSTOMER_TECHNICAL:
            ids = self.customers.get(notification.customer_id, [])
        elif notification.role is Role.PARTNER_HELPDESK:
            ids = self.partners.get(notification.partner_id, []) if notification.partner_id else []
            if not ids and notification.reply_to_address:
                return [requester_contact(notification.reply_to_address)]
        else:
            ids = self.roles.get(notification.role, [])
        return [self.contacts[cid] for cid in dict.fromkeys(ids)]

    def audience(self, notification: Notification) -> str:
        """Who the notification's role means, in words (for the reason when nobody is found)."""
        if notification.role is Role.CUSTOMER_TECHNICAL:
            return f"technical contacts of customer {notification.customer_id}"
        if notification.role is Role.PARTNER_HELPDESK:
            if not notification.partner_id:
                return "partner help desk (the notification names no partner)"
            return f"help desk of partner {notification.partner_id}"
        return f"role {notification.role.value}"


def requester_contact(address: str) -> Contact:
    """The pseudo contact of the address that emailed a case in (the help desk fallback)."""
    return Contact(id=REQUESTER, name=address, email=address)


def parse_directory(data: object, source: str = "contacts directory") -> Directory:
    """Validate already-parsed YAML/JSON data into a Directory; `ContactsError` when it does not fit."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ContactsError(f"{source}: expected a mapping with contacts/roles/customers/partners")
    try:
        return Directory.model_validate(data)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        raise ContactsError(f"{source} is invalid: {details}") from exc


def load_directory(path: Path | None) -> Directory:
    """Read the directory from a YAML or JSON file; an empty directory when `path` is None."""
    if path is None:
        return Directory()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ContactsError(f"cannot read contacts file {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ContactsError(f"contacts file {path} is not valid YAML/JSON: {exc}") from exc
    return parse_directory(data, source=f"contacts file {path}")
