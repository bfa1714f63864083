"""`fleetwatch portal` as a process: serves /healthz once the read model caught up, the API answers a
token, the portal key is kept in the data dir, SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from schemas.topics import Topics
from tests.helpers import fleetwatch_env, spawn, stop, wait_for
from tests.integration.portal.conftest import NADIA_TOKEN, PARTNERS

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def test_fleetwatch_portal_serves_and_stops(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    port = _free_port()
    env = fleetwatch_env(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topics.prefix,
        data_dir=tmp_path / "data",
        partners_file=PARTNERS,
        portal_port=port,
        clock_scale=1,
    )
    env.pop("FLEETWATCH_PORTAL_SECRET", None)
    proc = spawn(["portal"], env, tmp_path / "portal.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get(url + "/healthz")[0] == 200, 60, "the portal to be healthy")
        status, body = _get(url + "/api/cases", {"Authorization": f"Bearer {NADIA_TOKEN}"})
        assert status == 200
        assert json.loads(body) == {"cases": []}
        assert _get(url + "/api/cases")[0] == 401
        assert (tmp_path / "data" / "portal-secret").stat().st_mode & 0o777 == 0o600
    finally:
        stop(proc)
    log = (tmp_path / "portal.log").read_text()
    assert proc.returncode == 0, log
    assert "Traceback" not in log, log
