"""A small directory and a notification builder for the notifier's unit tests."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.cases import Severity
from schemas.notifications import Channel, Notification, Role
from sinks.notifier.directory import Directory, parse_directory
from tests.helpers import T0

DIRECTORY: dict[str, Any] = {
    "contacts": {
        "om": {"name": "Olga Manager", "email": "olga@ops.example", "pager_routing_key": "rk-om"},
        "vp": {"name": "Victor VP", "email": "victor@ops.example", "phone": "+1 555 0001"},
        "eng1": {"name": "Eng One", "email": "one@ops.example"},
        "eng2": {"name": "Eng Two", "phone": "+1 555 0002"},
        "acme-ops": {"name": "Acme Ops", "email": "ops@acme.example", "phone": "+1 555 0100"},
        "desk": {"name": "Partner Desk", "email": "desk@partner.example"},
    },
    "roles": {
        "operations_manager": ["om"],
        "vp_operations": ["vp"],
        "support_team": ["eng1", "eng2", "eng1"],
        "oncall_engineers": ["eng1"],
        "support_lead": ["vp"],
    },
    "customers": {"acme": ["acme-ops"]},
    "partners": {"northwind": ["desk"]},
}


@pytest.fixture
def directory() -> Directory:
    return parse_directory(DIRECTORY)


def notification(
    role: Role = Role.OPERATIONS_MANAGER, channel: Channel = Channel.EMAIL, **overrides: Any
) -> Notification:
    fields: dict[str, Any] = {
        "key": f"mon-abc:case.opened:{role.value}:{channel.value}",
        "case_id": "mon-abc",
        "ticket": "FW-100001",
        "customer_id": "acme",
        "partner_id": "northwind",
        "server_id": "srv-1",
        "severity": Severity.SEV1,
        "channel": channel,
        "role": role,
        "purpose": "case.opened",
        "subject": "Server srv-1 is down",
        "body": "srv-1 failed 10 probes in a row.",
        "at": T0,
    }
    fields.update(overrides)
    return Notification(**fields)
