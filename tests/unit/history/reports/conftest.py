"""The golden history in a fresh embedded store per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from history.store import connect
from tests.unit.history.reports.golden import load


@pytest.fixture
def golden(tmp_path: Path) -> Iterator[Client]:
    client = connect(f"chdb://{tmp_path / 'clickhouse'}", "fleetwatch")
    try:
        load(client)
        yield client
    finally:
        client.close()
