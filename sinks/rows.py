"""Pure conversion of topic messages into history rows (and the reasons for what cannot be stored).

No Kafka or ClickHouse import: a message is (topic, partition, offset, value); a row is a tuple in the
column order of `history.ddl.PROBE_COLUMNS` / `CASE_COLUMNS`; timestamps are epoch milliseconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from casefile.audit import EventStatus, EventVerdict
from fleetcore.clock import to_epoch_ms
from schemas.cases import CaseEvent
from schemas.deadletter import DeadLetter
from schemas.envelope import DecodedBatch, item_payload, validation_reason
from schemas.fastdecode import Result, decode_probe_items
from schemas.probes import ProbeResult

Row = tuple[Any, ...]

PlannedLookup = Callable[[str, str, datetime], str | None]
"""planned(server_id, customer_id, started_at): the id of the maintenance window covering the server at the
probe's start, or None (not planned). Plain values: the fast path asks without building a ProbeResult."""
CaseCheck = Callable[[CaseEvent, int], EventVerdict]
"""The verdict on a case event read from a partition (`casefile.audit.event_verdict` with the keys and the
case's partition)."""

NO_SEVERITY = 0
"""What case_events.severity stores for a case without severity (awaiting triage)."""
UINT64_MAX = 2**64 - 1

UINT32_MAX = 2**32 - 1
MIN_TIME = datetime(1900, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2299, 12, 31, 23, 59, 59, tzinfo=UTC)
"""What a DateTime64(3) column stores; values outside would be clamped silently, so they are rejected."""


def unstorable_probe(result: ProbeResult) -> str | None:
    """Why a valid ProbeResult still cannot be stored (a value outside its column's range), or None."""
    h = result.health
    return _unstorable(
        result.latency_ms, result.started_at, h.connections if h else None, h.users if h else None
    )


def _unstorable(
    latency_ms: int, started_at: datetime, connections: int | None, users: int | None
) -> str | None:
    if latency_ms > UINT32_MAX:
        return f"latency_ms {latency_ms} exceeds the UInt32 column"
    if not MIN_TIME <= started_at <= MAX_TIME:
        return f"started_at {started_at.isoformat()} is outside 1900..2299"
    for name, value in (("connections", connections), ("users", users)):
        if value is not None and value > UINT32_MAX:
            return f"health.{name} {value} exceeds the UInt32 column"
    return None


@dataclass
class Rejected:
    """A message, or one item of a batch, that cannot be stored."""

    item: int | None
    """Index in the batch envelope, None when the whole message was rejected."""
    reason: str
    """Why, in words a person can act on."""
    payload: str
    """The rejected text (truncated to 64 KiB)."""


@dataclass
class DecodedMessage:
    """One message turned into rows, plus what was rejected. The chunker counts `len(rows)`."""

    rows: list[Row] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def probe_row(
    result: ProbeResult,
    topic: str,
    partition: int,
    offset: int,
    item: int,
    maintenance_id: str | None = None,
) -> Row:
    """One probe_results row (`maintenance_id`: the window the probe ran in, if any)."""
    return _struct_row(result, result.started_at, topic, partition, offset, item, maintenance_id)


def case_row(
    event: CaseEvent, topic: str, partition: int, offset: int, verdict: EventVerdict | None = None
) -> Row:
    """One case_events row (severity None stored as NO_SEVERITY). `verdict`: the sink's check of the event
    (None: not checked, chain_status '' like the rows stored before the sink verified events). An event
    that is not verified gets its own key (chain_copy = partition:offset), so it never replaces the genuine
    row in the ReplacingMergeTree."""
    if event.seq > UINT64_MAX:
        raise ValueError(f"seq {event.seq} exceeds the UInt64 column")
    return (
        event.event_id,
        event.case_id,
        event.type.value,
        NO_SEVERITY if event.severity is None else int(event.severity),
        event.source.value,
        event.server_id,
        event.customer_id,
        to_epoch_ms(event.at),
        event.actor,
        orjson.dumps(event.details, option=orjson.OPT_SORT_KEYS).decode(),
        topic,
        partition,
        offset,
        event.state.value,
        event.ticket,
        event.owner,
        event.partner_id,
        event.reason,
        event.command_id,
        event.visibility.value,
        event.seq,
        event.prev_hash,
        event.hash,
        event.key_id,
        event.sig,
        verdict.status.value if verdict is not None else "",
        "" if verdict is None or verdict.status is EventStatus.VERIFIED else f"{partition}:{offset}",
        verdict.fault if verdict is not None else "",
    )


def _struct_row(
    r: Result | ProbeResult,
    started_at: datetime,
    topic: str,
    partition: int,
    offset: int,
    item: int,
    window: str | None,
) -> Row:
    """The probe_results row of a decoded struct (no ProbeResult built) or of a ProbeResult."""
    h = r.health
    return (
        r.server_id,
        r.customer_id,
        r.probe_id,
        int(started_at.timestamp() * 1000),  # fleetcore.clock.to_epoch_ms, inlined
        r.latency_ms,
        r.ok,
        r.status_code,
        r.error_class,
        r.error_message,
        r.worker_id,
        *(
            (None, None, None, None, None, None)
            if h is None
            else (h.load1, h.connections, h.users, h.cpu_percent, h.memory_percent, h.disk_percent)
        ),
        topic,
        partition,
        offset,
        item,
        window,
    )


def decode_probe_message(
    raw: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    planned: PlannedLookup | None = None,
    decode: Callable[[bytes | None], DecodedBatch] | None = None,
) -> DecodedMessage:
    """Rows of one ProbeBatch message; a bad envelope rejects the message, a bad result only its item.

    `planned` marks each row with the maintenance window its probe ran in (None: nothing is planned).
    `decode`: None for the fast decoder (schemas.fastdecode, rows straight from its structs), or a
    DecodedBatch decoder such as the contract's own `schemas.envelope.decode_probe_batch` (same rows and
    rejections, slower: the benchmark's and the tests' reference).
    """
    if decode is not None:
        return _decode_with(decode, raw, topic, partition, offset, planned)
    decoded = decode_probe_items(raw)
    out = DecodedMessage()
    data = decoded.data
    if decoded.rejected:
        if data is None and decoded.batch_id is not None:
            with contextlib.suppress(orjson.JSONDecodeError):
                data = orjson.loads(raw or b"{}")
        out.rejected = [Rejected(i, why, item_payload(raw, i, data)) for i, why in decoded.rejected]
    rows = out.rows
    for item, r, started in decoded.items:
        if type(r) is Result:
            h = r.health
            why = (
                None
                if r.latency_ms <= UINT32_MAX
                and MIN_TIME < started < MAX_TIME
                and (h is None or ((h.connections or 0) <= UINT32_MAX and (h.users or 0) <= UINT32_MAX))
                else _unstorable(r.latency_ms, started, h.connections if h else None, h.users if h else None)
            )
            if why is None:
                window = planned(r.server_id, r.customer_id, started) if planned is not None else None
                rows.append(_struct_row(r, started, topic, partition, offset, item, window))
                continue
        else:
            assert isinstance(r, ProbeResult)
            why = unstorable_probe(r)
            if why is None:
                window = planned(r.server_id, r.customer_id, r.started_at) if planned is not None else None
                rows.append(probe_row(r, topic, partition, offset, item, window))
                continue
        if data is None:
            data = orjson.loads(raw or b"{}")
        out.rejected.append(Rejected(item, f"cannot store ProbeResult: {why}", item_payload(raw, item, data)))
    if decoded.rejected and len(out.rejected) > len(decoded.rejected):
        out.rejected.sort(key=lambda r: -1 if r.item is None else r.item)
    return out


def _decode_with(
    decode: Callable[[bytes | None], DecodedBatch],
    raw: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    planned: PlannedLookup | None,
) -> DecodedMessage:
    batch = decode(raw)
    out = DecodedMessage()
    if batch.rejected:
        out.rejected = [Rejected(item, reason, item_payload(raw, item)) for item, reason in batch.rejected]
    if batch.batch_id is None:
        return out
    rejected_items = {r.item for r in out.rejected}
    item = 0
    for result in batch.results:
        while item in rejected_items:
            item += 1
        why = unstorable_probe(result)
        if why is None:
            window = (
                planned(result.server_id, result.customer_id, result.started_at)
                if planned is not None
                else None
            )
            out.rows.append(probe_row(result, topic, partition, offset, item, window))
        else:
            out.rejected.append(Rejected(item, f"cannot store ProbeResult: {why}", item_payload(raw, item)))
        item += 1
    out.rejected.sort(key=lambda r: -1 if r.item is None else r.item)
    return out


def decode_case_message(
    raw: bytes | None, topic: str, partition: int, offset: int, check: CaseCheck | None = None
) -> DecodedMessage:
    """The row of one CaseEvent message (with `check`'s verdict), or its rejection. A forged or misplaced
    event is still stored, as what it is: its row says why it is not verified."""
    payload = (raw or b"").decode("utf-8", errors="replace")[:65536]
    if raw is None:
        return DecodedMessage(rejected=[Rejected(None, "empty message value", payload)])
    try:
        event = CaseEvent.model_validate_json(raw)
    except ValidationError as exc:
        return DecodedMessage(
            rejected=[Rejected(None, f"not a CaseEvent: {validation_reason(exc)}", payload)]
        )
    if not MIN_TIME <= event.at <= MAX_TIME:
        why = f"at {event.at.isoformat()} is outside 1900..2299"
        return DecodedMessage(rejected=[Rejected(None, f"cannot store CaseEvent: {why}", payload)])
    try:
        row = case_row(event, topic, partition, offset, check(event, partition) if check else None)
    except (TypeError, ValueError) as exc:  # e.g. a details integer beyond 64 bits
        return DecodedMessage(rejected=[Rejected(None, f"cannot store CaseEvent: {exc}", payload)])
    return DecodedMessage(rows=[row])


def dead_letter(
    rejected: Rejected, topic: str, partition: int, offset: int, consumer: str, now: datetime
) -> DeadLetter:
    """The dead letter of one rejection."""
    return DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        item=rejected.item,
        consumer=consumer,
        reason=rejected.reason,
        payload=rejected.payload,
        rejected_at=now,
    )


def columns(rows: list[Row], width: int) -> list[list[Any]]:
    """Rows transposed into `width` columns for a column-oriented insert."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*rows, strict=True)]
