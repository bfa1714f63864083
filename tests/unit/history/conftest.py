"""An embedded store in a temp directory per test (chdb: one data path per process, so clients are closed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from history.store import connect


@pytest.fixture
def store_dsn(tmp_path: Path) -> str:
    return f"chdb://{tmp_path / 'clickhouse'}"


@pytest.fixture
def store(store_dsn: str) -> Iterator[Client]:
    client = connect(store_dsn, "fleetwatch")
    try:
        yield client
    finally:
        client.close()
