"""The sink with a real broker and embedded store: maintenance windows reach the maintenance_windows table
as they arrive (cancellations and removals too), the rollups agree with the stored probes, and case_state
follows the case events."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from casefile.reader import partition_for_case
from fleetcore.compacted import publish
from fleetcore.settings import Settings
from history.store import connect
from schemas.cases import CaseEventType, chained
from schemas.maintenance import MaintenanceWindow
from schemas.topics import Topics
from sinks.service import SinkService
from tests.helpers import T0, case_event, result, send_results, wait_for
from tests.integration.sinks.conftest import produce_raw
from tests.unit.casefile.builders import SIGNER

pytestmark = pytest.mark.integration

MIN = timedelta(minutes=1)


def window(window_id: str, start: int, end: int, **extra: Any) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate(
        {
            "window_id": window_id,
            "customer_id": "acme",
            "starts_at": T0 + start * MIN,
            "ends_at": T0 + end * MIN,
            "created_by": "ops",
            "created_at": T0 - 60 * MIN,
            **extra,
        }
    )


def put(bootstrap: str, topics: Topics, w: MaintenanceWindow) -> None:
    publish(bootstrap, topics.maintenance, w.window_id, w.model_dump_json().encode())


def query(settings: Settings, sql: str) -> list[Any]:
    client = connect(settings.store_dsn(), settings.clickhouse_database)
    try:
        return list(client.query(sql).result_rows)
    finally:
        client.close()


def windows(settings: Settings) -> dict[str, tuple[Any, ...]]:
    rows = query(
        settings,
        "SELECT window_id, server_id, cancelled_at, cancelled_by FROM maintenance_windows FINAL",
    )
    return {str(r[0]): tuple(r[1:]) for r in rows}


def test_windows_rollups_and_case_state_follow_the_topics(
    kafka_bootstrap: str, topics: Topics, sink_settings: Settings
) -> None:
    put(kafka_bootstrap, topics, window("mw-1", 10, 20, server_id="srv-m"))
    put(kafka_bootstrap, topics, window("mw-2", 0, 90))
    results = [result("srv-m", n, n % 4 != 0) for n in range(0, 60)]
    results += [result("srv-n", n, n % 5 != 0) for n in range(0, 60)]
    send_results(kafka_bootstrap, topics.probe_results, results)
    opened = SIGNER.sign(chained(case_event("srv-m", CaseEventType.CASE_OPENED, 1), 0, ""))
    home = partition_for_case(opened.case_id, 4)  # case_state counts verified events only
    produce_raw(
        kafka_bootstrap, topics.cases, [(home, opened.case_id.encode(), opened.model_dump_json().encode())]
    )
    service = SinkService(sink_settings, grace_ms=200, http=False)
    thread = threading.Thread(target=service.run, name="sink-under-test")
    thread.start()
    try:
        assert service.ready.wait(60)
        wait_for(lambda: set(windows(sink_settings)) == {"mw-1", "mw-2"}, 30, "the windows written")
        # a cancellation and a removal while the sink runs
        put(
            kafka_bootstrap,
            topics,
            window("mw-1", 10, 20, server_id="srv-m", cancelled_at=T0, cancelled_by="bob"),
        )
        publish(kafka_bootstrap, topics.maintenance, "mw-2", None)
        wait_for(lambda: set(windows(sink_settings)) == {"mw-1"}, 30, "the removed window hidden")
        wait_for(lambda: windows(sink_settings)["mw-1"][2] == "bob", 30, "the cancellation written")
        wait_for(
            lambda: query(sink_settings, "SELECT count() FROM probe_results")[0][0] == len(results),
            60,
            "the probes stored",
        )
        wait_for(lambda: query(sink_settings, "SELECT count() FROM case_state")[0][0] == 1, 60, "the case")
    finally:
        service.stop_event.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert windows(sink_settings)["mw-1"][0] == "srv-m"

    direct = query(
        sink_settings,
        "SELECT server_id, toStartOfHour(started_at) AS h, count(), countIf(NOT ok),"
        " countIf(maintenance_id IS NOT NULL), countIf(NOT ok AND maintenance_id IS NOT NULL)"
        " FROM probe_results GROUP BY server_id, h ORDER BY server_id, h",
    )
    rolled = query(
        sink_settings,
        "SELECT server_id, bucket, sum(probes), sum(failures), sum(planned), sum(planned_failures)"
        " FROM probe_hour GROUP BY server_id, bucket ORDER BY server_id, bucket",
    )
    assert rolled == direct
    assert sum(r[4] for r in rolled) > 0  # some probes were planned (the windows were in force)
    assert query(sink_settings, "SELECT case_id, state FROM case_state FINAL") == [(opened.case_id, "new")]
