"""Decode throughput: ProbeBatch envelopes -> results (detector) and -> history rows (sink), per core.

The same envelopes (a synthetic fleet, 10% of servers failing, batches of 500 results like a probe
worker's) are decoded by

* pydantic: schemas.envelope.decode_probe_batch, the contract itself (whole-envelope validation, item by
  item when something is wrong);
* fast: schemas.fastdecode.decode_probe_batch_fast, msgspec with pydantic's exact verdicts;

each into ProbeResult objects (what the stream worker's detector takes) and into probe_results rows (what
the sink stores: sinks.rows.decode_probe_message with either decoder). Two mixes: healthy (every result
valid) and failing (every 10th result breaks the contract: a negative latency, a naive timestamp, an
unknown key, a missing field, in turn; each is rejected on its own, the rest of its batch goes on).

Figures are results per CPU second of this single-threaded process (time.process_time, best of
--repeat runs), so other work on the machine skews them less than wall time would.

    .venv/bin/python bench/decode_throughput.py [--quick] [--results N] [--repeat N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import orjson
from _common import Fleet, envelopes, table
from _machine import print_machine

from schemas.envelope import decode_probe_batch
from schemas.fastdecode import decode_probe_batch_fast
from sinks.rows import decode_probe_message

BREAKS: list[Callable[[dict[str, Any]], None]] = [
    lambda r: r.update(latency_ms=-1),
    lambda r: r.update(started_at="2026-11-01T00:00:00"),
    lambda r: r.update(unknown=1),
    lambda r: r.pop("worker_id"),
]


def failing_mix(messages: list[bytes], every: int = 10) -> list[bytes]:
    """The same envelopes with every `every`-th result broken (in turn by each of BREAKS)."""
    out: list[bytes] = []
    n = 0
    for raw in messages:
        batch = orjson.loads(raw)
        for result in batch["results"]:
            if n % every == every - 1:
                BREAKS[(n // every) % len(BREAKS)](result)
            n += 1
        out.append(orjson.dumps(batch))
    return out


def rate(decode: Callable[[bytes], int], messages: list[bytes], repeat: int) -> float:
    """Results (accepted + rejected items) per CPU second, best of `repeat` runs."""
    best = 0.0
    for _ in range(repeat):
        started = time.process_time()
        n = sum(decode(raw) for raw in messages)
        spent = time.process_time() - started
        best = max(best, n / spent if spent > 0 else 0.0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=200_000, help="results per mix")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20,000 results, 3 runs")
    args = parser.parse_args()
    if args.quick:
        args.results, args.repeat = 20_000, 3
    print_machine("decode throughput (results per CPU second, one core)")
    servers = 2000
    fleet = Fleet(servers=servers, rounds=max(1, args.results // servers), failing_every=10)
    healthy = [raw for _, raw in envelopes(fleet, per_batch=500)]
    mixes = {"healthy": healthy, "10% failing": failing_mix(healthy)}

    def results(decoder: Callable[[bytes | None], Any]) -> Callable[[bytes], int]:
        def run(raw: bytes) -> int:
            decoded = decoder(raw)
            return len(decoded.results) + len(decoded.rejected)

        return run

    def rows(decoder: Callable[[bytes | None], Any] | None) -> Callable[[bytes], int]:
        def run(raw: bytes) -> int:  # decode=None: the sink's own path (rows straight from the structs)
            decoded = decode_probe_message(raw, "probe-results", 0, 0, decode=decoder)
            return len(decoded.rows) + len(decoded.rejected)

        return run

    table_rows: list[list[Any]] = []
    for mix, messages in mixes.items():
        for what, slow_decode, fast_decode in (
            ("results", results(decode_probe_batch), results(decode_probe_batch_fast)),
            ("rows", rows(decode_probe_batch), rows(None)),
        ):
            slow = rate(slow_decode, messages, args.repeat)
            fast = rate(fast_decode, messages, args.repeat)
            table_rows.append([mix, what, f"{slow:,.0f}", f"{fast:,.0f}", f"{fast / slow:.1f}x"])
    n = sum(len(orjson.loads(m)["results"]) for m in healthy)
    print(f"{n:,} results in {len(healthy)} envelopes of up to 500 per mix, best of {args.repeat} runs\n")
    print(table(["mix", "into", "pydantic /s", "fast /s", "speed-up"], table_rows))


if __name__ == "__main__":
    main()
