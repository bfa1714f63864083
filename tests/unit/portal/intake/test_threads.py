"""The Message-ID -> case map: persistence across restarts, torn lines, the bound."""

from __future__ import annotations

from pathlib import Path

from portal.intake.threads import ThreadRecord, ThreadStore


def test_records_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "intake" / "threads.jsonl"
    store = ThreadStore(path)
    store.add("<m1@x>", "eml-1", "northwind-partners")
    store.add("<ack@y>", "eml-1", "northwind-partners")
    store.add("<m1@x>", "eml-1", "northwind-partners")  # the same again writes nothing
    assert len(path.read_text().splitlines()) == 2
    again = ThreadStore(path)
    assert again.get("<m1@x>") == ThreadRecord("eml-1", "northwind-partners")
    assert again.case("eml-1") == ThreadRecord("eml-1", "northwind-partners")
    assert again.get("<other@x>") is None
    assert again.case("eml-2") is None


def test_a_torn_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "threads.jsonl"
    path.write_text('{"mid": "<a@x>", "case": "eml-1", "partner": null}\n{"mid": "<b@x>", "ca')
    store = ThreadStore(path)
    assert store.get("<a@x>") == ThreadRecord("eml-1", None)
    assert store.get("<b@x>") is None


def test_memory_and_file_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "threads.jsonl"
    store = ThreadStore(path, max_entries=3)
    for i in range(10):
        store.add(f"<m{i}@x>", f"eml-{i}", None)
    assert store.get("<m0@x>") is None
    assert store.get("<m9@x>") is not None
    assert store.case("eml-0") is None
    reloaded = ThreadStore(path, max_entries=3)  # 10 lines > 2 * 3: rewritten with the newest 3
    assert len(path.read_text().splitlines()) == 3
    assert reloaded.get("<m7@x>") is not None
    assert reloaded.get("<m6@x>") is None


def test_memory_only(tmp_path: Path) -> None:
    store = ThreadStore(None)
    store.add("<a@x>", "eml-1", None)
    assert store.get("<a@x>") is not None
    assert list(tmp_path.iterdir()) == []
