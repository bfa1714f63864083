"""The two measured sides of bench/sink_throughput.py, each in its own process (chdb locks a data path to
one process and allows one engine path per process). Prints one JSON line on stdout.

  sink  the real ingest path: sinks.clickhouse.ClickHouseSink (deterministic chunks, dedup tokens, commit
        after insert; inserts overlapping decoding unless --sequential; a maintenance lookup on an empty
        book, as the sink service passes) over a fresh chdb store migrated by history.ddl.migrate, until
        every row is stored and committed;
  raw   the same rows (decoded here from the same envelopes) into the same table of another fresh chdb
        store with plain column-oriented clickhouse-connect inserts, chunk by chunk; the decode is timed
        on its own.
"""

from __future__ import annotations

import argparse
import functools
import json
import threading
import time
from typing import Any

from _common import Fleet, envelopes

from fleetcore.settings import Settings
from history.ddl import PROBE_COLUMNS, PROBE_RESULTS, migrate
from history.store import connect
from policy.maintenance import MaintenanceBook
from policy.maintenance_feed import planned_by
from sinks.clickhouse import ClickHouseSink, SinkStats
from sinks.rows import columns, decode_probe_message


def check(client: Any) -> dict[str, int]:
    result = client.query(
        f"SELECT count(), uniqExact(kafka_partition, kafka_offset, batch_item) FROM {PROBE_RESULTS}"
    )
    rows, distinct = result.result_rows[0]
    return {"stored": int(rows), "distinct": int(distinct)}


class TimedSink(ClickHouseSink):
    """The real sink, noting when it consumed its first record."""

    first: float | None = None
    cpu_first: float = 0.0

    def add(self, topic: str, partition: int, offset: int, timestamp_ms: int, value: bytes | None) -> None:
        if self.first is None:
            self.first = time.monotonic()
            self.cpu_first = time.process_time()
        super().add(topic, partition, offset, timestamp_ms, value)


def run_sink(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(
        kafka_bootstrap=args.bootstrap,
        topic_prefix=args.prefix,
        clickhouse_dsn=args.dsn,
        create_topics=False,
        log_level="WARNING",
    )
    client = connect(args.dsn, settings.clickhouse_database)
    try:
        migrate(client)
        planned = functools.partial(planned_by, MaintenanceBook(), threading.Lock())
        sink = TimedSink(settings, client, planned=planned, overlap=not args.sequential)
        started = time.monotonic()
        sink.start()
        done: list[float] = []

        def until(stats: SinkStats) -> bool:
            if stats.rows.get(PROBE_RESULTS, 0) >= args.expect:
                done.extend((time.monotonic(), time.process_time()))
                return True
            return False

        stats = sink.run(threading.Event(), until=until, max_idle_s=120)
        sink.close()
        if not done or sink.first is None:
            raise SystemExit(f"sink stopped before storing every row: {stats}")
        return {
            "startup": sink.first - started,
            "seconds": done[0] - sink.first,
            "cpu": done[1] - sink.cpu_first,
            "messages": stats.messages,
            "chunks": stats.chunks,
            "rows": stats.rows.get(PROBE_RESULTS, 0),
            "chunk_rows": settings.sink_chunk_max_rows,
            **check(client),
        }
    finally:
        client.close()


def run_raw(args: argparse.Namespace) -> dict[str, Any]:
    fleet = Fleet(args.servers, args.rounds, failing_every=args.failing_every)
    messages = envelopes(fleet)
    started = time.monotonic()
    rows: list[Any] = []
    offsets: dict[int, int] = {}
    for partition, value in messages:
        offset = offsets.get(partition, 0)
        offsets[partition] = offset + 1
        rows.extend(decode_probe_message(value, "probe-results", partition, offset).rows)
    decode_s = time.monotonic() - started
    chunks = [columns(rows[i : i + args.chunk], len(PROBE_COLUMNS)) for i in range(0, len(rows), args.chunk)]
    client = connect(args.dsn, "fleetwatch")
    try:
        migrate(client)
        started, cpu = time.monotonic(), time.process_time()
        for data in chunks:
            client.insert(PROBE_RESULTS, data, column_names=list(PROBE_COLUMNS), column_oriented=True)
        insert_s, insert_cpu = time.monotonic() - started, time.process_time() - cpu
        return {
            "rows": len(rows),
            "decode_s": decode_s,
            "insert_s": insert_s,
            "insert_cpu": insert_cpu,
            "inserts": len(chunks),
            **check(client),
        }
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["sink", "raw"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--bootstrap")
    parser.add_argument("--prefix")
    parser.add_argument("--expect", type=int)
    parser.add_argument("--servers", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--failing-every", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=20000)
    parser.add_argument("--sequential", action="store_true", help="sink: insert, then decode on (no overlap)")
    args = parser.parse_args()
    out = run_sink(args) if args.role == "sink" else run_raw(args)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
