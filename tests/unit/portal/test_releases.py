"""The release catalog: parsing, file checks (SHA-256, size), ordering, and the shipped demo catalog."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from portal.releases import (
    ReleaseCatalogError,
    file_digest,
    load_catalog,
    parse_catalog,
    version_key,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "releases"


def _write(folder: Path, files: dict[str, bytes], releases: list[dict[str, Any]], **extra: Any) -> Path:
    for name, data in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (folder / "catalog.yaml").write_text(yaml.safe_dump({"releases": releases, **extra}))
    return folder


def _entry(name: str, data: bytes, version: str = "1.0.0", **fields: Any) -> dict[str, Any]:
    return {
        "product": "agent",
        "version": version,
        "date": "2026-10-01",
        "file": name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        **fields,
    }


def test_matching_file_is_available(tmp_path: Path) -> None:
    data = b"agent build 1.0.0\n" * 100
    catalog = load_catalog(
        _write(tmp_path, {"agent-1.0.0.tar.gz": data}, [_entry("agent-1.0.0.tar.gz", data)])
    )
    release = catalog.find("agent", "1.0.0", "agent-1.0.0.tar.gz")
    assert release is not None
    assert release.available
    assert release.path == (tmp_path / "agent-1.0.0.tar.gz").resolve()
    assert release.date == date(2026, 10, 1)
    assert catalog.products["agent"].current == "1.0.0"


def test_sha_mismatch_marks_release_unavailable(tmp_path: Path) -> None:
    data = b"the real bytes"
    entry = _entry("agent.tar.gz", data)
    (tmp_path / "agent.tar.gz").write_bytes(b"the real byteS")  # same size, other content
    _write(tmp_path, {}, [entry])
    release = load_catalog(tmp_path).find("agent", "1.0.0", "agent.tar.gz")
    assert release is not None
    assert not release.available
    assert release.problem is not None
    assert "SHA-256 mismatch" in release.problem
    assert load_catalog(tmp_path).products["agent"].current is None


def test_size_mismatch_and_missing_file_are_unavailable(tmp_path: Path) -> None:
    data = b"12345"
    _write(
        tmp_path,
        {"short.bin": data},
        [
            {**_entry("short.bin", data), "size": 6},
            _entry("missing.bin", b"never written", version="0.9"),
        ],
    )
    catalog = load_catalog(tmp_path)
    short = catalog.find("agent", "1.0.0", "short.bin")
    missing = catalog.find("agent", "0.9", "missing.bin")
    assert short is not None
    assert short.problem is not None
    assert "size mismatch" in short.problem
    assert missing is not None
    assert missing.problem == "file missing"


def test_current_is_newest_available_version(tmp_path: Path) -> None:
    old, new, broken = b"old", b"new", b"broken"
    _write(
        tmp_path,
        {"a-2.9.tgz": old, "a-2.10.tgz": new, "a-3.0.tgz": b"tampered"},
        [
            _entry("a-2.9.tgz", old, version="2.9", date="2026-09-01"),
            _entry("a-2.10.tgz", new, version="2.10", date="2026-09-01"),
            _entry("a-3.0.tgz", broken, version="3.0", date="2026-10-01"),
        ],
    )
    product = load_catalog(tmp_path).products["agent"]
    assert [version for version, _ in product.versions()] == ["3.0", "2.10", "2.9"]
    assert product.current == "2.10"


def test_version_key_orders_numbers_numerically() -> None:
    assert version_key("2.10.0") > version_key("2.9.1")
    assert version_key("1.0.0") > version_key("1.0")
    assert sorted(["1.2", "1.10", "1.9"], key=version_key) == ["1.2", "1.9", "1.10"]


def test_notes_file_and_subfolder_path(tmp_path: Path) -> None:
    data = b"zip bytes"
    _write(
        tmp_path,
        {"dist/agent/agent.zip": data, "notes/1.0.md": b"* first release\n"},
        [_entry("agent.zip", data, path="dist/agent/agent.zip", notes_file="notes/1.0.md")],
    )
    release = load_catalog(tmp_path).find("agent", "1.0.0", "agent.zip")
    assert release is not None
    assert release.available
    assert release.notes == "* first release\n"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ([1, 2], "must be a mapping"),
        ({"releases": [{"product": "agent"}]}, "releases.0.version"),
        ({"releases": [{**_entry("a.bin", b"x"), "sha256": "abc"}]}, "64 hex digits"),
        ({"releases": [{**_entry("a.bin", b"x"), "size": -1}]}, "releases.0.size"),
        ({"releases": [_entry("../etc/passwd", b"x")]}, "releases.0.file"),
        ({"releases": [_entry(".hidden", b"x")]}, "releases.0.file"),
        ({"releases": [{**_entry("a.bin", b"x"), "colour": "red"}]}, "colour"),
        ({"releases": [_entry("a.bin", b"x"), _entry("a.bin", b"x")]}, "twice"),
        ({"releases": [{**_entry("a.bin", b"x"), "notes": "n", "notes_file": "n.md"}]}, "not both"),
        ({"releases": [{**_entry("a.bin", b"x"), "product": "Bad Product"}]}, "releases.0.product"),
    ],
)
def test_bad_catalog_is_a_clear_error(data: Any, fragment: str) -> None:
    with pytest.raises(ReleaseCatalogError, match=fragment):
        parse_catalog(data)


@pytest.mark.parametrize("path", ["../outside.bin", "/etc/passwd", "a/../../outside.bin"])
def test_paths_outside_the_folder_are_refused(tmp_path: Path, path: str) -> None:
    folder = tmp_path / "releases"
    folder.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"x")
    _write(folder, {}, [_entry("outside.bin", b"x", path=path)])
    with pytest.raises(ReleaseCatalogError, match=r"releases\.0\.path"):
        load_catalog(folder)


def test_unreadable_catalog_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReleaseCatalogError, match="cannot read the release catalog"):
        load_catalog(tmp_path)
    (tmp_path / "catalog.yaml").write_text("releases: [unclosed\n")
    with pytest.raises(ReleaseCatalogError, match="cannot read the release catalog"):
        load_catalog(tmp_path)


def test_no_folder_is_an_empty_catalog() -> None:
    assert load_catalog(None).products == {}


def test_demo_catalog_is_complete_and_verified() -> None:
    catalog = load_catalog(EXAMPLES)
    assert set(catalog.products) == {"fleetwatch-agent", "console-plugin"}
    for product in catalog.products.values():
        assert product.current is not None
        for release in product.releases:
            assert release.available, (release.file, release.problem)
            assert file_digest(release.path) == (release.sha256, release.size)
    assert catalog.products["fleetwatch-agent"].current == "2.4.1"
