"""The thin adapters behind `auth`: DKIM verification (dkimpy, DNS through dnspython) and the trusted
receiving MTA's `Authentication-Results` (authres).

* `resolver_lookup(server, timeout_s)` — dkimpy's TXT lookup hook on a dnspython resolver: the system's
  resolvers, or the one DNS server `intake_dns_resolver` names (`host` or `host:port`). A timeout or no
  answering server raises `DnsUnavailable` (the intake answers 451: the sending MTA retries later); a
  missing record is an ordinary DKIM failure (no key: the signature does not verify).
* `dkim_results(raw, lookup)` — every DKIM-Signature of the email (at most `MAX_SIGNATURES`) verified.
* `trusted_results(raw, trusted)` — the results the receiving hop wrote. RFC 8601: a receiving MTA
  prepends its `Authentication-Results` at the top of the header (and must remove any carrying its own
  authserv-id that arrived with the mail), so only the top block counts: reading top-down, trace fields
  (Received, Return-Path, Received-SPF, ARC-*, Delivered-To, X-Original-To) and A-R fields belong to the
  receiving side; the first other field (the sender's own header starts) or a second Received (an earlier
  hop) ends the block. Of that block only fields whose authserv-id is configured as trusted count; any A-R a
  sender wrote further down is ignored, whatever authserv-id it names.
"""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import Callable, Iterable

import authres  # type: ignore[import-untyped]
import dkim  # type: ignore[import-untyped]
import dns.exception
import dns.rdatatype
import dns.resolver
from dkim.util import parse_tag_value  # type: ignore[import-untyped]

from fleetcore.errors import ConfigError, FleetwatchError
from portal.intake.auth import AuthResult, DkimResult, domain_of

MAX_SIGNATURES = 5
"""DKIM signatures verified per email at most (each may cost a DNS lookup)."""
MIN_KEY_BITS = 1024
_TRACE = frozenset(
    {"return-path", "received-spf", "delivered-to", "x-original-to", "arc-seal", "arc-message-signature"}
)
_TRACE_PREFIXES = ("arc-",)

TxtLookup = Callable[..., bytes | None]
"""dkimpy's `dnsfunc`: (name: bytes, timeout=...) -> the TXT record's text, or None."""


class DnsUnavailable(FleetwatchError):
    """DNS did not answer a DKIM key lookup (temporary: the email is answered 451)."""


def resolver_lookup(server: str = "", timeout_s: float = 5.0) -> TxtLookup:
    """A TXT lookup through dnspython: the system's resolvers, or `server` (`host` or `host:port`). The
    resolver is made at the first lookup (a host without resolv.conf can still start the intake); a
    malformed `server` is a `ConfigError` at once."""
    address = _host_port(server) if server else None
    made: list[dns.resolver.Resolver] = []

    def resolver() -> dns.resolver.Resolver:
        if not made:
            if address is None:
                made.append(dns.resolver.Resolver())
            else:
                custom = dns.resolver.Resolver(configure=False)
                custom.nameservers = [address[0]]
                custom.port = address[1]
                made.append(custom)
            made[0].lifetime = made[0].timeout = timeout_s
        return made[0]

    def lookup(name: bytes | str, timeout: float = timeout_s) -> bytes | None:
        qname = name.decode("ascii", errors="replace") if isinstance(name, bytes) else name
        try:
            answer = resolver().resolve(
                qname, dns.rdatatype.TXT, raise_on_no_answer=False, lifetime=min(timeout, timeout_s)
            )
        except dns.resolver.NXDOMAIN:
            return None
        except (
            dns.exception.Timeout,
            dns.resolver.NoNameservers,
            dns.resolver.NoResolverConfiguration,
        ) as exc:
            raise DnsUnavailable(f"DNS lookup of {qname} failed: {type(exc).__name__}") from exc
        for rrset in answer.response.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                for rdata in rrset:
                    return b"".join(rdata.strings)
        return None

    return lookup


def _host_port(server: str) -> tuple[str, int]:
    """`host`, `host:port`, an IPv6 address, or `[v6]:port` -> (host, port); port 53 unless given."""
    text = server.strip()
    try:
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 53
        elif text.count(":") == 1:
            host, _, digits = text.partition(":")
            port = int(digits)
        else:
            host, port = text, 53
        if not host or not 0 < port < 65536:
            raise ValueError("no host or port out of range")
    except ValueError as exc:
        raise ConfigError(f"intake_dns_resolver {server!r} is not host or host:port ({exc})") from exc
    return host, port


def dkim_results(raw: bytes, lookup: TxtLookup) -> tuple[DkimResult, ...]:
    """Each DKIM-Signature of `raw` (topmost first, at most MAX_SIGNATURES) verified against DNS."""
    try:
        verifier = dkim.DKIM(raw, minkey=MIN_KEY_BITS)
    except Exception as exc:  # dkimpy on a message it cannot split into header and body
        return (DkimResult("", False, f"unreadable message: {exc}"[:200]),)
    signatures = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    results: list[DkimResult] = []
    for index, value in enumerate(signatures[:MAX_SIGNATURES]):
        domain = _signing_domain(value)
        try:
            passed = bool(verifier.verify(idx=index, dnsfunc=lookup))
        except DnsUnavailable:
            raise
        except Exception as exc:  # dkim.DKIMException and whatever a hostile signature provokes
            results.append(DkimResult(domain, False, f"{type(exc).__name__}: {exc}"[:200]))
            continue
        results.append(DkimResult(domain, passed, "" if passed else "signature did not verify"))
    return tuple(results)


def _signing_domain(value: bytes) -> str:
    try:
        tags = parse_tag_value(value)
        return bytes(tags.get(b"d", b"")).decode("ascii", errors="replace").strip().lower()
    except Exception:
        return ""


def trusted_results(raw: bytes, trusted: Iterable[str]) -> tuple[AuthResult, ...]:
    """The method results of the receiving hop's A-R fields whose authserv-id is in `trusted`."""
    wanted = {t.strip().lower() for t in trusted if t.strip()}
    if not wanted:
        return ()
    try:
        header = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
        items = [(str(name).lower(), str(value)) for name, value in header.raw_items()]
    except Exception:
        return ()
    found: list[AuthResult] = []
    received = 0
    for name, value in items:
        if name == "received":
            received += 1
            if received > 1:
                break
            continue
        if name == "authentication-results":
            found += _results(value, wanted)
            continue
        if name in _TRACE or name.startswith(_TRACE_PREFIXES):
            continue
        break
    return tuple(found)


def _results(value: str, wanted: set[str]) -> list[AuthResult]:
    try:
        parsed = authres.AuthenticationResultsHeader.parse_value(" ".join(value.split()))
    except Exception:  # authres.AuthResError on a malformed field: it vouches for nothing
        return []
    authserv = str(parsed.authserv_id or "").lower()
    if authserv not in wanted:
        return []
    out: list[AuthResult] = []
    for result in parsed.results:
        method = str(result.method or "").lower()
        props = {(str(p.type).lower(), str(p.name).lower()): str(p.value or "") for p in result.properties}
        if method == "dkim":
            domain = props.get(("header", "d"), "")
        elif method == "spf":
            mailfrom = props.get(("smtp", "mailfrom"), "")
            domain = domain_of(mailfrom) or mailfrom
        elif method == "dmarc":
            domain = props.get(("header", "from"), "")
        else:
            domain = ""
        out.append(AuthResult(authserv, method, str(result.result or "").lower(), domain.lower().strip()))
    return out
