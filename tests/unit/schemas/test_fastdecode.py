"""The fast ProbeBatch decoder agrees with the pydantic contract on every envelope and every item.

Differential: `decode_probe_batch_fast` and the reference `schemas.envelope.decode_probe_batch` must return
the same batch id, the same rejections (item and reason) and the same accepted results (values, their
types, the timestamps' zone) for the contract's fixtures and for a seeded corpus of 10,000 generated good
and bad envelopes.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from schemas.envelope import DecodedBatch, decode_probe_batch
from schemas.fastdecode import Health, Result, decode_probe_batch_fast
from schemas.probes import HealthMetrics, ProbeBatch, ProbeResult
from tests.helpers import result

ID_CHARS = "abcXYZ019._:-"
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _view(decoded: DecodedBatch) -> tuple[Any, ...]:
    """Everything a consumer can observe, strictly (repr shows int vs float and the timestamp's zone)."""
    return (
        decoded.batch_id,
        decoded.rejected,
        [repr(r.model_dump()) for r in decoded.results],
        [type(r) for r in decoded.results],
    )


def assert_agree(raw: bytes | None) -> DecodedBatch:
    fast, reference = decode_probe_batch_fast(raw), decode_probe_batch(raw)
    assert _view(fast) == _view(reference), raw
    assert fast.results == reference.results
    return fast


# -- the contract's fixtures ---------------------------------------------------------------------------


def _fixtures() -> list[bytes | None]:
    good = result("s1", 0, ok=True)
    bad = result("s2", 1, ok=False)
    partner = bad.model_copy(update={"partner_id": "northwind-partners"})
    batch = ProbeBatch(batch_id="w:1", worker_id="w", partition=2, results=[good, bad, partner])
    old = good.model_dump(mode="json")
    old.pop("partner_id")
    out: list[bytes | None] = [
        None,
        b"\xff\xfe",
        b"[]",
        b'{"batch_id":"b"}',
        batch.model_dump_json().encode(),
        b'{"batch_id":"b","worker_id":"w","partition":0,"results":['
        + good.model_dump_json().encode()
        + b',{"server_id":"s2"},'
        + bad.model_dump_json().encode()
        + b","
        + orjson.dumps(old)
        + b"]}",
    ]
    for n in range(20):  # the helpers' results, healthy and failing, in batches of every size up to 20
        results = [result(f"s{i}", n, ok=(i + n) % 4 != 0) for i in range(n)]
        out.append(
            ProbeBatch(batch_id=f"w:{n}", worker_id="w", partition=n, results=results)
            .model_dump_json()
            .encode()
        )
    return out


@pytest.mark.parametrize("raw", _fixtures())
def test_the_fast_decoder_agrees_on_the_contracts_fixtures(raw: bytes | None) -> None:
    assert_agree(raw)


def test_the_common_case_is_decoded_without_pydantic_and_keeps_utc() -> None:
    raw = ProbeBatch(
        batch_id="w:1", worker_id="w", partition=0, results=[result("s", i, ok=i % 2 == 0) for i in range(4)]
    ).model_dump_json()
    decoded = assert_agree(raw.replace("Z", "+02:00").encode())
    assert decoded.rejected == []
    assert len(decoded.results) == 4
    assert all(r.started_at.tzinfo is UTC for r in decoded.results)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("2026-01-01T00:00:00.1234567Z", True),  # pydantic truncates 7 digits, msgspec would round them
        ("2026-01-01 00:00:00z", True),
        ("2026-01-01T00:00Z", True),
        (1700000000, True),
        ("2026-01-01T00:00:00", False),  # naive
        ("2026-13-01T00:00:00Z", False),
        ("0001-01-01T00:00:00+01:00", False),
    ],
)
def test_timestamps_the_narrow_types_refuse_are_judged_by_pydantic(value: Any, accepted: bool) -> None:
    item = result("s", 0, ok=True).model_dump(mode="json") | {"started_at": value}
    raw = orjson.dumps({"batch_id": "b", "worker_id": "w", "partition": 0, "results": [item]})
    decoded = assert_agree(raw)
    assert len(decoded.results) == int(accepted)


def test_the_structs_follow_the_models_field_order() -> None:
    """probe_result takes the struct's fields as the model's __dict__, in order (dumps and reprs keep it)."""
    assert Result.__struct_fields__ == tuple(ProbeResult.model_fields)
    assert Health.__struct_fields__ == tuple(HealthMetrics.model_fields)


# -- the fuzz corpus -----------------------------------------------------------------------------------


def _id(rng: random.Random) -> str:
    return rng.choice("abcXYZ019") + "".join(rng.choice(ID_CHARS) for _ in range(rng.randrange(0, 12)))


def _stamp(rng: random.Random) -> Any:
    at = T0 + timedelta(milliseconds=rng.randrange(-(10**12), 10**12))
    form = rng.randrange(8)
    if form == 0:
        return at.isoformat()
    if form == 1:
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if form == 2:
        zone = UTC if rng.random() < 0.5 else timezone(timedelta(minutes=rng.randrange(-1439, 1440)))
        return at.astimezone(zone).isoformat(timespec=rng.choice(["seconds", "milliseconds", "microseconds"]))
    if form == 3:
        return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return at.isoformat().replace("+00:00", "Z")


def _good_item(rng: random.Random) -> dict[str, Any]:
    ok = rng.random() < 0.8
    item: dict[str, Any] = {
        "server_id": _id(rng),
        "customer_id": _id(rng),
        "probe_id": f"{_id(rng)}@{rng.randrange(10**13)}",
        "started_at": _stamp(rng),
        "latency_ms": rng.randrange(0, 20000),
        "ok": ok,
        "worker_id": _id(rng),
    }
    optional: dict[str, Any] = {
        "partner_id": _id(rng),
        "status_code": rng.randrange(100, 600),
        "error_class": None if ok else rng.choice(["timeout", "refused", "dns", "tls"]),
        "error_message": None if ok else "no answer within 10 s ünïcødé ✓",
        "backup_of": _id(rng),
        "health": {
            "load1": rng.random() * 8,
            "connections": rng.randrange(0, 5000),
            "users": rng.randrange(0, 300),
            "cpu_percent": rng.random() * 100,
            "memory_percent": float(rng.randrange(0, 101)),
            "disk_percent": rng.choice([0, 100, 42.5, None]),
        },
    }
    for key, value in optional.items():
        if rng.random() < 0.5:
            item[key] = value
    if "health" in item and rng.random() < 0.3:
        item["health"] = {k: v for k, v in item["health"].items() if rng.random() < 0.5}
    return item


JUNK: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    5.0,
    5.5,
    -0.0,
    1e308,
    2**63,
    2**64,
    -(2**63) - 1,
    10**30,
    "",
    " ",
    "5",
    "5.0",
    "true",
    "yes",
    "1",
    "0",
    "x" * 201,
    "y" * 1001,
    "z" * 100,
    "é" * 200,
    "😀" * 128,
    "a\n",
    "a b",
    "ä",
    "-abc",
    "abc\x00",
    "2026-01-01T00:00:00",
    "2026-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T00:00:00+24:00",
    "2026-01-01T00:00:00.1234567891Z",
    "1700000000",
    "9999-12-31T23:59:59-23:59",
    "2026-W01",
    [],
    [1],
    {},
    {"a": 1},
    {"load1": -1},
    {"cpu_percent": 101},
    {"users": "3"},
    {"connections": 2.0},
    {"disk_percent": None, "extra": 1},
    100,
    99,
    599,
    600,
    1e-9,
    "inf",
    "NaN",
    "-5",
    "  5",
    "5_000",
    "0x10",
    "1800-01-01T00:00:00Z",
    "2300-01-01T00:00:00+01:00",
    2**32,
    2**32 - 1,
]


def _mutate_item(rng: random.Random, item: dict[str, Any]) -> None:
    kind = rng.randrange(5)
    keys = list(item)
    if kind == 0:
        item[rng.choice(keys)] = rng.choice(JUNK)
    elif kind == 1:
        item.pop(rng.choice(keys))
    elif kind == 2:
        item[rng.choice(["extra", "Server_id", "health_", "load1"])] = rng.choice(JUNK)
    elif kind == 3 and isinstance(item.get("health"), dict):
        item["health"][rng.choice(["load1", "connections", "users", "cpu_percent", "bogus"])] = rng.choice(
            JUNK
        )
    else:
        field = rng.choice(["latency_ms", "status_code", "ok", "started_at", "partition"])
        item[field] = rng.choice([True, False, 200.0, 1.5, "200", -1, None, 2**40, 1e20])


def _envelope(rng: random.Random) -> bytes:
    items: list[Any] = [_good_item(rng) for _ in range(rng.randrange(0, 7))]
    for item in items:
        if rng.random() < 0.25:
            _mutate_item(rng, item)
    if items and rng.random() < 0.03:
        items[rng.randrange(len(items))] = rng.choice(JUNK)
    envelope: dict[str, Any] = {
        "batch_id": f"{_id(rng)}:{rng.randrange(1000)}",
        "worker_id": _id(rng),
        "partition": rng.randrange(0, 12),
        "results": items,
    }
    if rng.random() < 0.1:
        key = rng.choice(["batch_id", "worker_id", "partition", "results", "extra"])
        if rng.random() < 0.5:
            envelope.pop(key, None)
        else:
            envelope[key] = rng.choice(JUNK)
    raw = json.dumps(envelope, ensure_ascii=rng.random() < 0.5).encode()  # NaN/Infinity literals too
    roll = rng.random()
    if roll < 0.03:
        raw = raw[: rng.randrange(len(raw))]  # truncated
    elif roll < 0.05 and items:
        raw = raw.replace(b'"ok": ', b'"ok": true, "ok": ', 1)  # duplicate key
    elif roll < 0.06:
        raw = raw.replace(b'"w', b'"\\ud800w', 1)  # lone surrogate
    elif roll < 0.07:
        raw = raw.replace(b"0", b"Infinity", 1)
    elif roll < 0.08:
        raw = raw + b" x"
    return raw


def test_the_fast_decoder_agrees_with_pydantic_on_10000_fuzzed_envelopes() -> None:
    rng = random.Random(20261207)
    accepted = rejected = envelopes_rejected = 0
    for _ in range(10_000):
        decoded = assert_agree(_envelope(rng))
        accepted += len(decoded.results)
        rejected += sum(item is not None for item, _ in decoded.rejected)
        envelopes_rejected += decoded.batch_id is None
    # the corpus exercises every verdict in numbers
    assert accepted > 15_000
    assert rejected > 2_000
    assert envelopes_rejected > 500
