"""Crash safety: a sink dying between insert and commit, or killed -9 mid-stream, stores each result once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fleetcore.settings import Settings
from history.queries import counts, probe_ids
from history.store import connect
from schemas.topics import Topics
from sinks.clickhouse import ClickHouseSink
from sinks.service import SinkService
from tests.integration.sinks.conftest import free_port, probe, produce_batches, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


class Crash(BaseException):
    """Stands for the process dying: not caught by the sink's loop."""


def stored_ids(settings: Settings) -> tuple[dict[str, int], Counter[str]]:
    client = connect(settings.store_dsn(), settings.clickhouse_database)
    try:
        return counts(client), Counter(probe_ids(client))
    finally:
        client.close()


def test_crash_after_insert_before_commit_then_replay_with_other_poll_sizes(
    kafka_bootstrap: str, topics: Topics, sink_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = [probe(f"srv-{s}", n) for s in range(10) for n in range(400)]  # 4000 results
    produce_batches(kafka_bootstrap, topics.probe_results, results, per_batch=25)

    real_commit = ClickHouseSink._commit
    commits = 0

    def commit_then_die(self: ClickHouseSink, chunk: Any) -> None:
        nonlocal commits
        if commits == 5:
            raise Crash  # chunk 6 is inserted, its offset never committed
        commits += 1
        real_commit(self, chunk)

    monkeypatch.setattr(ClickHouseSink, "_commit", commit_then_die)
    with pytest.raises(Crash):
        SinkService(sink_settings, http=False, grace_ms=200, max_poll_records=500).run()
    monkeypatch.setattr(ClickHouseSink, "_commit", real_commit)
    partial, _ = stored_ids(sink_settings)
    assert 0 < partial["probe_rows"] < len(results)

    stats = SinkService(sink_settings, http=False, grace_ms=200, max_poll_records=3, max_idle_s=3).run()
    assert stats.rows["probe_results"] > len(results) - partial["probe_rows"]  # the crashed chunk was re-sent
    summary, ids = stored_ids(sink_settings)
    assert summary["probe_rows"] == len(results)
    assert ids == Counter(r.probe_id for r in results)


def http_counts(base: str) -> dict[str, int] | None:
    try:
        with urllib.request.urlopen(f"{base}/api/counts", timeout=5) as resp:
            data: dict[str, int] = json.loads(resp.read())
            return data
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def start_sink(settings: Settings, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FLEETWATCH_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "FLEETWATCH_TOPIC_PREFIX": settings.topic_prefix,
        "FLEETWATCH_DATA_DIR": str(settings.data_dir),
        "FLEETWATCH_CREATE_TOPICS": "false",
        "FLEETWATCH_SINK_CHUNK_MAX_ROWS": "200",
        "FLEETWATCH_SINK_CHUNK_SECONDS": "1",
        "FLEETWATCH_SINK_HTTP_PORT": str(port),
        "FLEETWATCH_LOG_LEVEL": "INFO",
    }
    env.pop("FLEETWATCH_CLICKHOUSE_DSN", None)
    log_file = log_path.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "sinks"], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    finally:
        log_file.close()


def test_kill_9_mid_stream_and_restart_stores_every_result_once(
    kafka_bootstrap: str, topics: Topics, sink_settings: Settings, tmp_path: Path
) -> None:
    first = [probe(f"srv-{s}", n) for s in range(40) for n in range(500)]  # 20000 results
    second = [probe(f"srv-{s}", n) for s in range(40) for n in range(500, 600)]  # 4000 more after the kill
    produce_batches(kafka_bootstrap, topics.probe_results, first, per_batch=50)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "sink.log"

    proc = start_sink(sink_settings, port, log_path)
    try:
        at_kill = wait_for(
            lambda: (c := http_counts(base)) is not None and c["probe_rows"] > 0 and c,
            120,
            "first rows stored",
        )
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert at_kill["probe_rows"] < len(first), "the sink finished before the kill; make the stream longer"

    produce_batches(kafka_bootstrap, topics.probe_results, second, per_batch=50)
    proc = start_sink(sink_settings, port, log_path)
    try:
        total = len(first) + len(second)
        wait_for(
            lambda: (c := http_counts(base)) is not None and c["probe_rows"] >= total,
            180,
            "every result stored after the restart",
            interval=0.2,
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    summary, ids = stored_ids(sink_settings)  # the store is ours again once the sink has exited
    assert summary["probe_rows"] == total, log_path.read_text()[-3000:]
    assert ids == Counter(r.probe_id for r in first + second)
