"""Sender-authentication helpers for the intake's tests: a DKIM key that signs real mail (dkimpy) and a tiny
DNS server on 127.0.0.1 that serves its public key (dnspython builds the answers). Never the internet."""

from __future__ import annotations

import base64
import socket
import threading
from dataclasses import dataclass, field

import dkim  # type: ignore[import-untyped]
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass
class DkimKey:
    """An RSA key of `domain`'s selector `selector`: signs mail, and its TXT record for DNS."""

    domain: str
    selector: str = "fw1"
    bits: int = 1024
    _key: rsa.RSAPrivateKey = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=self.bits)

    @property
    def name(self) -> str:
        """The DNS name of the key record, e.g. `fw1._domainkey.northwind.example.`"""
        return f"{self.selector}._domainkey.{self.domain}."

    @property
    def txt(self) -> bytes:
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)

    def sign(self, raw: bytes) -> bytes:
        """`raw` with a DKIM-Signature of this key prepended (From, To, Subject, Message-ID, ... signed)."""
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        signature = dkim.sign(
            raw,
            self.selector.encode(),
            self.domain.encode(),
            pem,
            include_headers=[b"from", b"to", b"subject", b"message-id", b"in-reply-to", b"references"],
        )
        return bytes(signature) + raw

    def lookup(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        """dkimpy's dnsfunc hook answering for this key only."""
        text = name.decode() if isinstance(name, bytes) else name
        return self.txt if text.rstrip(".") == self.name.rstrip(".") else None


class DnsStub:
    """A DNS server on 127.0.0.1 (UDP, a free port) answering TXT queries from `records`; NXDOMAIN for
    anything else; no answer at all while `silent` (a resolver then times out)."""

    def __init__(self, records: dict[str, bytes] | None = None) -> None:
        self.records = {k.rstrip(".").lower(): v for k, v in (records or {}).items()}
        self.silent = False
        self.queries: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, name="dns-stub", daemon=True)
        self._stopping = threading.Event()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> DnsStub:
        self._sock.settimeout(0.2)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            question = query.question[0]
            qname = question.name.to_text().rstrip(".").lower()
            self.queries.append(qname)
            if self.silent:
                continue
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            value = self.records.get(qname)
            if value is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.TXT:
                chunks = [value[i : i + 255] for i in range(0, len(value), 255)]
                quoted = " ".join('"' + c.decode("ascii") + '"' for c in chunks)
                response.answer.append(
                    dns.rrset.from_text(question.name, 300, dns.rdataclass.IN, dns.rdatatype.TXT, quoted)
                )
            self._sock.sendto(response.to_wire(), peer)
