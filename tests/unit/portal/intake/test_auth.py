"""The sender verdict (pure): alignment always, plus what the partner's policy requires."""

from __future__ import annotations

import pytest

from portal.directory import MailAuthRequirement as Require
from portal.intake.auth import AuthResult, DkimResult, Evidence, aligned, domain_of, verdict
from portal.intake.parse import ParsedMail

NW = "helpdesk@northwind.example"


def mail(sender: str = NW) -> ParsedMail:
    return ParsedMail(
        sender=sender,
        sender_name="",
        subject="s",
        message_id="<m@x>",
        references=(),
        body="b",
        attachments=(),
        content_type="text/plain",
    )


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("northwind.example", "northwind.example", True),
        ("mail.northwind.example", "northwind.example", True),
        ("northwind.example", "eu.northwind.example", True),
        ("NorthWind.Example.", "northwind.example", True),
        ("telco-isp.example", "northwind.example", False),
        ("evilnorthwind.example", "northwind.example", False),
        ("example", "northwind.example", False),  # never through a bare top-level domain
        ("", "northwind.example", False),
    ],
)
def test_alignment(a: str, b: str, expected: bool) -> None:
    assert aligned(a, b) is expected


def test_domain_of() -> None:
    assert domain_of("<Helpdesk@NorthWind.example>") == "northwind.example"
    assert domain_of("") == domain_of("<>") == domain_of("northwind.example") == ""


def test_policy_none_needs_only_the_envelope_aligned_with_from() -> None:
    ok = verdict(mail(), NW, Evidence(), Require.NONE)
    assert (ok.authenticated, ok.method) == (True, "alignment")
    assert verdict(mail(), "bounces@mail.northwind.example", Evidence(), Require.NONE).authenticated
    spoof = verdict(mail(), "attacker@telco-isp.example", Evidence(), Require.NONE)
    assert not spoof.authenticated
    assert spoof.reason == (
        "envelope sender domain telco-isp.example is not aligned with From domain northwind.example"
    )
    assert "no envelope sender" in verdict(mail(), "<>", Evidence(), Require.NONE).reason


def test_alignment_is_required_whatever_the_policy() -> None:
    signed = Evidence(dkim=(DkimResult("northwind.example", True),))
    for require in Require:
        assert not verdict(mail(), "x@telco-isp.example", signed, require).authenticated


def test_dkim_policy() -> None:
    good = Evidence(dkim=(DkimResult("northwind.example", True),))
    assert verdict(mail(), NW, good, Require.DKIM).method == "dkim"
    none = verdict(mail(), NW, Evidence(), Require.DKIM)
    assert (none.authenticated, none.reason) == (False, "policy require=dkim not met: no DKIM signature")
    other = verdict(mail(), NW, Evidence(dkim=(DkimResult("telco-isp.example", True),)), Require.DKIM)
    assert not other.authenticated
    assert "d=telco-isp.example not aligned" in other.reason
    bad = verdict(
        mail(), NW, Evidence(dkim=(DkimResult("northwind.example", False, "body hash"),)), Require.DKIM
    )
    assert not bad.authenticated
    assert "failed: body hash" in bad.reason
    # a second, valid signature is enough; authres results are not looked at under dkim
    both = Evidence(
        dkim=(DkimResult("telco-isp.example", True), DkimResult("northwind.example", True)),
        authres=(AuthResult("mx.fleetwatch.local", "dmarc", "pass", "northwind.example"),),
    )
    assert verdict(mail(), NW, both, Require.DKIM).authenticated
    assert not verdict(mail(), NW, Evidence(authres=both.authres), Require.DKIM).authenticated


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (AuthResult("mx", "dmarc", "pass", "northwind.example"), "authres:dmarc"),
        (AuthResult("mx", "dkim", "pass", "northwind.example"), "authres:dkim"),
        (AuthResult("mx", "spf", "pass", "mail.northwind.example"), "authres:spf"),
        (AuthResult("mx", "dkim", "pass", "telco-isp.example"), ""),
        (AuthResult("mx", "dmarc", "fail", "northwind.example"), ""),
        (AuthResult("mx", "arc", "pass", "northwind.example"), ""),
    ],
)
def test_authres_policy(result: AuthResult, expected: str) -> None:
    found = verdict(mail(), NW, Evidence(authres=(result,)), Require.AUTHRES)
    assert found.method == expected
    assert found.authenticated is bool(expected)
    if not expected:
        assert found.reason.startswith("policy require=authres not met: ")


def test_authres_without_results_says_so() -> None:
    found = verdict(mail(), NW, Evidence(), Require.AUTHRES)
    assert "no Authentication-Results from a trusted receiving MTA" in found.reason


def test_any_takes_either() -> None:
    dkim = Evidence(dkim=(DkimResult("northwind.example", True),))
    authres = Evidence(authres=(AuthResult("mx", "dmarc", "pass", "northwind.example"),))
    assert verdict(mail(), NW, dkim, Require.ANY).method == "dkim"
    assert verdict(mail(), NW, authres, Require.ANY).method == "authres:dmarc"
    neither = verdict(mail(), NW, Evidence(), Require.ANY)
    assert not neither.authenticated
    assert "no DKIM signature" in neither.reason
    assert "no Authentication-Results" in neither.reason
