"""The package floors of docs/architecture.md: no reader imports the Faust package.

The read side (`history`, `casefile`), the sinks, the portal, the probe worker and the ground floor
(`policy`, `schemas`, `fleetcore`) never import `streams` (the Faust app) or `faust`: what they share with the
case engine (the SLA plan book, maintenance windows and their feed) lives in `policy`. Checked twice: over
the source (every import statement, also the ones inside functions) and by importing every module of those
packages in a fresh interpreter and looking at what got loaded.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

READERS = ("history", "sinks", "casefile", "portal", "probes")
GROUND = ("policy", "schemas", "fleetcore")
FORBIDDEN = ("streams", "faust")
"""Top-level packages no reader and nothing on the ground floor may import."""

PURE_POLICY = ("policy/sla.py", "policy/maintenance.py")
IO_PACKAGES = ("kafka", "aiokafka", "faust", "aiohttp", "aiosmtplib", "chdb", "clickhouse_connect")
"""What a pure policy module never imports."""


def imported_packages(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every absolute import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def offences(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for package in packages:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            for line, name in imported_packages(path):
                if name in forbidden:
                    found.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {name}")
    return found


@pytest.mark.parametrize("package", READERS + GROUND)
def test_no_reader_imports_the_faust_package(package: str) -> None:
    assert (REPO_ROOT / package / "__init__.py").is_file()
    assert offences((package,), FORBIDDEN) == []


def test_pure_policy_modules_import_no_io() -> None:
    found = []
    for relative in PURE_POLICY:
        path = REPO_ROOT / relative
        assert path.is_file(), relative
        found += [
            f"{relative}:{line} imports {name}"
            for line, name in imported_packages(path)
            if name in IO_PACKAGES
        ]
    assert found == []


_PROBE = """
import importlib, pkgutil, sys
for package in sys.argv[1:]:
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        importlib.import_module(info.name)
loaded = sorted(n for n in sys.modules if n.split(".")[0] in {"streams", "faust"})
print(" ".join(loaded))
"""


def test_importing_every_reader_module_loads_no_faust() -> None:
    packages = ("history", "sinks", "casefile", "portal", "policy")
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *packages],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []
