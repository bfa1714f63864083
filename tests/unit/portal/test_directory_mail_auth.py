"""The partner directory's sender-authentication policy: `mail_auth.require`, its default, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fleetcore.errors import ConfigError
from portal.directory import UNAUTHENTICATED_CUSTOMER, MailAuthRequirement, load_directory

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "partners.yaml"


def write(tmp_path: Path, **northwind: object) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["partners"]["northwind-partners"].update(northwind)
    path = tmp_path / "partners.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_demo_partners_require_only_alignment() -> None:
    directory = load_directory(EXAMPLE)
    assert {p.mail_auth.require for p in directory.partners.values()} == {MailAuthRequirement.NONE}


def test_policy_is_read_per_partner(tmp_path: Path) -> None:
    directory = load_directory(write(tmp_path, mail_auth={"require": "dkim"}))
    assert directory.partners["northwind-partners"].mail_auth.require is MailAuthRequirement.DKIM
    assert directory.partners["telco-isp"].mail_auth.require is MailAuthRequirement.NONE
    defaults = yaml.safe_load(EXAMPLE.read_text())
    del defaults["partners"]["telco-isp"]["mail_auth"]
    (tmp_path / "default.yaml").write_text(yaml.safe_dump(defaults))
    defaulted = load_directory(tmp_path / "default.yaml")
    assert defaulted.partners["telco-isp"].mail_auth.require is MailAuthRequirement.NONE


def test_an_unknown_policy_is_a_clear_error_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_directory(write(tmp_path, mail_auth={"require": "spf"}))
    message = str(error.value)
    assert "northwind-partners.mail_auth.require" in message
    assert "'none', 'dkim', 'authres' or 'any'" in message
    with pytest.raises(ConfigError, match=r"northwind-partners\.mail_auth\.requires"):
        load_directory(write(tmp_path, mail_auth={"requires": "dkim"}))


def test_no_partner_may_list_the_reserved_customer(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"reserved customer {UNAUTHENTICATED_CUSTOMER}"):
        load_directory(write(tmp_path, customers=["acme", UNAUTHENTICATED_CUSTOMER]))
