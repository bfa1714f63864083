"""Who is speaking: the pure verdict on an email's sender (no DNS, no dkimpy; those are in `verify`).

A partner's email is authenticated when

1. its SMTP envelope sender (MAIL FROM) is aligned with its From address, always: a mail whose own
   envelope names another domain than its From (a Telco envelope with `From: helpdesk@northwind…`) is
   not the partner speaking, whatever else it carries; and
2. the partner's policy (`mail_auth.require` in the partners file) is met:

   * `none` — nothing more (the default: the demo's mail and a partner without DKIM keep working). The
     envelope is itself unauthenticated SMTP, so `none` only stops mail that betrays itself; real proof
     needs one of the others;
   * `dkim` — a DKIM signature the intake verified (`verify.dkim_results`), whose `d=` is aligned with
     the From domain;
   * `authres` — an `Authentication-Results` field of a trusted receiving MTA (`verify.trusted_results`:
     only configured authserv-ids, only the receiving hop's own fields) saying `dmarc=pass` for the From
     domain, or `dkim=pass` with an aligned `header.d`, or `spf=pass` with an aligned `smtp.mailfrom`;
   * `any` — `dkim` or `authres`.

Alignment (`aligned`) is relaxed and simple: the same domain, or one a subdomain of the other, where the
shorter has at least two labels (so `mail.northwind.example` aligns with `northwind.example`, but nothing
aligns through a bare top-level domain). It is not the Public Suffix List's organisational domain: under a
shared suffix such as `co.uk` two different organisations' domains never align (stricter, never looser).
"""

from __future__ import annotations

from dataclasses import dataclass

from portal.directory import MailAuthRequirement
from portal.intake.parse import ParsedMail

Requirement = MailAuthRequirement
_DKIM = frozenset({Requirement.DKIM, Requirement.ANY})
_AUTHRES = frozenset({Requirement.AUTHRES, Requirement.ANY})


@dataclass(frozen=True)
class DkimResult:
    """One DKIM signature of the email as the intake verified it."""

    domain: str
    """Its `d=` (lower case)."""
    passed: bool
    reason: str = ""
    """Why it failed (empty when it passed)."""


@dataclass(frozen=True)
class AuthResult:
    """One method result from a trusted receiving MTA's `Authentication-Results` field."""

    authserv_id: str
    method: str
    """dkim, spf, dmarc, ... (lower case)."""
    result: str
    """pass, fail, none, ... (lower case)."""
    domain: str = ""
    """What it vouches for: `header.d` (dkim), the domain of `smtp.mailfrom` (spf), `header.from` (dmarc)."""


@dataclass(frozen=True)
class Evidence:
    """What the adapters found out about an email (only what the policy asked for is looked up)."""

    dkim: tuple[DkimResult, ...] = ()
    authres: tuple[AuthResult, ...] = ()


@dataclass(frozen=True)
class Verdict:
    authenticated: bool
    method: str = ""
    """How it was authenticated: `alignment` (policy none), `dkim`, `authres:<method>` ('' when not)."""
    reason: str = ""
    """Why not, in words for staff (or, when authenticated, what proved it)."""


def domain_of(address: str) -> str:
    """The domain of an address (`<a@b>` or `a@b`), lower case; '' when there is none."""
    address = address.strip().strip("<>").strip()
    local, at, domain = address.rpartition("@")
    return domain.strip().rstrip(".").lower() if local and at else ""


def aligned(domain: str, from_domain: str) -> bool:
    """Relaxed alignment: the same domain, or one a subdomain of the other (the shorter with ≥ 2 labels)."""
    a, b = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if not a or not b:
        return False
    if a == b:
        return True
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return short.count(".") >= 1 and long.endswith("." + short)


def verdict(mail: ParsedMail, envelope_sender: str, evidence: Evidence, require: Requirement) -> Verdict:
    """Whether `mail` (SMTP MAIL FROM `envelope_sender`) is its From address's partner speaking."""
    from_domain = domain_of(mail.sender)
    envelope_domain = domain_of(envelope_sender)
    if not envelope_domain:
        return Verdict(False, reason="no envelope sender (MAIL FROM) to align with From")
    if not aligned(envelope_domain, from_domain):
        return Verdict(
            False,
            reason=f"envelope sender domain {envelope_domain} is not aligned with From domain {from_domain}",
        )
    if require is Requirement.NONE:
        return Verdict(True, "alignment", f"envelope sender aligned with From ({envelope_domain})")
    failures: list[str] = []
    if require in _DKIM:
        passed = _dkim(evidence.dkim, from_domain, failures)
        if passed:
            return passed
    if require in _AUTHRES:
        passed = _authres(evidence.authres, from_domain, failures)
        if passed:
            return passed
    return Verdict(False, reason=f"policy require={require.value} not met: " + "; ".join(failures))


def _dkim(results: tuple[DkimResult, ...], from_domain: str, failures: list[str]) -> Verdict | None:
    if not results:
        failures.append("no DKIM signature")
    for result in results:
        if not result.passed:
            failures.append(f"DKIM d={result.domain or '?'} failed: {result.reason or 'invalid'}")
        elif not aligned(result.domain, from_domain):
            failures.append(f"DKIM d={result.domain} not aligned with {from_domain}")
        else:
            return Verdict(True, "dkim", f"DKIM signature of {result.domain} verified")
    return None


_AUTHRES_METHODS = ("dmarc", "dkim", "spf")
"""The methods an Authentication-Results pass is accepted from, in the order they are looked at."""


def _authres(results: tuple[AuthResult, ...], from_domain: str, failures: list[str]) -> Verdict | None:
    if not results:
        failures.append("no Authentication-Results from a trusted receiving MTA")
    for method in _AUTHRES_METHODS:
        for result in results:
            if result.method != method:
                continue
            if result.result == "pass" and aligned(result.domain, from_domain):
                return Verdict(
                    True, f"authres:{method}", f"{result.authserv_id}: {method}=pass ({result.domain})"
                )
            failures.append(
                f"{result.authserv_id}: {method}={result.result} ({result.domain or 'no domain'})"
            )
    if results and not any(r.method in _AUTHRES_METHODS for r in results):
        failures.append("trusted Authentication-Results name no dkim, spf or dmarc result")
    return None
