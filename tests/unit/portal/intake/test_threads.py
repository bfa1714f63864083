"""The (partner, Message-ID) -> case map: persistence across restarts, torn lines, the bound, and that one
partner's Message-IDs are never another's."""

from __future__ import annotations

import json
from pathlib import Path

from portal.intake.threads import UNAUTHENTICATED, ThreadRecord, ThreadStore

NW = "northwind-partners"
TELCO = "telco-isp"


def test_records_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "intake" / "threads.jsonl"
    store = ThreadStore(path)
    store.add(NW, "<m1@x>", "eml-1", NW)
    store.add(NW, "<ack@y>", "eml-1", NW)
    store.add(NW, "<m1@x>", "eml-1", NW)  # the same again writes nothing
    assert len(path.read_text().splitlines()) == 2
    again = ThreadStore(path)
    assert again.get(NW, "<m1@x>") == ThreadRecord("eml-1", NW)
    assert again.case("eml-1") == ThreadRecord("eml-1", NW)
    assert again.get(NW, "<other@x>") is None
    assert again.case("eml-2") is None


def test_message_ids_are_keyed_by_partner(tmp_path: Path) -> None:
    path = tmp_path / "threads.jsonl"
    store = ThreadStore(path)
    store.add(NW, "<m1@northwind.example>", "eml-nw", NW)
    assert store.get(TELCO, "<m1@northwind.example>") is None  # Telco reusing it is not a redelivery
    store.add(TELCO, "<m1@northwind.example>", "eml-telco", TELCO)  # nor does it take the thread over
    store.add(UNAUTHENTICATED, "<m1@northwind.example>", "eml-q", None)
    for reader in (store, ThreadStore(path)):
        assert reader.get(NW, "<m1@northwind.example>") == ThreadRecord("eml-nw", NW)
        assert reader.get(TELCO, "<m1@northwind.example>") == ThreadRecord("eml-telco", TELCO)
        assert reader.get(UNAUTHENTICATED, "<m1@northwind.example>") == ThreadRecord("eml-q", None)
        assert reader.get(None, "<m1@northwind.example>") is None


def test_lines_written_before_the_partner_key_load_under_their_partner(tmp_path: Path) -> None:
    path = tmp_path / "threads.jsonl"
    path.write_text(
        json.dumps({"mid": "<old@x>", "case": "eml-1", "partner": NW})
        + "\n"
        + json.dumps({"mid": "<none@x>", "case": "eml-2", "partner": None})
        + "\n"
    )
    store = ThreadStore(path)
    assert store.get(NW, "<old@x>") == ThreadRecord("eml-1", NW)
    assert store.get(TELCO, "<old@x>") is None
    assert store.get(None, "<none@x>") == ThreadRecord("eml-2", None)


def test_a_torn_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "threads.jsonl"
    path.write_text('{"mid": "<a@x>", "case": "eml-1", "partner": null}\n{"mid": "<b@x>", "ca')
    store = ThreadStore(path)
    assert store.get(None, "<a@x>") == ThreadRecord("eml-1", None)
    assert store.get(None, "<b@x>") is None


def test_memory_and_file_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "threads.jsonl"
    store = ThreadStore(path, max_entries=3)
    for i in range(10):
        store.add(None, f"<m{i}@x>", f"eml-{i}", None)
    assert store.get(None, "<m0@x>") is None
    assert store.get(None, "<m9@x>") is not None
    assert store.case("eml-0") is None
    reloaded = ThreadStore(path, max_entries=3)  # 10 lines > 2 * 3: rewritten with the newest 3
    assert len(path.read_text().splitlines()) == 3
    assert reloaded.get(None, "<m7@x>") is not None
    assert reloaded.get(None, "<m6@x>") is None


def test_memory_only(tmp_path: Path) -> None:
    store = ThreadStore(None)
    store.add(None, "<a@x>", "eml-1", None)
    assert store.get(None, "<a@x>") is not None
    assert list(tmp_path.iterdir()) == []
