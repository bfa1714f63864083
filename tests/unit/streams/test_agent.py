"""The agents' wiring without a broker (Faust test context): detector → commands, engine → events; codecs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from fleetcore.settings import Settings
from schemas.cases import CaseEvent, CaseEventType, CaseState, Severity, case_event_hash
from schemas.commands import CaseCommand, CommandType
from schemas.deadletter import DeadLetter
from schemas.notifications import Channel, Notification, Role
from schemas.probes import ProbeBatch
from streams.app import StreamApp, create_app
from streams.cases import Case
from streams.codec import PydanticCodec
from streams.detector import ServerStreak, StreakState
from tests.helpers import T0, monitor_command, result


class Sent:
    """Collects what the agents send (instead of a broker)."""

    def __init__(self) -> None:
        self.cases: list[CaseEvent] = []
        self.commands: list[CaseCommand] = []
        self.notifications: list[Notification] = []
        self.letters: list[DeadLetter] = []

    def attach(self, stream: StreamApp) -> None:
        def collect(into: list[Any]) -> Any:
            async def send(value: Any) -> None:
                into.append(value)

            return send

        stream.outputs.case = collect(self.cases)
        stream.outputs.command = collect(self.commands)
        stream.outputs.notification = collect(self.notifications)
        stream.outputs.dead_letter = collect(self.letters)


@pytest.fixture
def stream(tmp_path: Path) -> Iterator[StreamApp]:
    app = create_app(Settings(topic_prefix="unit.", data_dir=tmp_path, stream_web_port=0))
    app.app.finalize()
    app.app.conf.store = "memory://"
    app.app.flow_control.resume()
    return app


def _batch(results: list[Any]) -> bytes:
    return ProbeBatch(batch_id="b", worker_id="w", partition=0, results=results).model_dump_json().encode()


async def test_detector_sends_open_command_writes_only_changes_and_dead_letters(
    stream: StreamApp,
) -> None:
    sent = Sent()
    sent.attach(stream)
    async with stream.agent.test_context() as agent:
        await agent.put(_batch([result("ok", i, ok=True) for i in range(5)]))
        assert "ok" not in stream.streaks  # healthy: no table write
        await agent.put(_batch([result("down", i, ok=False) for i in range(9)]))
        assert stream.streaks["down"].failures == 9
        await agent.put(b"garbage")
        await agent.put(_batch([result("down", 9, ok=False)]))
        assert stream.streaks["down"].state is StreakState.OPEN
    assert [(c.type, c.severity) for c in sent.commands] == [(CommandType.OPEN, Severity.SEV1)]
    assert sent.cases == []  # only the engine writes the case topic
    assert len(sent.letters) == 1
    assert sent.letters[0].reason.startswith("not JSON")
    assert sent.letters[0].consumer == "stream"


async def test_detector_skips_failures_inside_a_maintenance_window(stream: StreamApp) -> None:
    from schemas.maintenance import MaintenanceWindow

    sent = Sent()
    sent.attach(stream)
    stream.extras["maintenance"].upsert(
        MaintenanceWindow(
            window_id="mw-1",
            server_id="down",
            customer_id="acme",
            starts_at=T0,
            ends_at=T0 + timedelta(hours=1),
            created_by="test",
            created_at=T0,
        )
    )
    async with stream.agent.test_context() as agent:
        await agent.put(_batch([result("down", i, ok=False) for i in range(15)]))
    assert sent.commands == []


async def test_engine_opens_case_chains_events_pages_and_counts_tickets(stream: StreamApp) -> None:
    sent = Sent()
    sent.attach(stream)
    command = monitor_command("db-01", CommandType.OPEN, 10)
    async with stream.engine.test_context() as engine:
        await engine.put(command.model_dump_json().encode())
        await engine.put(command.model_dump_json().encode())  # a replay: nothing new
        await engine.put(b'{"not": "a command"}')
    opened = sent.cases[0]
    assert opened.type is CaseEventType.CASE_OPENED
    assert opened.state is CaseState.TRIAGED
    assert opened.ticket is not None
    assert opened.ticket.startswith("FW-")
    assert [e.seq for e in sent.cases] == list(range(len(sent.cases)))
    for before, after in zip(sent.cases, sent.cases[1:], strict=False):
        assert after.prev_hash == before.hash
    assert all(case_event_hash(e) == e.hash for e in sent.cases)
    pages = [n for n in sent.notifications if n.channel is Channel.PAGE]
    assert [n.role for n in pages] == [Role.OPERATIONS_MANAGER]
    case = stream.cases[command.case_id]
    assert isinstance(case, Case)
    assert case.seq == len(sent.cases)
    assert sum(stream.tickets[str(p)] or 0 for p in range(4) if str(p) in stream.tickets) == 1
    assert len(sent.letters) == 1
    assert sent.letters[0].consumer == "engine"


async def test_due_scan_sends_a_tick_only_for_due_cases_of_active_partitions(stream: StreamApp) -> None:
    sent = Sent()
    sent.attach(stream)
    command = monitor_command("db-01", CommandType.OPEN, 0)
    async with stream.engine.test_context() as engine:
        await engine.put(command.model_dump_json().encode())
    from streams.engine import case_partition

    scan = stream.extras["due_scan"]
    mine = case_partition(command.case_id)
    later = T0 + timedelta(hours=3)
    assert await scan(later, {(mine + 1) % 4}) == 0  # someone else's partition
    assert await scan(T0 + timedelta(minutes=5), {mine}) == 0  # nothing due yet
    assert await scan(later, {mine}) == 1
    assert await scan(later, {mine}) == 0  # already sent for this deadline
    tick = sent.commands[-1]
    assert tick.type is CommandType.TICK
    assert tick.case_id == command.case_id


def test_codec_round_trip() -> None:
    codec = PydanticCodec(ServerStreak)
    value = ServerStreak(state=StreakState.FAILING, failures=3)
    assert codec.loads(codec.dumps(value)) == value


async def test_engine_purges_a_closed_case_after_retention(stream: StreamApp) -> None:
    from streams.cases import tick_command

    Sent().attach(stream)
    command = monitor_command("db-01", CommandType.OPEN, 0)
    close = CaseCommand(
        command_id="close-1", case_id=command.case_id, type=CommandType.CLOSE, at=T0, actor="staff:test"
    )
    async with stream.engine.test_context() as engine:
        await engine.put(command.model_dump_json().encode())
        await engine.put(close.model_dump_json().encode())
        closed = stream.cases[command.case_id]
        assert closed.state is CaseState.CLOSED
        tick = tick_command(closed, T0 + timedelta(days=31))
        await engine.put(tick.model_dump_json().encode())
    assert command.case_id not in stream.cases


def test_ticket_counter_inverts_ticket_number() -> None:
    from streams.cases import ticket_number
    from streams.engine import ticket_counter

    for partition in range(4):
        for counter in (0, 1, 7, 250):
            assert ticket_counter(ticket_number(partition, counter, 4), partition, 4) == counter
    assert ticket_counter("FW-100001", 0, 4) is None  # drawn by partition 1
    assert ticket_counter("garbage", 0, 4) is None


async def test_engine_never_reuses_a_ticket_when_its_counter_was_lost(stream: StreamApp) -> None:
    Sent().attach(stream)
    first = monitor_command("db-01", CommandType.OPEN, 0)
    async with stream.engine.test_context() as engine:
        await engine.put(first.model_dump_json().encode())
    ticket = stream.cases[first.case_id].ticket
    # a crash lost the counter's changelog write but not the case row; the worker restarts
    for key in list(stream.tickets):
        stream.tickets.delete(int(key), key)
    stream.extras["ticket_floors"].clear()
    second = monitor_command("db-02", CommandType.OPEN, 0)  # the test context delivers all on partition 0
    async with stream.engine.test_context() as engine:
        await engine.put(second.model_dump_json().encode())
    assert stream.cases[second.case_id].ticket not in (None, ticket)
