"""The lock files and what installs from them (deptry, run by `make lint`, checks the imports themselves).

requirements/dev.txt (runtime + the dev extra: the venv, CI) and requirements/runtime.txt (the Dockerfile) are
written by `make lock` from pyproject.toml. These tests check, offline, that they agree with each other and
with pyproject.toml, and that make and the Dockerfile install from them; the Makefile's venv rule also checks
(pip dry run against the installed packages) that the dev lock satisfies every requirement's version.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK_DEV = REPO_ROOT / "requirements" / "dev.txt"
LOCK_RUNTIME = REPO_ROOT / "requirements" / "runtime.txt"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    assert match, f"not a requirement: {requirement!r}"
    return normalize(match.group(1))


def read_lock(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """{name: (version, hashes)} of a `uv pip compile --generate-hashes` file."""
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    current = ""
    hashes: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = _PIN.match(line)
        if match:
            current = normalize(match.group(1))
            assert current not in pins, f"{current} pinned twice"
            pins[current] = (match.group(2), frozenset())
            hashes[current] = set()
        elif current and line.startswith(" ") and "--hash=" in line:
            hashes[current].update(_HASH.findall(line))
    return {name: (version, frozenset(hashes[name])) for name, (version, _) in pins.items()}


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return data["project"]


@pytest.fixture(scope="module")
def dev_lock() -> dict[str, tuple[str, frozenset[str]]]:
    return read_lock(LOCK_DEV.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runtime_lock() -> dict[str, tuple[str, frozenset[str]]]:
    return read_lock(LOCK_RUNTIME.read_text(encoding="utf-8"))


def test_read_lock_parses_pins_and_their_hashes() -> None:
    text = (
        "# header\n"
        "Aio_Kafka==0.14.0 \\\n"
        "    --hash=sha256:" + "a" * 64 + " \\\n"
        "    --hash=sha256:" + "b" * 64 + "\n"
        "    # via fleetwatch (pyproject.toml)\n"
        "zipp==4.1.2 \\\n"
        "    --hash=sha256:" + "c" * 64 + "\n"
    )
    assert read_lock(text) == {
        "aio-kafka": ("0.14.0", frozenset({"a" * 64, "b" * 64})),
        "zipp": ("4.1.2", frozenset({"c" * 64})),
    }


def test_locks_pin_every_package_with_hashes(
    dev_lock: dict[str, tuple[str, frozenset[str]]], runtime_lock: dict[str, tuple[str, frozenset[str]]]
) -> None:
    for path, lock in ((LOCK_DEV, dev_lock), (LOCK_RUNTIME, runtime_lock)):
        assert lock, f"{path.name}: no pins"
        unhashed = sorted(name for name, (_, hashes) in lock.items() if not hashes)
        assert not unhashed, f"{path.name}: pins without a hash: {unhashed}"
        header = path.read_text(encoding="utf-8").splitlines()[:3]
        assert any("make lock" in line for line in header), f"{path.name} was not written by `make lock`"


def test_runtime_lock_is_the_dev_locks_runtime_part(
    dev_lock: dict[str, tuple[str, frozenset[str]]], runtime_lock: dict[str, tuple[str, frozenset[str]]]
) -> None:
    """The image runs exactly the versions (and files) the tests ran against."""
    missing = sorted(set(runtime_lock) - set(dev_lock))
    assert not missing, f"pinned in runtime.txt but not in dev.txt: {missing}"
    differ = {
        name: (pin[0], dev_lock[name][0]) for name, pin in runtime_lock.items() if pin != dev_lock[name]
    }
    assert not differ, f"runtime.txt and dev.txt pin these differently (version or hashes): {differ}"


def test_locks_hold_every_declared_dependency(
    project: dict[str, Any],
    dev_lock: dict[str, tuple[str, frozenset[str]]],
    runtime_lock: dict[str, tuple[str, frozenset[str]]],
) -> None:
    runtime = {requirement_name(r) for r in project["dependencies"]}
    dev = {requirement_name(r) for r in project["optional-dependencies"]["dev"]}
    assert not runtime - set(runtime_lock), (
        f"not in runtime.txt (run make lock): {runtime - set(runtime_lock)}"
    )
    assert not (runtime | dev) - set(dev_lock), (
        f"not in dev.txt (run make lock): {(runtime | dev) - set(dev_lock)}"
    )
    # exact pins of pyproject.toml are the locked versions
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        exact = re.match(r"^\s*[A-Za-z0-9._-]+\s*==\s*([^\s,;#]+)\s*$", requirement.split("#")[0])
        if exact:
            name = requirement_name(requirement)
            assert dev_lock[name][0] == exact.group(1), f"{requirement} but dev.txt pins {dev_lock[name][0]}"


def test_dev_tools_and_bench_stay_out_of_the_runtime_lock(
    project: dict[str, Any],
    dev_lock: dict[str, tuple[str, frozenset[str]]],
    runtime_lock: dict[str, tuple[str, frozenset[str]]],
) -> None:
    tools = {"pytest", "ruff", "mypy", "deptry", "uv", "playwright"}
    assert not tools & set(runtime_lock), f"dev tools in the image's lock: {tools & set(runtime_lock)}"
    # quixstreams pins pydantic differently: the bench extra is installed on its own (make bench)
    bench = {requirement_name(r) for r in project["optional-dependencies"]["bench"]}
    assert "quixstreams" in bench
    assert not bench & set(dev_lock), f"bench-only packages in dev.txt: {bench & set(dev_lock)}"


def _makefile_variable(name: str) -> str:
    text = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"^{name}\s*:=\s*(.+)$", text, re.MULTILINE)
    assert match, f"Makefile defines no {name}"
    return match.group(1).strip()


def test_make_and_the_dockerfile_install_from_the_locks() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert _makefile_variable("LOCK_DEV") == "requirements/dev.txt"
    assert _makefile_variable("LOCK_RUNTIME") == "requirements/runtime.txt"
    stamp_rule = re.search(r"^\$\(STAMP\):(.*?)(?:\n\n|\Z)", makefile, re.MULTILINE | re.DOTALL)
    assert stamp_rule, "no $(STAMP) rule"
    rule = stamp_rule.group(0)
    assert "$(LOCK_DEV)" in rule.splitlines()[0], "the venv is not re-installed when the lock changes"
    assert "--require-hashes -r $(LOCK_DEV)" in rule
    assert "--no-deps -e ." in rule
    dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "pip install --require-hashes -r /src/requirements/runtime.txt" in dockerfile
    assert "COPY requirements/runtime.txt " in dockerfile
    assert re.search(r"pip install --no-deps /src\b", dockerfile)


def test_the_paths_check_catches_references_outside_the_repo() -> None:
    """`make paths` (in `make lint`) git-greps every file for OUTSIDE_PATHS, which must not match itself."""
    pattern = re.compile(_makefile_variable("OUTSIDE_PATHS"))  # ERE, and the same in Python
    sibling = "sha" + "red"  # written in pieces, so this file passes the check itself
    for line in (
        f"../{sibling}/data/x.json",
        f"{sibling}/data",
        f'parent / "{sibling}" / "data"',
        "/wo" + "rk/x",
    ):
        assert pattern.search(line), line
    for line in ("tests/data/compose-spec/compose-spec.schema.json", "a shared cache", "/var/lib/fleetwatch"):
        assert not pattern.search(line), line
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert not [line for line in makefile.splitlines() if pattern.search(line)], "the check matches itself"
