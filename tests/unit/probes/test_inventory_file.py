"""Inventory files: YAML and JSON, clear errors naming the bad entry, duplicates rejected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetcore.errors import ConfigError, FleetwatchError
from probes.errors import InventoryFileError
from probes.inventory import load_inventory_file
from schemas.inventory import ProbeKind, ServerRole

EXAMPLE = Path(__file__).parents[3] / "examples" / "fleet.yaml"

GOOD_YAML = """
servers:
  - server_id: acme-web-1
    customer_id: acme
    partner_id: northwind
    target: https://web1.acme.example/status
  - server_id: acme-web-2
    customer_id: acme
    role: secondary
    backup_of: acme-web-1
    target: https://web2.acme.example/status
    timeout_s: 5
  - server_id: acme-db-1
    customer_id: acme
    probe: tcp
    target: db1.acme.example:5432
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_file(tmp_path: Path) -> None:
    servers = load_inventory_file(write(tmp_path, "fleet.yaml", GOOD_YAML))
    assert [s.server_id for s in servers] == ["acme-web-1", "acme-web-2", "acme-db-1"]
    assert servers[1].role is ServerRole.SECONDARY
    assert servers[1].backup_of == "acme-web-1"
    assert servers[1].timeout_s == 5
    assert servers[2].probe is ProbeKind.TCP


def test_json_file(tmp_path: Path) -> None:
    data = {"servers": [{"server_id": "g-1", "customer_id": "globex", "target": "http://10.0.0.1/health"}]}
    servers = load_inventory_file(write(tmp_path, "fleet.json", json.dumps(data)))
    assert servers[0].customer_id == "globex"


def test_example_file_is_valid() -> None:
    servers = load_inventory_file(EXAMPLE)
    assert len(servers) >= 3
    assert any(s.probe is ProbeKind.TCP for s in servers)
    assert any(s.backup_of for s in servers)


def test_errors_are_config_errors() -> None:
    assert issubclass(InventoryFileError, ConfigError)
    assert issubclass(InventoryFileError, FleetwatchError)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("servers: [\n  {server_id: a\n", "not valid YAML"),
        ("- server_id: a\n", "top-level `servers:` list"),
        ("hosts: []\n", "top-level `servers:` list"),
        ("servers: {a: 1}\n", "`servers` must be a list, not dict"),
        ("servers:\n  - just-a-string\n", r"servers\[0\] must be a mapping, not str"),
        (
            "servers:\n  - {server_id: ok-1, customer_id: c, target: 'http://x/'}\n"
            "  - {server_id: bad-1, customer_id: c, target: 'ftp://x/'}\n",
            r"servers\[1\] \('bad-1'\): target: .*http:// or https://|"
            r"servers\[1\] \('bad-1'\): .*an http probe target must start with http:// or https://",
        ),
        (
            "servers:\n  - {server_id: t-1, customer_id: c, probe: tcp, target: 'db.example'}\n",
            r"servers\[0\] \('t-1'\): .*host:port",
        ),
        (
            "servers:\n  - {server_id: 'bad id', customer_id: c, target: 'http://x/'}\n",
            r"servers\[0\] \('bad id'\): server_id",
        ),
        ("servers:\n  - {customer_id: c, target: 'http://x/'}\n", r"servers\[0\]: server_id: Field required"),
        ("servers:\n  - {server_id: a, customer_id: c, target: 'http://x/', colour: red}\n", "colour"),
        (
            "servers:\n  - {server_id: a, customer_id: c, target: 'http://x/', role: secondary}\n",
            "backup_of",
        ),
        (
            "servers:\n  - {server_id: a, customer_id: c, target: 'http://x/', timeout_s: 0}\n",
            r"servers\[0\] \('a'\): timeout_s",
        ),
        (
            "servers:\n  - {server_id: dup, customer_id: c, target: 'http://x/'}\n"
            "  - {server_id: other, customer_id: c, target: 'http://y/'}\n"
            "  - {server_id: dup, customer_id: c, target: 'http://z/'}\n",
            r"servers\[2\] \('dup'\): duplicate server_id 'dup' \(first at servers\[0\]\)",
        ),
    ],
)
def test_bad_yaml_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "fleet.yaml", text)
    with pytest.raises(InventoryFileError, match=message) as info:
        load_inventory_file(path)
    assert str(path) in str(info.value)


def test_bad_json(tmp_path: Path) -> None:
    with pytest.raises(InventoryFileError, match="not valid JSON"):
        load_inventory_file(write(tmp_path, "fleet.json", '{"servers": [}'))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryFileError, match="no such file"):
        load_inventory_file(tmp_path / "nope.yaml")


def test_empty_server_list_is_allowed(tmp_path: Path) -> None:
    assert load_inventory_file(write(tmp_path, "fleet.yaml", "servers: []\n")) == []
