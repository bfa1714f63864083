"""Audit a case's hash chain: was any event of the case removed, reordered, inserted or rewritten? (pure)

How a customer checks a case with nothing but SHA-256 and a JSON library
--------------------------------------------------------------------------
Read every message of the case from the case topic (key = the case id; the JSON value is one event, with
every field present). Then, for each event:

1. Parse the JSON value into an object and remove its `hash` member.
2. Serialise the rest canonically: keys sorted (at every level), no whitespace at all (separators `,` and
   `:`), UTF-8, non-ASCII characters written as themselves (not `\\u` escapes). In Python:
   `json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()`.
3. `sha256` of those bytes, as lower-case hex, must equal the event's `hash`: otherwise a field was
   rewritten after the event was written.

Then order the events by `seq`. The chain holds when the seqs run 0, 1, 2, ... without a gap, each seq
holds one event (an identical copy, written again by a replay after a crash, is harmless), the first
event's `prev_hash` is "" and every other event's `prev_hash` equals the `hash` of the event one seq
before it, and the log order agrees with the seq order. Because every hash covers `seq` and `prev_hash`,
removing, inserting or swapping events cannot be hidden by recomputing one hash: every later event would
have to be forged too, and the forged copies would sit beside the originals at the same seqs.

What the chain cannot show on its own is a cut-off tail (the last events removed): note the newest `seq`
and `hash` (the "head" `fleetwatch audit verify` prints) and check later that the chain still contains
that event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.cases import CaseEvent, case_event_hash


@dataclass(frozen=True)
class AuditReport:
    """The outcome of checking one case's chain."""

    ok: bool
    """True when the chain holds (no problems)."""
    case_id: str
    count: int
    """Distinct events checked (identical duplicates counted once)."""
    problems: list[str] = field(default_factory=list)
    """What is wrong, one human-readable line each, naming the seq and event id."""
    head_seq: int | None = None
    """The highest seq seen."""
    head_hash: str = ""
    """The hash of the event at the highest seq (keep it to detect a cut-off tail later)."""

    def render(self) -> str:
        """The report for a terminal."""
        if self.ok:
            lines = [
                f"{self.case_id}: OK, chain of {self.count} events intact "
                f"(head seq {self.head_seq}, hash {self.head_hash})"
            ]
        else:
            lines = [f"{self.case_id}: FAILED, {len(self.problems)} problem(s) in {self.count} events"]
        lines.extend(f"  - {problem}" for problem in self.problems)
        return "\n".join(lines)


def customer_hash(value: Mapping[str, Any]) -> str:
    """The documented customer recipe (stdlib json + sha256) for one event's JSON object."""
    body = {key: item for key, item in value.items() if key != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _name(event: CaseEvent) -> str:
    return f"seq {event.seq} ({event.event_id}, {event.type.value})"


def _distinct(events: Iterable[CaseEvent]) -> list[CaseEvent]:
    """Events in log order with exact copies dropped."""
    seen: set[str] = set()
    out: list[CaseEvent] = []
    for event in events:
        identity = event.model_dump_json()
        if identity not in seen:
            seen.add(identity)
            out.append(event)
    return out


def _content_problems(events: list[CaseEvent], case_id: str) -> list[str]:
    problems: list[str] = []
    for event in events:
        if event.case_id != case_id:
            problems.append(f"{_name(event)}: belongs to case {event.case_id}, not {case_id}")
        if not event.hash:
            problems.append(f"{_name(event)}: has no hash (not chained; written before the chain existed?)")
            continue
        computed = case_event_hash(event)
        if computed != event.hash:
            problems.append(
                f"{_name(event)}: hash mismatch, the event was changed after it was written "
                f"(stored {event.hash[:16]}..., content hashes to {computed[:16]}...)"
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


def verify_chain(events: Iterable[CaseEvent], case_id: str | None = None) -> AuditReport:
    """Check the hash chain of one case's events, given in log order (see the module docstring).

    `case_id` defaults to the first event's; events of another case are reported as problems.
    """
    distinct = _distinct(events)
    if not distinct:
        return AuditReport(ok=False, case_id=case_id or "?", count=0, problems=["no events for this case"])
    case = case_id or distinct[0].case_id
    problems = _content_problems(distinct, case) + _order_problems(distinct)
    by_seq: dict[int, list[CaseEvent]] = {}
    for event in distinct:
        by_seq.setdefault(event.seq, []).append(event)
    problems += _link_problems(by_seq)
    head = by_seq[max(by_seq)]
    return AuditReport(
        ok=not problems,
        case_id=case,
        count=len(distinct),
        problems=problems,
        head_seq=max(by_seq),
        head_hash=head[-1].hash,
    )


def verify_all(events: Iterable[CaseEvent]) -> list[AuditReport]:
    """One report per case found in `events` (log order), in order of first appearance."""
    by_case: dict[str, list[CaseEvent]] = {}
    for event in events:
        by_case.setdefault(event.case_id, []).append(event)
    return [verify_chain(case_events, case_id) for case_id, case_events in by_case.items()]
