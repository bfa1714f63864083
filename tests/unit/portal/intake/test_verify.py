"""The authentication adapters on real mail: DKIM signatures made with a generated key and verified by dkimpy
(key served through the lookup hook, or by a DNS server on 127.0.0.1 through dnspython), and which
Authentication-Results fields count."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fleetcore.errors import ConfigError
from portal.intake.auth import AuthResult, DkimResult
from portal.intake.verify import DnsUnavailable, dkim_results, resolver_lookup, trusted_results
from tests.mailauth import DkimKey, DnsStub

MAIL = (
    b"From: Nadia <helpdesk@northwind.example>\r\n"
    b"To: support@fleetwatch.local\r\n"
    b"Subject: Server acme-1 down\r\n"
    b"Message-ID: <signed-1@northwind.example>\r\n"
    b"\r\n"
    b"acme-1 has not answered since 10:00.\r\n"
)


@pytest.fixture(scope="module")
def northwind() -> DkimKey:
    return DkimKey("northwind.example")


@pytest.fixture
def stub(northwind: DkimKey) -> Iterator[DnsStub]:
    server = DnsStub({northwind.name: northwind.txt}).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_valid_signature_verifies_through_the_lookup_hook(northwind: DkimKey) -> None:
    assert dkim_results(northwind.sign(MAIL), northwind.lookup) == (DkimResult("northwind.example", True),)


def test_tampering_or_another_key_fails(northwind: DkimKey) -> None:
    signed = northwind.sign(MAIL)
    tampered = signed.replace(b"10:00", b"11:00")
    [result] = dkim_results(tampered, northwind.lookup)
    assert (result.domain, result.passed) == ("northwind.example", False)
    other = DkimKey("northwind.example")  # same name, different key: a forger's own key
    [forged] = dkim_results(other.sign(MAIL), northwind.lookup)
    assert not forged.passed
    [missing] = dkim_results(signed, lambda name, timeout=5: None)  # no key published
    assert not missing.passed
    assert dkim_results(MAIL, northwind.lookup) == ()  # unsigned


def test_a_signature_of_another_domain_says_its_domain(northwind: DkimKey) -> None:
    telco = DkimKey("telco-isp.example")
    [result] = dkim_results(telco.sign(MAIL), telco.lookup)
    assert result == DkimResult("telco-isp.example", True)


def test_garbage_signatures_are_failures_not_crashes(northwind: DkimKey) -> None:
    junk = b"DKIM-Signature: v=1; a=rsa-sha256; d=northwind.example; b=!!!\r\n" + MAIL
    [result] = dkim_results(junk, northwind.lookup)
    assert not result.passed
    assert result.reason
    assert not any(r.passed for r in dkim_results(b"\x00\xff not mail", northwind.lookup))


def test_the_resolver_setting_reaches_a_local_dns_server(northwind: DkimKey, stub: DnsStub) -> None:
    lookup = resolver_lookup(stub.address, timeout_s=2.0)
    assert dkim_results(northwind.sign(MAIL), lookup) == (DkimResult("northwind.example", True),)
    assert "fw1._domainkey.northwind.example" in stub.queries
    assert lookup(b"nothing._domainkey.northwind.example.") is None  # NXDOMAIN: no key, not an outage


def test_a_silent_dns_server_is_a_temporary_failure(northwind: DkimKey, stub: DnsStub) -> None:
    stub.silent = True
    lookup = resolver_lookup(stub.address, timeout_s=0.3)
    with pytest.raises(DnsUnavailable):
        dkim_results(northwind.sign(MAIL), lookup)


@pytest.mark.parametrize("server", ["127.0.0.1:x", "host:0", ":53"])
def test_a_malformed_resolver_setting_is_a_config_error(server: str) -> None:
    with pytest.raises(ConfigError, match="intake_dns_resolver"):
        resolver_lookup(server)


RECEIVED = b"Received: from mail.northwind.example by mx.fleetwatch.local; Mon, 7 Dec 2026 10:00 +0000\r\n"
AR_PASS = (
    b"Authentication-Results: mx.fleetwatch.local; dkim=pass header.d=northwind.example;\r\n"
    b" spf=pass smtp.mailfrom=helpdesk@northwind.example; dmarc=pass header.from=northwind.example\r\n"
)
TRUSTED = ("mx.fleetwatch.local",)


def test_the_receiving_hops_results_count() -> None:
    results = trusted_results(RECEIVED + AR_PASS + MAIL, TRUSTED)
    assert results == (
        AuthResult("mx.fleetwatch.local", "dkim", "pass", "northwind.example"),
        AuthResult("mx.fleetwatch.local", "spf", "pass", "northwind.example"),
        AuthResult("mx.fleetwatch.local", "dmarc", "pass", "northwind.example"),
    )
    assert trusted_results(AR_PASS + RECEIVED + MAIL, TRUSTED) == results  # above its Received too


def test_untrusted_or_forged_results_are_ignored() -> None:
    assert trusted_results(RECEIVED + AR_PASS + MAIL, ()) == ()
    assert trusted_results(RECEIVED + AR_PASS + MAIL, ("other-mx.example",)) == ()
    forged_below = RECEIVED + MAIL.replace(b"Subject:", AR_PASS + b"Subject:")  # in the sender's own header
    assert trusted_results(forged_below, TRUSTED) == ()
    earlier_hop = RECEIVED + RECEIVED.replace(b"mx.fleetwatch", b"relay.elsewhere") + AR_PASS + MAIL
    assert trusted_results(earlier_hop, TRUSTED) == ()
    real_fail = b"Authentication-Results: mx.fleetwatch.local; dkim=fail header.d=northwind.example\r\n"
    [result] = trusted_results(
        RECEIVED + real_fail + MAIL.replace(b"Subject:", AR_PASS + b"Subject:"), TRUSTED
    )
    assert result.result == "fail"


def test_malformed_results_vouch_for_nothing() -> None:
    broken = b"Authentication-Results: mx.fleetwatch.local; ;;; = =\r\n"
    assert trusted_results(RECEIVED + broken + MAIL, TRUSTED) == ()
    assert trusted_results(b"\x00\xff", TRUSTED) == ()
