"""The partner directory: loading, password and token checks, sender lookup and THE isolation rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from fleetcore.errors import ConfigError
from portal.directory import Directory, UserRole, hash_password, load_directory, token_digest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "partners.yaml"


@pytest.fixture(scope="module")
def directory() -> Directory:
    return load_directory(EXAMPLE)


def test_demo_directory_loads(directory: Directory) -> None:
    assert set(directory.partners) == {"northwind-partners", "telco-isp"}
    assert set(directory.users) == {"nadia", "tom", "sam"}
    assert directory.users["sam"].role is UserRole.STAFF
    assert directory.users["nadia"].partner_id == "northwind-partners"
    assert directory.partners["telco-isp"].customers == ("globex", "stark")


def test_authenticate(directory: Directory) -> None:
    nadia = directory.authenticate("nadia", "northwind-demo")
    assert nadia is not None
    assert nadia.username == "nadia"
    assert directory.authenticate(" Nadia ", "northwind-demo") == nadia, "names are case-insensitive"
    assert directory.authenticate("nadia", "telco-demo") is None, "another user's password"
    assert directory.authenticate("nadia", "") is None
    assert directory.authenticate("nobody", "northwind-demo") is None
    assert directory.authenticate("tom", "telco-demo") == directory.users["tom"]


def test_api_tokens(directory: Directory) -> None:
    assert directory.user_for_token("fwt_demo_northwind_token") == directory.users["nadia"]
    assert directory.user_for_token("fwt_demo_northwind_token ") is None
    assert directory.user_for_token("") is None
    assert token_digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_hash_password_round_trip() -> None:
    data = {"users": {"eve": {"name": "Eve", "role": "staff", "password_hash": hash_password("s3cret-pass")}}}
    directory = Directory.from_mapping(data)
    assert directory.authenticate("eve", "s3cret-pass") is not None
    assert directory.authenticate("eve", "s3cret-Pass") is None


@pytest.mark.parametrize(
    ("user", "partner_id", "customer_id", "allowed"),
    [
        ("sam", "telco-isp", "globex", True),  # staff see everything
        ("sam", None, "anyone", True),
        ("nadia", "northwind-partners", "acme", True),  # her partner's case
        ("nadia", "northwind-partners", "not-a-customer", True),  # filed by her partner
        ("nadia", None, "umbrella", True),  # no partner on the case, but her customer
        ("nadia", None, "globex", False),  # Tom's customer
        ("nadia", "telco-isp", "globex", False),  # Tom's case
        ("nadia", "telco-isp", "acme", False),  # another partner's case about her customer
        ("nadia", None, None, False),
        ("tom", "northwind-partners", "acme", False),
        ("tom", None, "stark", True),
    ],
)
def test_may_see(directory: Directory, user: str, partner_id: str, customer_id: str, allowed: bool) -> None:
    assert directory.may_see(directory.users[user], partner_id, customer_id) is allowed


def test_a_partner_user_whose_partner_vanished_sees_nothing(directory: Directory) -> None:
    nadia = directory.users["nadia"]
    empty = Directory()
    assert not empty.may_see(nadia, "northwind-partners", "acme")


def test_partner_for_sender(directory: Directory) -> None:
    assert directory.partner_for_sender("HelpDesk@Northwind.example").partner_id == "northwind-partners"  # type: ignore[union-attr]
    assert directory.partner_for_sender("anyone@telco-isp.example").partner_id == "telco-isp"  # type: ignore[union-attr]
    assert directory.partner_for_sender("someone@elsewhere.example") is None


def test_filing_customer(directory: Directory) -> None:
    assert directory.partners["northwind-partners"].filing_customer() == "acme"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"users": {"x": {"name": "X", "role": "partner", "password_hash": "h"}}}, "needs a partner_id"),
        (
            {"users": {"x": {"name": "X", "role": "staff", "partner_id": "p", "password_hash": "h"}}},
            "must not name a partner",
        ),
        (
            {"users": {"x": {"name": "X", "role": "partner", "partner_id": "ghost", "password_hash": "h"}}},
            "unknown partner",
        ),
        ({"users": {"Bad Name": {"name": "X", "role": "staff", "password_hash": "h"}}}, "username"),
        ({"partners": {"p": {"name": "P", "surprise": 1}}}, "surprise"),
    ],
)
def test_invalid_directories_are_refused(data: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        Directory.from_mapping(data)


def test_load_directory_errors(tmp_path: Path) -> None:
    assert load_directory(None) == Directory()
    with pytest.raises(ConfigError, match="cannot read"):
        load_directory(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("users: [unclosed")
    with pytest.raises(ConfigError, match="cannot read"):
        load_directory(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_directory(listed)
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("users:\n  x: {name: X, role: partner, password_hash: h}\n")
    with pytest.raises(ConfigError, match="invalid partner directory"):
        load_directory(invalid)


def test_a_bare_domain_or_empty_local_part_is_no_sender() -> None:
    from pathlib import Path

    from portal.directory import load_directory

    directory = load_directory(Path(__file__).resolve().parents[3] / "examples" / "partners.yaml")
    assert directory.partner_for_sender("telco-isp.example") is None
    assert directory.partner_for_sender("@telco-isp.example") is None
    assert directory.partner_for_sender("noc@telco-isp.example") is not None
