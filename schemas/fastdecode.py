"""The fast ProbeBatch decoder: msgspec in front of the pydantic contract, with exactly its verdicts.

`decode_probe_batch` of schemas.envelope (pydantic) is the reference: a malformed envelope rejects the whole
message, a schema-violating result only its item, with a reason. This module returns the same DecodedBatch
for every input, several times faster:

1. the whole envelope is decoded by msgspec into structs whose types are *narrower* than the contract
   (strict JSON types: no "5" for an int, no 1 for a bool, no number for a timestamp), then a tight
   post-pass checks what msgspec cannot express cheaply: ids against the contract's pattern (each distinct
   id once: a bounded cache of ids seen valid), timestamps only in the form
   `YYYY-MM-DDTHH:MM:SS[.fff…](Z|±HH:MM)`, parsed by `datetime.fromisoformat` and aware. Everything
   this accepts, pydantic accepts with equal values (the differential test,
   tests/unit/schemas/test_fastdecode.py, checks it over the fixtures and a fuzz corpus of 10,000
   envelopes);
2. if anything fails, the message is judged again: the JSON verdict and the envelope are pydantic's own
   (orjson and `_LooseBatch`, exactly as the reference), each item is decoded by msgspec again, and an item
   msgspec refuses goes to `ProbeResult.model_validate`, which accepts it (lax input the narrow types do not
   cover) or rejects it with the reference's reason. So a rejection always carries pydantic's words.

`decode_probe_items` gives the decoded structs themselves (the sink builds its rows from them);
`decode_probe_batch_fast` builds ProbeResult instances from them without a second validation (the stream
worker's detector takes those): their values are already proven valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import orjson
from msgspec import Meta, Struct
from pydantic import BaseModel, ValidationError

from schemas.envelope import DecodedBatch, decode_probe_batch, validation_reason
from schemas.inventory import ID_PATTERN
from schemas.probes import HealthMetrics, ProbeResult

_ID_RE = re.compile(ID_PATTERN.removeprefix("^").removesuffix("$"))
"""schemas.inventory.ID_PATTERN as pydantic's regex engine reads it (`$` there is the end of the text):
used with fullmatch, so "abc\n" does not pass as Python's `$` would let it."""
_ID_CACHE_MAX = 200_000
_TEXT200 = Annotated[str, Meta(min_length=1, max_length=200)]
_ID = Annotated[str, Meta(min_length=1, max_length=128)]
"""Ids: length here, the pattern in the post-pass."""
_NONNEG_INT = Annotated[int, Meta(ge=0, le=2**63 - 1)]
"""orjson (the reference's item path) reads integers beyond 64 bits as floats; larger ones go to pydantic."""
_NONNEG = Annotated[float, Meta(ge=0)]
_PERCENT = Annotated[float, Meta(ge=0, le=100)]


class Health(Struct, forbid_unknown_fields=True):
    """HealthMetrics, as msgspec decodes it."""

    load1: _NONNEG | None = None
    connections: _NONNEG_INT | None = None
    users: _NONNEG_INT | None = None
    cpu_percent: _PERCENT | None = None
    memory_percent: _PERCENT | None = None
    disk_percent: _PERCENT | None = None


class Result(Struct, forbid_unknown_fields=True, kw_only=True):
    """ProbeResult, as msgspec decodes it (`started_at` still text: the post-pass parses it). Fields in
    ProbeResult's order, so `msgspec.structs.asdict` gives the model's `__dict__` in its order."""

    server_id: _ID
    customer_id: _ID
    partner_id: _ID | None = None
    probe_id: _TEXT200
    started_at: str
    latency_ms: _NONNEG_INT
    ok: bool
    status_code: Annotated[int, Meta(ge=100, le=599)] | None = None
    error_class: Annotated[str, Meta(max_length=100)] | None = None
    error_message: Annotated[str, Meta(max_length=1000)] | None = None
    worker_id: _TEXT200
    health: Health | None = None
    backup_of: _ID | None = None


class _Batch(Struct, forbid_unknown_fields=True):
    batch_id: _TEXT200
    worker_id: _TEXT200
    partition: _NONNEG_INT
    results: list[Result]


class _LooseBatch(Struct, forbid_unknown_fields=True):
    batch_id: _TEXT200
    worker_id: _TEXT200
    partition: _NONNEG_INT
    results: list[msgspec.Raw]


_BATCH = msgspec.json.Decoder(_Batch)
_LOOSE = msgspec.json.Decoder(_LooseBatch)
_ITEM = msgspec.json.Decoder(Result)
_REFUSED = (msgspec.ValidationError, msgspec.DecodeError, ValueError, OverflowError)
_RESULT_FIELDS = frozenset(ProbeResult.model_fields)
_HEALTH_FIELDS = frozenset(HealthMetrics.model_fields)
_new = object.__new__
_asdict = msgspec.structs.asdict
_set = object.__setattr__
_slots = BaseModel.__dict__
_set_fields_set = _slots["__pydantic_fields_set__"].__set__
_set_extra = _slots["__pydantic_extra__"].__set__
_set_private = _slots["__pydantic_private__"].__set__
"""BaseModel's slot setters: what `model_construct` sets, without its per-field Python loop."""
_valid_ids: set[str] = set()
_fromisoformat = datetime.fromisoformat


class _Refused(ValueError):
    """The post-pass refuses a value msgspec let through: pydantic judges the item."""


def _check_id(value: str | None) -> None:
    if value is None or value in _valid_ids:
        return
    if _ID_RE.fullmatch(value) is None:
        raise _Refused(value)
    if len(_valid_ids) >= _ID_CACHE_MAX:
        _valid_ids.clear()
    _valid_ids.add(value)


def _started(text: str) -> datetime:
    """The UTC moment of a timestamp in the one form taken here; _Refused/ValueError for anything else
    (other forms pydantic may accept, e.g. `2026-01-01 00:00Z` or a number, go to pydantic)."""
    if text[4:17:3] != "--T::" or text[19:20] not in (".", "Z", "+", "-"):
        raise _Refused(text)
    if text[-1] != "Z" and (text[-3] != ":" or text[-6] not in ("+", "-")):
        raise _Refused(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)  # a naive `…+hh:mm`-less text cannot pass the checks above
    return moment


def checked(r: Result) -> datetime:
    """Check what msgspec did not (ids, the timestamp's form); the result's start (UTC). Raises ValueError
    (or OverflowError) when pydantic must judge the item. (The hot loop: `_check_id` and `_started`
    inlined for the common case.)"""
    ids = _valid_ids
    if r.server_id not in ids:
        _check_id(r.server_id)
    if r.customer_id not in ids:
        _check_id(r.customer_id)
    if r.partner_id is not None and r.partner_id not in ids:
        _check_id(r.partner_id)
    if r.backup_of is not None and r.backup_of not in ids:
        _check_id(r.backup_of)
    text = r.started_at
    if text[-1:] == "Z" and text[4:17:3] == "--T::" and text[19:20] in (".", "Z"):
        moment = _fromisoformat(text)  # UTC already
        return moment
    return _started(text)


@dataclass
class DecodedItems:
    """A decoded ProbeBatch message, its accepted items as msgspec structs where it could decode them."""

    batch_id: str | None = None
    """The envelope's batch id (None when the envelope itself is malformed)."""
    items: list[tuple[int, Result | ProbeResult, datetime]] = field(default_factory=list)
    """(item index, the result, its start in UTC) of every valid result, in message order: a Result struct,
    or the ProbeResult pydantic accepted where msgspec's narrow types refused the item."""
    rejected: list[tuple[int | None, str]] = field(default_factory=list)
    """(item index or None for the whole message, reason), exactly as schemas.envelope decides."""
    data: Any = None
    """The message as orjson read it, when it was (for the dead letters' payloads)."""


def _from_reference(raw: bytes | None) -> DecodedItems:
    batch = decode_probe_batch(raw)
    rejected = {index for index, _ in batch.rejected}
    indexes = (i for i in range(len(batch.results) + len(rejected)) if i not in rejected)
    items: list[tuple[int, Result | ProbeResult, datetime]] = [
        (i, r, r.started_at) for i, r in zip(indexes, batch.results, strict=False)
    ]
    return DecodedItems(batch.batch_id, items, batch.rejected)


def decode_probe_items(raw: bytes | None) -> DecodedItems:
    """Decode one probe-results message value without raising: `schemas.envelope.decode_probe_batch`'s
    verdicts (same valid results, same rejections and reasons), computed by msgspec where it can be."""
    if raw is None:
        return _from_reference(raw)
    try:
        batch = _BATCH.decode(raw)
        return DecodedItems(batch.batch_id, [(i, r, checked(r)) for i, r in enumerate(batch.results)])
    except _REFUSED:
        return _tolerant(raw)


def _tolerant(raw: bytes) -> DecodedItems:
    """Something in the message is refused by the narrow types: judge it item by item, as the reference."""
    try:
        data = orjson.loads(raw)  # the reference's JSON verdict (it differs from msgspec's on edge cases)
        loose = _LOOSE.decode(raw)
    except (orjson.JSONDecodeError, msgspec.ValidationError, msgspec.DecodeError):
        return _from_reference(raw)  # a bad envelope (or an unusual one): the reference says why
    values: list[Any] = data["results"]
    if not isinstance(values, list) or len(values) != len(loose.results):
        return _from_reference(raw)  # e.g. duplicate keys read differently: let pydantic decide
    out = DecodedItems(batch_id=loose.batch_id, data=data)
    for index, item in enumerate(loose.results):
        try:
            r = _ITEM.decode(item)
            out.items.append((index, r, checked(r)))
            continue
        except _REFUSED:
            pass
        try:
            model = ProbeResult.model_validate(values[index])
        except ValidationError as exc:
            if _json_accepts(bytes(item)):
                return _from_reference(raw)  # the reference may accept the whole envelope as JSON
            out.rejected.append((index, f"invalid ProbeResult: {validation_reason(exc)}"))
        else:
            out.items.append((index, model, model.started_at))
    return out


def _json_accepts(item: bytes) -> bool:
    """Does pydantic's JSON mode accept an item its Python mode (on orjson's values) rejects? (e.g. an integer
    beyond 64 bits, which orjson reads as a float): then the reference's whole-envelope pass decides."""
    try:
        ProbeResult.model_validate_json(item)
    except ValidationError:
        return False
    return True


def _health(h: Health) -> HealthMetrics:
    model: HealthMetrics = _new(HealthMetrics)
    _set(model, "__dict__", _asdict(h))
    _set_fields_set(model, _HEALTH_FIELDS)
    _set_extra(model, None)
    _set_private(model, None)
    return model


def probe_result(r: Result | ProbeResult, started_at: datetime) -> ProbeResult:
    """The ProbeResult of a checked struct, without validating again (what `model_construct` does, faster)."""
    if isinstance(r, ProbeResult):
        return r
    model: ProbeResult = _new(ProbeResult)
    values = _asdict(r)
    values["started_at"] = started_at
    if r.health is not None:
        values["health"] = _health(r.health)
    _set(model, "__dict__", values)
    _set_fields_set(model, _RESULT_FIELDS)
    _set_extra(model, None)
    _set_private(model, None)
    return model


def decode_probe_batch_fast(raw: bytes | None) -> DecodedBatch:
    """`schemas.envelope.decode_probe_batch`, fast: the same DecodedBatch for every input."""
    decoded = decode_probe_items(raw)
    return DecodedBatch(
        batch_id=decoded.batch_id,
        results=[probe_result(r, started) for _, r, started in decoded.items],
        rejected=decoded.rejected,
    )
