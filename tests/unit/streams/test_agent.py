"""The detector agent's wiring without a broker (Faust test context); codecs round-trip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcore.settings import Settings
from schemas.cases import CaseEvent
from schemas.deadletter import DeadLetter
from schemas.probes import ProbeBatch
from streams.app import StreamApp, create_app
from streams.codec import PydanticCodec
from streams.detector import ServerStreak, StreakState
from tests.helpers import result


@pytest.fixture
def stream(tmp_path: Path) -> Iterator[StreamApp]:
    app = create_app(Settings(topic_prefix="unit.", data_dir=tmp_path, stream_web_port=0))
    app.app.finalize()
    app.app.conf.store = "memory://"
    app.app.flow_control.resume()
    return app


def _batch(results: list) -> bytes:
    return ProbeBatch(batch_id="b", worker_id="w", partition=0, results=results).model_dump_json().encode()


async def test_agent_opens_case_writes_table_only_on_change_and_dead_letters(stream: StreamApp) -> None:
    cases: list[CaseEvent] = []
    letters: list[DeadLetter] = []

    async def case(e: CaseEvent) -> None:
        cases.append(e)

    async def dead(d: DeadLetter) -> None:
        letters.append(d)

    stream.outputs.case = case
    stream.outputs.dead_letter = dead
    async with stream.agent.test_context() as agent:
        await agent.put(_batch([result("ok", i, ok=True) for i in range(5)]))
        assert "ok" not in stream.streaks  # healthy: no table write
        await agent.put(_batch([result("down", i, ok=False) for i in range(9)]))
        assert stream.streaks["down"].failures == 9
        await agent.put(b"garbage")
        await agent.put(_batch([result("down", 9, ok=False)]))
        assert stream.streaks["down"].state is StreakState.OPEN
    assert [c.type.value for c in cases] == ["case.opened"]
    assert len(letters) == 1
    assert letters[0].reason.startswith("not JSON")
    assert letters[0].consumer == "stream"


def test_codec_round_trip() -> None:
    codec = PydanticCodec(ServerStreak)
    value = ServerStreak(state=StreakState.FAILING, failures=3)
    assert codec.loads(codec.dumps(value)) == value
