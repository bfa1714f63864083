"""Audit a case's chain: was any event removed, reordered, inserted, rewritten, forged or misplaced? (pure)

What the chain proves, and what it does not
-------------------------------------------
Every event of a case carries `seq` (0, 1, 2, ...), `prev_hash` (the previous event's `hash`), its own
`hash` (sha256 over the event) and, since events are signed, `key_id` and `sig`: the case engine's Ed25519
signature over the hash. Together they prove, for the events you hold:

* each event is exactly what the case engine wrote (the hash covers every field, the signature covers the
  hash, and only the engine holds the private key: recomputing a hash after a change, or appending an event
  with a correct `prev_hash` and a fresh hash, does not produce a valid signature);
* none was removed, inserted or reordered between the first and the last one you hold (each hash covers the
  `seq` and the `prev_hash`, so the links break).

They do not prove on their own:

* that nothing was cut off the end: a truncated chain is a valid chain. Every notification about a case
  carries the chain head at that moment (`X-Fleetwatch-Chain-Head: <case> seq=<n> sha256=<hash>` and a line in
  the email body); keep it, and later check that the chain still holds that event at that seq;
* anything about events written before signing (`key_id`/`sig` empty): their hashes link, but anyone able to
  write to the topic could have written them. A chain with unsigned events is reported UNSIGNED, not
  verified (`fleetwatch audit verify` exits 1 unless `--allow-unsigned`). Once a chain has a signed event,
  every later event must be signed: an unsigned one is a forgery that dropped its signature;
* that the engine's key was not stolen: rotate it (old public keys stay listed, valid until the rotation).

How a customer checks a case with SHA-256, Ed25519 and a JSON library
-----------------------------------------------------------------------
Read EVERY partition of the case topic (a forged copy is written to another partition by any producer that
does not partition like the engine: e.g. kcat's default partitioner; with kcat read the whole topic,
`kcat -C -b <broker> -t <prefix>cases -e -f '%p %o %k %s\\n'`, and when you produce with kcat for a test, use
`-X partitioner=murmur2_random` to hit the same partition as the engine). Keep the messages whose key or
`case_id` is the case. The case's partition is Kafka's default partitioner on the key: murmur2 of the
UTF-8 case id, `(murmur2(key) & 0x7fffffff) % partitions`. An event of the case in any other partition is a
failure: the engine never writes there. Then, for each event of the case's partition:

1. Parse the JSON value into an object; remove its `hash`, `key_id` and `sig` members.
2. Serialise the rest canonically: keys sorted (at every level), no whitespace at all (separators `,` and
   `:`), UTF-8, non-ASCII characters written as themselves (not `\\u` escapes). In Python:
   `json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()`.
3. `sha256` of those bytes, as lower-case hex, must equal the event's `hash`: otherwise a field was
   rewritten after the event was written.
4. The Ed25519 signature `base64decode(sig)` must verify over the ASCII bytes of `hash` with the public key
   whose id is `key_id` (the portal's GET /audit/keys and docs list them, with their validity; the key id is
   the first 16 hex digits of sha256 over the 32 raw public key bytes). In Python, with `cryptography`:
   `Ed25519PublicKey.from_public_bytes(b64decode(public_key)).verify(b64decode(sig), hash.encode())`.

Then order the events by `seq`. The chain holds when the seqs run 0, 1, 2, ... without a gap, each seq
holds one event (an identical copy, written again by a replay after a crash, is harmless), the first
event's `prev_hash` is "" and every other event's `prev_hash` equals the `hash` of the event one seq
before it, and the log order agrees with the seq order. Finally compare the newest `seq` and `hash` (the
"head" `fleetwatch audit verify` prints) with the newest chain head your notifications carried.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from casefile.signing import Keyring, is_signed, signature_problem
from schemas.cases import UNHASHED, CaseEvent, case_event_hash


class ChainStatus(StrEnum):
    """The verdict on one case's chain."""

    VERIFIED = "verified"
    """Intact, every event signed by a listed key, every event in the case's partition."""
    UNSIGNED = "unsigned"
    """Intact, but events written before signing: nothing proves the engine wrote those."""
    BROKEN = "broken"
    """Something is wrong (the problems say what): the events are not to be taken as fact."""


class EventStatus(StrEnum):
    """The verdict on one event on its own (the sink stores it as case_events.chain_status)."""

    VERIFIED = "verified"
    """Its hash holds, it is signed by a listed key valid at its time, and it sits in its case's partition."""
    UNSIGNED = "unsigned"
    """Its hash holds and it is in its case's partition, but it carries no signature."""
    MISPLACED = "misplaced"
    """Outside its case's partition: the engine never writes there (a copy produced by someone else)."""
    FORGED = "forged"
    """Its hash does not hold, or its signature does not verify: changed or made without the key."""


@dataclass(frozen=True)
class EventVerdict:
    status: EventStatus
    fault: str = ""
    """Why it is not verified ("" when it is)."""


def event_verdict(event: CaseEvent, partition: int, home: int, keys: Keyring) -> EventVerdict:
    """One event's verdict where it sits (`partition`; `home`: its case's partition). The chain-level
    checks (gaps, links, an unsigned event after signed ones) need the whole case: `verify_chain`."""
    faults: list[str] = []
    status = EventStatus.VERIFIED
    if not event.hash or case_event_hash(event) != event.hash:
        faults.append("hash mismatch: the event was changed after it was written")
        status = EventStatus.FORGED
    why = signature_problem(event, keys)
    if why is not None:
        faults.append(why)
        status = EventStatus.FORGED
    if partition != home:
        faults.append(f"in partition {partition}, not the case's partition {home}")
        status = status if status is EventStatus.FORGED else EventStatus.MISPLACED
    if not is_signed(event):
        faults.append("unsigned")
        status = status if status is not EventStatus.VERIFIED else EventStatus.UNSIGNED
    return EventVerdict(status, "; ".join(faults))


@dataclass(frozen=True)
class Located:
    """One event as the topic holds it: where, and whether that is the case's own partition."""

    event: CaseEvent
    partition: int
    offset: int
    home: bool
    """In the partition the case id's key hashes to (murmur2), where the case engine writes it."""


@dataclass(frozen=True)
class AuditReport:
    """The outcome of checking one case's chain."""

    ok: bool
    """True when the chain holds (no problems); it may still be UNSIGNED (see `status`)."""
    case_id: str
    count: int
    """Distinct events checked (identical duplicates counted once)."""
    problems: list[str] = field(default_factory=list)
    """What is wrong, one human-readable line each, naming the seq and event id."""
    head_seq: int | None = None
    """The highest seq seen."""
    head_hash: str = ""
    """The hash of the event at the highest seq (keep it to detect a cut-off tail later)."""
    unsigned: int = 0
    """Distinct events without a signature (written before signing, or a forgery that dropped it)."""
    flagged: frozenset[str] = frozenset()
    """Hashes of the events a problem names (shown as not verified)."""

    @property
    def status(self) -> ChainStatus:
        if not self.ok:
            return ChainStatus.BROKEN
        return ChainStatus.UNSIGNED if self.unsigned else ChainStatus.VERIFIED

    @property
    def verified(self) -> bool:
        return self.status is ChainStatus.VERIFIED

    def head(self) -> str:
        return f"head seq {self.head_seq}, hash {self.head_hash}"

    def render(self) -> str:
        """The report for a terminal."""
        status = self.status
        if status is ChainStatus.VERIFIED:
            lines = [f"{self.case_id}: OK, chain of {self.count} events intact and signed ({self.head()})"]
        elif status is ChainStatus.UNSIGNED:
            lines = [
                f"{self.case_id}: UNSIGNED, chain of {self.count} events intact but {self.unsigned} unsigned "
                f"(written before signing: nothing proves the case engine wrote them) ({self.head()})"
            ]
        else:
            lines = [f"{self.case_id}: FAILED, {len(self.problems)} problem(s) in {self.count} events"]
        lines.extend(f"  - {problem}" for problem in self.problems)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "events": self.count,
            "unsigned": self.unsigned,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "problems": list(self.problems),
        }


def customer_hash(value: Mapping[str, Any]) -> str:
    """The documented customer recipe (stdlib json + sha256) for one event's JSON object."""
    body = {key: item for key, item in value.items() if key not in UNHASHED}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _name(event: CaseEvent) -> str:
    return f"seq {event.seq} ({event.event_id}, {event.type.value})"


def _distinct(events: Iterable[CaseEvent], exclude: set[str] | None = None) -> list[CaseEvent]:
    """Events in log order with exact copies dropped (`exclude`: members that do not make a copy differ)."""
    seen: set[str] = set()
    out: list[CaseEvent] = []
    for event in events:
        identity = event.model_dump_json(exclude=exclude)
        if identity not in seen:
            seen.add(identity)
            out.append(event)
    return out


def _content_problems(events: list[CaseEvent], case_id: str) -> list[tuple[CaseEvent, str]]:
    problems: list[tuple[CaseEvent, str]] = []
    for event in events:
        if event.case_id != case_id:
            problems.append((event, f"{_name(event)}: belongs to case {event.case_id}, not {case_id}"))
        if not event.hash:
            problems.append(
                (event, f"{_name(event)}: has no hash (not chained; written before the chain existed?)")
            )
            continue
        computed = case_event_hash(event)
        if computed != event.hash:
            problems.append(
                (
                    event,
                    f"{_name(event)}: hash mismatch, the event was changed after it was written "
                    f"(stored {event.hash[:16]}..., content hashes to {computed[:16]}...)",
                )
            )
    return problems


def _signature_problems(events: list[CaseEvent], keys: Keyring) -> list[tuple[CaseEvent, str]]:
    """Bad signatures, and unsigned events at or after the chain's first signed seq."""
    problems: list[tuple[CaseEvent, str]] = []
    for event in events:
        why = signature_problem(event, keys)
        if why is not None:
            problems.append((event, f"{_name(event)}: {why}"))
    signed = [e.seq for e in events if is_signed(e)]
    if signed:
        first = min(signed)
        for event in events:
            if not is_signed(event) and event.seq >= first:
                problems.append(
                    (
                        event,
                        f"{_name(event)}: unsigned, but the chain is signed from seq {first} on "
                        f"(an event written outside the case engine, or one whose signature was dropped)",
                    )
                )
    return problems


def _order_problems(events: list[CaseEvent]) -> list[str]:
    """A seq first seen after a higher one was moved (extra copies at a seen seq are reported elsewhere)."""
    problems: list[str] = []
    highest: CaseEvent | None = None
    seen: set[int] = set()
    for event in events:
        if event.seq in seen:
            continue
        seen.add(event.seq)
        if highest is not None and event.seq < highest.seq:
            problems.append(f"{_name(event)}: appears in the log after {_name(highest)} (reordered)")
        if highest is None or event.seq > highest.seq:
            highest = event
    return problems


def _link_problems(by_seq: dict[int, list[CaseEvent]]) -> list[str]:
    problems: list[str] = []
    top = max(by_seq)
    if min(by_seq) != 0:
        problems.append(f"the chain starts at seq {min(by_seq)}, not 0 (the events before it are missing)")
    for seq in range(top + 1):
        here = by_seq.get(seq)
        if here is None:
            if seq > min(by_seq):
                problems.append(f"seq {seq} is missing (an event was removed)")
            continue
        if len(here) > 1:
            names = ", ".join(f"{e.event_id} {e.type.value} (hash {e.hash[:16]}...)" for e in here)
            problems.append(f"seq {seq} holds {len(here)} different events: {names}")
        before = by_seq.get(seq - 1)
        for event in here:
            if seq == 0:
                if event.prev_hash:
                    problems.append(f"{_name(event)}: the first event must have an empty prev_hash")
            elif before is not None and all(event.prev_hash != b.hash for b in before):
                problems.append(
                    f"{_name(event)}: prev_hash {event.prev_hash[:16]}... does not match the hash of "
                    f"seq {seq - 1} ({', '.join(b.hash[:16] + '...' for b in before)})"
                )
    return problems


def verify_chain(
    events: Iterable[CaseEvent],
    case_id: str | None = None,
    keys: Keyring | None = None,
    extra_problems: Iterable[str] = (),
) -> AuditReport:
    """Check the chain of one case's events, given in log order (see the module docstring).

    `case_id` defaults to the first event's; events of another case are reported as problems. `keys`: the
    verification keys (None: none, so any signed event fails). `extra_problems` (e.g. misplaced copies, or
    unreadable messages of the case) fail the chain too.
    """
    every = _distinct(events)
    extra = list(extra_problems)
    if not every:
        return AuditReport(
            ok=False, case_id=case_id or "?", count=0, problems=["no events for this case", *extra]
        )
    case = case_id or every[0].case_id
    flagged = _content_problems(every, case) + _signature_problems(every, keys or Keyring())
    distinct = _distinct(every, exclude={"key_id", "sig"})  # re-signed copies of one event are one event
    problems = [why for _, why in flagged] + _order_problems(distinct)
    by_seq: dict[int, list[CaseEvent]] = {}
    for event in distinct:
        by_seq.setdefault(event.seq, []).append(event)
    links = _link_problems(by_seq)
    problems += links + extra
    head = by_seq[max(by_seq)]
    conflicted = {e.hash for seq_events in by_seq.values() if len(seq_events) > 1 for e in seq_events}
    return AuditReport(
        ok=not problems,
        case_id=case,
        count=len(distinct),
        problems=problems,
        head_seq=max(by_seq),
        head_hash=head[-1].hash,
        unsigned=sum(not is_signed(e) for e in distinct),
        flagged=frozenset({e.hash for e, _ in flagged} | conflicted),
    )


def misplaced_problem(item: Located) -> str:
    """The problem line of an event of the case found outside the case's partition."""
    return (
        f"{_name(item.event)}: found in partition {item.partition} at offset {item.offset}, not in the "
        f"case's partition: the case engine never writes there (a copy produced by someone else)"
    )


def verify_located(
    items: Iterable[Located],
    case_id: str,
    keys: Keyring | None = None,
    extra_problems: Iterable[str] = (),
) -> AuditReport:
    """`verify_chain` over the events in the case's partition; any event of the case elsewhere fails it."""
    listed = list(items)
    strays = [misplaced_problem(item) for item in listed if not item.home]
    report = verify_chain(
        [item.event for item in listed if item.home], case_id, keys, [*strays, *extra_problems]
    )
    extra = frozenset(item.event.hash for item in listed if not item.home)
    return report if not extra else _with_flags(report, extra)


def _with_flags(report: AuditReport, hashes: frozenset[str]) -> AuditReport:
    from dataclasses import replace

    return replace(report, flagged=report.flagged | hashes)


def verify_all(events: Iterable[CaseEvent], keys: Keyring | None = None) -> list[AuditReport]:
    """One report per case found in `events` (log order), in order of first appearance."""
    by_case: dict[str, list[CaseEvent]] = {}
    for event in events:
        by_case.setdefault(event.case_id, []).append(event)
    return [verify_chain(case_events, case_id, keys) for case_id, case_events in by_case.items()]
