"""Contacts directory: loading (YAML, JSON, the example file), clear errors, resolving roles to people."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetcore.errors import ConfigError, FleetwatchError
from fleetwatch.demo_fleet import DEMO_SERVERS
from schemas.notifications import Role
from sinks.notifier.directory import ContactsError, Directory, load_directory, parse_directory
from tests.unit.sinks.notifier.conftest import DIRECTORY, notification

EXAMPLE = Path(__file__).resolve().parents[4] / "examples" / "contacts.yaml"


def test_loads_yaml_and_json_alike(tmp_path: Path) -> None:
    as_json = tmp_path / "contacts.json"
    as_json.write_text(json.dumps(DIRECTORY))
    loaded = load_directory(as_json)
    assert loaded == parse_directory(DIRECTORY)
    assert loaded.contacts["om"].id == "om"
    assert loaded.contacts["om"].pager_routing_key == "rk-om"


def test_no_file_is_an_empty_directory() -> None:
    assert load_directory(None) == Directory()


def test_example_file_covers_the_demo_fleet() -> None:
    example = load_directory(EXAMPLE)
    for server in DEMO_SERVERS:
        assert example.customers.get(server.customer_id), server.customer_id
        if server.partner_id:
            assert example.partners.get(server.partner_id), server.partner_id
    for role in set(Role) - {Role.CUSTOMER_TECHNICAL, Role.PARTNER_HELPDESK}:
        assert example.roles.get(role), role
    assert example.contacts["om-alice"].pager_routing_key


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("contacts: [unclosed", "not valid YAML/JSON"),
        ("- a list", "expected a mapping"),
        (
            "roles:\n  operations_manager: [ghost]\n",
            "roles.operations_manager names unknown contacts ['ghost']",
        ),
        ("customers:\n  acme: [nobody]\n", "customers.acme names unknown contacts ['nobody']"),
        ("roles:\n  chief_of_fun: []\n", "roles.chief_of_fun"),
        ("roles:\n  customer_technical: []\n", "put customers' technical contacts under customers:"),
        ("contacts:\n  x: {name: X, email: not-an-address}\n", "contacts.x.email"),
        ("contacts:\n  x: {name: X, fax: '123'}\n", "contacts.x.fax"),
        ("contacts:\n  x: {id: y, name: X}\n", "contact 'x' has id 'y'"),
        ("extra: 1\n", "extra"),
    ],
)
def test_bad_file_is_a_clear_config_error(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "contacts.yaml"
    path.write_text(text)
    with pytest.raises(ContactsError) as caught:
        load_directory(path)
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ConfigError)
    assert isinstance(caught.value, FleetwatchError)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ContactsError, match="cannot read contacts file"):
        load_directory(tmp_path / "absent.yaml")


def test_resolve_internal_roles_in_order_without_repeats(directory: Directory) -> None:
    assert [c.id for c in directory.resolve(notification(Role.OPERATIONS_MANAGER))] == ["om"]
    assert [c.id for c in directory.resolve(notification(Role.VP_OPERATIONS))] == ["vp"]
    assert [c.id for c in directory.resolve(notification(Role.SUPPORT_TEAM))] == ["eng1", "eng2"]
    assert [c.id for c in directory.resolve(notification(Role.ONCALL_ENGINEERS))] == ["eng1"]
    assert [c.id for c in directory.resolve(notification(Role.SUPPORT_LEAD))] == ["vp"]


def test_resolve_customer_and_partner_contacts(directory: Directory) -> None:
    assert [c.id for c in directory.resolve(notification(Role.CUSTOMER_TECHNICAL))] == ["acme-ops"]
    assert [c.id for c in directory.resolve(notification(Role.PARTNER_HELPDESK))] == ["desk"]


def test_resolve_unknown_customer_or_missing_partner_is_nobody(directory: Directory) -> None:
    unknown_customer = notification(Role.CUSTOMER_TECHNICAL, customer_id="initech")
    assert directory.resolve(unknown_customer) == []
    assert directory.audience(unknown_customer) == "technical contacts of customer initech"
    no_partner = notification(Role.PARTNER_HELPDESK, partner_id=None)
    assert directory.resolve(no_partner) == []
    assert "names no partner" in directory.audience(no_partner)
    assert Directory().resolve(notification(Role.OPERATIONS_MANAGER)) == []


# --- the requester fallback (issue 4) ----------------------------------------------------------------------


def test_partner_helpdesk_falls_back_to_the_requester_only_without_a_desk() -> None:
    directory = parse_directory({**DIRECTORY, "partners": {"northwind": ["desk"], "bare": []}})
    listed = notification(Role.PARTNER_HELPDESK, reply_to_address="nadia@northwind.example")
    assert [c.id for c in directory.resolve(listed)] == ["desk"]
    for partner in ("bare", "unlisted", None):
        n = notification(Role.PARTNER_HELPDESK, partner_id=partner, reply_to_address="x@isp.example")
        (contact,) = directory.resolve(n)
        assert (contact.id, contact.email) == ("requester", "x@isp.example")
    nobody = notification(Role.PARTNER_HELPDESK, partner_id="unlisted")
    assert directory.resolve(nobody) == []


def test_other_roles_ignore_the_requester() -> None:
    directory = parse_directory(DIRECTORY)
    n = notification(Role.CUSTOMER_TECHNICAL, customer_id="nobody", reply_to_address="x@isp.example")
    assert directory.resolve(n) == []
