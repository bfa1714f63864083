"""Contract test of `streams.tables`: the adapter against a real Faust table (memory store, no broker).

It pins what the adapter assumes of Faust's private parts: writes land in the local store and queue a
changelog record to the given partition with the table's codec, a delete queues a tombstone, the changelog
topic decodes rows as the model (so a restore gives models, not dicts), and active partitions come from the
assignor. A Faust upgrade that changes any of it fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
import pytest
from faust.serializers import codecs
from faust.types import Message

from streams import codec
from streams.detector import ServerStreak, StreakState
from streams.tables import TableStore, new_table


@pytest.fixture
def app(tmp_path: Path) -> faust.App:
    codec.register_codecs()
    app = faust.App(
        "contract",
        broker="kafka://127.0.0.1:1",
        store="memory://",
        datadir=str(tmp_path),
        key_serializer="raw",
    )
    return app


class Recorded:
    """The changelog records a table queued (send_soon still runs: Faust buffers them for its producer)."""

    def __init__(self, table: Any) -> None:
        self.sent: list[dict[str, Any]] = []
        topic = table.changelog_topic
        original = topic.send_soon

        def send_soon(**kwargs: Any) -> Any:
            self.sent.append(kwargs)
            return original(**kwargs)

        topic.send_soon = send_soon


def _message(table: Any, sent: dict[str, Any], offset: int) -> Message:
    """The changelog message a producer writes for one queued record."""
    value = sent["value"]
    data = None if value is None else codecs.dumps(sent["value_serializer"], value)
    key = codecs.dumps(sent["key_serializer"], sent["key"])
    return Message(
        table.changelog_topic.get_topic_name(), sent["partition"], offset, 0.0, 0, [], key, data, None
    )


async def test_writes_reads_changelog_and_restore_of_a_model_table(app: faust.App) -> None:
    table = new_table(app, "streaks", 4, codec.SERVER_STREAK)
    app.finalize()
    assert table.changelog_topic.get_topic_name() == "contract-streaks-changelog"
    assert table.changelog_topic.partitions == 4
    store: TableStore[ServerStreak] = TableStore(table)
    recorded = Recorded(table)
    failing = ServerStreak(state=StreakState.FAILING, failures=3)

    assert store.get("srv-1") is None
    with pytest.raises(KeyError):
        store["srv-1"]
    assert "srv-1" not in store
    store.put(2, "srv-1", failing)
    store.put(1, "srv-2", ServerStreak())
    assert store.get("srv-1") == failing
    assert store["srv-1"] == failing
    assert "srv-1" in store
    assert len(store) == 2
    assert sorted(store) == ["srv-1", "srv-2"]
    assert dict(store.items()) == {"srv-1": failing, "srv-2": ServerStreak()}
    store.delete(1, "srv-2")
    store.delete(1, "never-there")  # a tombstone all the same, no error
    assert store.get("srv-2") is None
    assert store.values() == [failing]

    put, _, tombstone, _ = recorded.sent
    assert (put["partition"], put["key"], put["value"]) == (2, "srv-1", failing)
    assert put["value_serializer"] == codec.SERVER_STREAK  # the model's codec, not Faust's default json
    assert (tombstone["partition"], tombstone["key"], tombstone["value"]) == (1, "srv-2", None)
    assert tombstone["value_serializer"] == "raw"

    # a restarted worker restores the rows from the changelog: they come back as models, the tombstone wins
    again = faust.App("contract", store="memory://", key_serializer="raw")
    fresh = new_table(again, "streaks", 4, codec.SERVER_STREAK)
    again.finalize()
    messages = [_message(table, sent, offset) for offset, sent in enumerate(recorded.sent)]
    fresh.apply_changelog_batch([await fresh.changelog_topic.decode(m, propagate=True) for m in messages])
    restored: TableStore[ServerStreak] = TableStore(fresh)
    assert restored.get("srv-1") == failing
    assert isinstance(restored.get("srv-1"), ServerStreak)
    assert "srv-2" not in restored


async def test_a_table_without_codec_keeps_plain_json_values(app: faust.App) -> None:
    table = new_table(app, "tickets", 4, None)
    app.finalize()
    store: TableStore[int] = TableStore(table)
    recorded = Recorded(table)
    store.put(3, "3", 7)
    assert store.get("3") == 7
    assert recorded.sent[0]["value_serializer"] == table.value_serializer
    event = await table.changelog_topic.decode(_message(table, recorded.sent[0], 0))
    assert event.value == 7
