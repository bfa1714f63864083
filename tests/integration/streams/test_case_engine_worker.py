"""The stream worker's case engine and maintenance handling against the real broker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from casefile.commands import send_command
from fleetcore.compacted import publish
from schemas.cases import CaseEvent, CaseEventType
from schemas.commands import CaseCommand, CommandType
from schemas.maintenance import MaintenanceWindow
from schemas.topics import Topics
from tests.helpers import T0, TopicReader, result, send_raw, send_results, wait_for
from tests.integration.streams.test_detector_worker import StreamWorker, case_events

pytestmark = pytest.mark.integration


@pytest.fixture
def topics_with_window(kafka_bootstrap: str, topics: Topics) -> Topics:
    """Topics whose maintenance topic already holds a window for srv-maint, T0 .. T0 + 20 min."""
    window = MaintenanceWindow(
        window_id="mw-test",
        server_id="srv-maint",
        customer_id="acme",
        starts_at=T0,
        ends_at=T0 + timedelta(minutes=20),
        reason="firmware upgrade",
        created_by="test",
        created_at=T0,
    )
    publish(kafka_bootstrap, topics.maintenance, window.window_id, window.model_dump_json().encode())
    return topics


@pytest.fixture
def worker(kafka_bootstrap: str, topics_with_window: Topics, tmp_path: Path) -> Iterator[StreamWorker]:
    w = StreamWorker(kafka_bootstrap, topics_with_window, tmp_path)
    w.start()
    yield w
    w.stop()


def test_failures_inside_a_window_open_no_case_and_after_it_do(
    worker: StreamWorker, kafka_bootstrap: str, topics: Topics
) -> None:
    # 15 failures one minute apart inside the window (planned), then 10 after it: the case opens at the
    # 10th unplanned failure, and a control server outside any window opens at its 10th
    planned = [result("srv-maint", n, ok=False) for n in range(15)]
    unplanned = [result("srv-maint", n, ok=False) for n in range(20, 30)]
    control = [result("srv-control", n, ok=False) for n in range(10)]
    send_results(kafka_bootstrap, topics.probe_results, planned + control)
    reader = TopicReader(kafka_bootstrap, topics.cases)

    def opened() -> dict[str, CaseEvent]:
        return {e.server_id or "": e for e in case_events(reader) if e.type is CaseEventType.CASE_OPENED}

    wait_for(lambda: "srv-control" in opened(), 90, f"the control server's case:\n{worker.log_tail()}")
    assert "srv-maint" not in opened()
    send_results(kafka_bootstrap, topics.probe_results, unplanned)
    case = wait_for(lambda: opened().get("srv-maint"), 90, "the case after the window")
    assert case.details["probe_started_at"] == unplanned[9].started_at.isoformat()
    reader.close()


def test_bad_commands_are_rejected_or_dead_lettered_and_the_engine_goes_on(
    worker: StreamWorker, kafka_bootstrap: str, topics: Topics
) -> None:
    send_results(kafka_bootstrap, topics.probe_results, [result("srv-a", n, ok=False) for n in range(10)])
    reader = TopicReader(kafka_bootstrap, topics.cases)
    opened = wait_for(
        lambda: [e for e in case_events(reader) if e.type is CaseEventType.CASE_OPENED], 90, "the case"
    )[0]
    send_raw(kafka_bootstrap, topics.case_commands, b"{not json")
    ghost = CaseCommand(
        command_id="c-ghost", case_id="no-such-case", type=CommandType.START_WORK, at=T0, actor="staff:x"
    )
    send_command(kafka_bootstrap, topics.case_commands, ghost)
    no_message = CaseCommand(
        command_id="c-bad", case_id=opened.case_id, type=CommandType.POST_UPDATE, at=T0, actor="staff:x"
    )
    send_command(kafka_bootstrap, topics.case_commands, no_message)
    ack = CaseCommand(
        command_id="c-ack", case_id=opened.case_id, type=CommandType.START_WORK, at=T0, actor="staff:x"
    )
    send_command(kafka_bootstrap, topics.case_commands, ack)

    def answered() -> list[CaseEvent]:
        mine = [e for e in case_events(reader) if e.command_id in ("c-bad", "c-ack")]
        return mine if {e.command_id for e in mine} == {"c-bad", "c-ack"} else []

    events = wait_for(answered, 90, "the engine's answers")
    rejected = [e for e in events if e.command_id == "c-bad"]
    assert [e.type for e in rejected] == [CaseEventType.COMMAND_REJECTED]
    assert "message" in rejected[0].reason
    assert any(e.type is CaseEventType.WORK_STARTED for e in events if e.command_id == "c-ack")
    dlq = TopicReader(kafka_bootstrap, topics.dead_letter)
    letters = wait_for(lambda: len(dlq.poll()) >= 2 and dlq.messages, 60, "two dead letters")
    reasons = sorted(json.loads(v)["reason"] for _, v in letters if v)
    assert any("invalid case command" in r for r in reasons), reasons
    assert any("no-such-case" in r or "no case" in r for r in reasons), reasons
    assert worker.proc is not None
    assert worker.proc.poll() is None
    reader.close()
    dlq.close()
