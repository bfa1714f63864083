"""The sink against a real broker and an embedded store: everything lands once, bad input is dead-lettered."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import pytest

from casefile.reader import partition_for_case
from fleetcore.settings import Settings
from fleetwatch.cli import main as cli_main
from history.client import fetch_history
from history.queries import case_event_ids, counts, probe_ids
from history.store import connect
from schemas.cases import CaseEvent, CaseEventType, chained
from schemas.deadletter import DeadLetter
from schemas.probes import ProbeBatch
from schemas.topics import Topics
from sinks.clickhouse import SinkStats
from sinks.service import SinkService
from tests.integration.sinks.conftest import (
    case_event,
    probe,
    produce_batches,
    produce_raw,
    read_topic,
    wait_for,
)
from tests.unit.casefile.builders import SIGNER

pytestmark = pytest.mark.integration


def rows_at_least(probes: int, cases: int = 0) -> Any:
    def check(stats: SinkStats) -> bool:
        return stats.rows.get("probe_results", 0) >= probes and stats.rows.get("case_events", 0) >= cases

    return check


def stored(settings: Settings) -> tuple[dict[str, int], list[str], list[str]]:
    client = connect(settings.store_dsn(), settings.clickhouse_database)
    try:
        return counts(client), probe_ids(client), case_event_ids(client)
    finally:
        client.close()


def test_probe_batches_and_case_events_land_once(
    kafka_bootstrap: str, topics: Topics, sink_settings: Settings
) -> None:
    results = [probe(f"srv-{s}", n) for s in range(20) for n in range(150)]  # 3000 results
    messages = produce_batches(kafka_bootstrap, topics.probe_results, results, per_batch=40)
    events = [
        SIGNER.sign(chained(case_event(f"srv-{s}", CaseEventType.CASE_OPENED, 10), 0, "")) for s in range(5)
    ]
    recovered = case_event("srv-0", CaseEventType.SERVER_RECOVERED, 20)
    events.append(SIGNER.sign(chained(recovered, 1, events[0].hash)))

    def home(event: CaseEvent) -> int:  # where the engine writes it (the sink verifies that)
        return partition_for_case(event.case_id, 4)

    produce_raw(
        kafka_bootstrap,
        topics.cases,
        [(home(e), e.case_id.encode(), e.model_dump_json().encode()) for e in events]
        + [(home(events[0]), events[0].case_id.encode(), events[0].model_dump_json().encode())],  # replayed
    )
    started = time.monotonic()
    service = SinkService(
        sink_settings, until=rows_at_least(len(results), len(events) + 1), http=False, grace_ms=200
    )
    stats = service.run()
    elapsed = time.monotonic() - started
    assert stats.messages == messages + len(events) + 1
    assert stats.dead_letters == 0
    summary, ids, event_ids = stored(sink_settings)
    assert summary["probe_rows"] == len(results)
    assert Counter(ids) == Counter(r.probe_id for r in results)
    assert sorted(event_ids) == sorted(e.event_id for e in events)
    print(f"{len(results)} results in {messages} messages stored in {elapsed:.2f} s")


def test_malformed_messages_are_dead_lettered_and_the_rest_lands(
    kafka_bootstrap: str, topics: Topics, sink_settings: Settings
) -> None:
    good = [probe("srv-a", n) for n in range(10)]
    envelope = json.loads(
        ProbeBatch(batch_id="b:1", worker_id="w", partition=0, results=good[:5]).model_dump_json()
    )
    envelope["results"][2]["latency_ms"] = -5  # one invalid item
    produce_raw(
        kafka_bootstrap,
        topics.probe_results,
        [
            (0, None, json.dumps(envelope).encode()),  # offset 0: 4 good rows, item 2 rejected
            (0, None, b"{not json"),  # offset 1: whole message rejected
            (
                0,
                None,
                ProbeBatch(batch_id="b:2", worker_id="w", partition=0, results=good[5:])
                .model_dump_json()
                .encode(),
            ),  # offset 2: 5 rows
        ],
    )
    event = case_event("srv-a", CaseEventType.CASE_OPENED, 3)
    produce_raw(
        kafka_bootstrap,
        topics.cases,
        [(2, b"k", b'{"event_id": "x"}'), (2, event.case_id.encode(), event.model_dump_json().encode())],
    )
    stats = SinkService(
        sink_settings,
        until=lambda s: rows_at_least(9, 1)(s) and s.dead_letters >= 3,
        http=False,
        grace_ms=200,
    ).run()
    assert stats.dead_letters == 3
    summary, ids, event_ids = stored(sink_settings)
    assert summary["probe_rows"] == 9
    assert sorted(ids) == sorted(r.probe_id for i, r in enumerate(good) if i != 2)
    assert event_ids == [event.event_id]

    letters = {
        r.key.decode(): DeadLetter.model_validate_json(r.value)
        for r in read_topic(kafka_bootstrap, topics.dead_letter, 3)
    }
    assert set(letters) == {
        f"{topics.probe_results}:0:0",
        f"{topics.probe_results}:0:1",
        f"{topics.cases}:2:0",
    }
    item = letters[f"{topics.probe_results}:0:0"]
    assert (item.item, item.consumer) == (2, "sink")
    assert "latency_ms" in item.reason
    assert '"latency_ms":-5' in item.payload.replace(" ", "")
    whole = letters[f"{topics.probe_results}:0:1"]
    assert whole.item is None
    assert "not JSON" in whole.reason
    assert whole.payload == "{not json"
    assert "not a CaseEvent" in letters[f"{topics.cases}:2:0"].reason


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_history_api_serves_probes_and_cases(
    kafka_bootstrap: str,
    topics: Topics,
    sink_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    results = [probe("srv-h", n) for n in range(30)] + [probe("srv-other", n) for n in range(5)]
    produce_batches(kafka_bootstrap, topics.probe_results, results, per_batch=7)
    opened = case_event("srv-h", CaseEventType.CASE_OPENED, 12)
    produce_raw(kafka_bootstrap, topics.cases, [(0, b"c", opened.model_dump_json().encode())])
    service = SinkService(sink_settings, grace_ms=200)
    thread = threading.Thread(target=service.run, name="sink-under-test")
    thread.start()
    try:
        assert service.ready.wait(60)
        base = service.http_url
        assert base is not None
        wait_for(
            lambda: (
                get_json(f"{base}/api/counts")[1].get("probe_rows") == 35
                and get_json(f"{base}/api/counts")[1].get("case_rows") == 1
            ),
            60,
            "all rows stored",
        )
        status, data = get_json(f"{base}/api/history/srv-h?limit=5")
        assert status == 200
        assert [p["probe_id"] for p in data["probes"]] == [r.probe_id for r in reversed(results[25:30])]
        assert [c["event_id"] for c in data["cases"]] == [opened.event_id]
        assert data["cases"][0]["type"] == "case.opened"

        # `fleetwatch history` goes through the sink, since the embedded store is locked to it
        port = int(base.rsplit(":", 1)[1])
        assert fetch_history(sink_settings.model_copy(update={"sink_http_port": port}), "srv-h", 5) == data
        monkeypatch.setenv("FLEETWATCH_SINK_HTTP_PORT", str(port))
        argv = ["history", "srv-h", "--limit", "3", "--data-dir", str(sink_settings.data_dir)]
        assert cli_main(argv) == 0
        out = capsys.readouterr().out
        assert "last 3 probes (newest first)" in out
        assert opened.case_id in out

        status, data = get_json(f"{base}/api/history/nobody")
        assert (status, data["probes"], data["cases"]) == (200, [], [])
        for bad in ("srv-h?limit=abc", "srv-h?limit=0", "srv-h?limit=99999", "bad%20id"):
            status, data = get_json(f"{base}/api/history/{bad}")
            assert status == 400, bad
            assert data["error"]

        status, health = get_json(f"{base}/healthz")
        assert status == 200
        assert health["ingest"]["rows"] == {"probe_results": 35, "case_events": 1}
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        assert 'fleetwatch_sink_rows_inserted_total{table="probe_results"} 35.0' in text
        assert "fleetwatch_sink_insert_seconds_bucket" in text
        assert "fleetwatch_sink_consumer_lag" in text
    finally:
        service.stop_event.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
