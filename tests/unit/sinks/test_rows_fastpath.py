"""The sink's rows come straight from the fast decoder's structs: the same rows and rejections as the
contract's own decoder gives, on the fixtures and the 10,000-envelope fuzz corpus of the decoder's test."""

from __future__ import annotations

import random
from datetime import datetime

from schemas.envelope import decode_probe_batch
from sinks.rows import decode_probe_message
from tests.unit.schemas.test_fastdecode import _envelope, _fixtures


def assert_same_rows(raw: bytes | None, planned: bool = False) -> None:
    def lookup(server_id: str, customer_id: str, started_at: datetime) -> str | None:
        return f"mw-{server_id}-{customer_id}" if started_at.microsecond % 2 == 0 else None

    window = lookup if planned else None
    fast = decode_probe_message(raw, "t", 3, 17, window)
    reference = decode_probe_message(raw, "t", 3, 17, window, decode=decode_probe_batch)
    assert [repr(row) for row in fast.rows] == [repr(row) for row in reference.rows], raw
    assert fast.rejected == reference.rejected, raw


def test_fast_rows_match_the_contracts_rows_on_the_fixtures() -> None:
    for raw in _fixtures():
        assert_same_rows(raw)
        assert_same_rows(raw, planned=True)


def test_fast_rows_match_the_contracts_rows_on_10000_fuzzed_envelopes() -> None:
    rng = random.Random(7)
    for n in range(10_000):
        assert_same_rows(_envelope(rng), planned=n % 2 == 0)
