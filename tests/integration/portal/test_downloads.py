"""Software downloads against a running portal: catalog pages, verified bytes, ranges, refusals, audit.

The portal serves a copy of the demo releases folder (`examples/releases`) plus one release whose file does
not match its catalog SHA-256 (listed as unavailable, never served).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from kafka import KafkaProducer
from yarl import URL

from portal.releases import load_catalog
from portal.service import Portal
from schemas.portal import PortalAction, PortalAuditEvent
from schemas.topics import Topics
from tests.helpers import wait_for
from tests.integration.portal.client import PortalClient
from tests.integration.portal.conftest import (
    NADIA_TOKEN,
    USERS,
    RunningPortal,
    _PortalThread,
    portal_settings,
)

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "releases"
AGENT = "/downloads/fleetwatch-agent/2.4.1/fleetwatch-agent-2.4.1.tar.gz"
TAMPERED = "/downloads/fleetwatch-agent/2.5.0-beta/fleetwatch-agent-2.5.0-beta.tar.gz"
BEARER = {"Authorization": f"Bearer {NADIA_TOKEN}"}


@pytest.fixture
def releases(tmp_path: Path) -> Path:
    """The demo releases plus a 2.5.0-beta whose bytes differ from what the catalog says."""
    folder = tmp_path / "releases"
    shutil.copytree(EXAMPLES, folder)
    catalog = yaml.safe_load((folder / "catalog.yaml").read_text())
    good = b"the beta as built\n" * 10
    (folder / "fleetwatch-agent-2.5.0-beta.tar.gz").write_bytes(good.replace(b"built", b"BUILT"))
    catalog["releases"].append(
        {
            "product": "fleetwatch-agent",
            "version": "2.5.0-beta",
            "date": "2026-11-01",
            "notes": "beta <script>alert(1)</script>",
            "file": "fleetwatch-agent-2.5.0-beta.tar.gz",
            "sha256": hashlib.sha256(good).hexdigest(),
            "size": len(good),
        }
    )
    (folder / "catalog.yaml").write_text(yaml.safe_dump(catalog, sort_keys=False))
    return folder


@pytest.fixture
def portal(kafka_bootstrap: str, topics: Topics, tmp_path: Path, releases: Path) -> Iterator[RunningPortal]:
    """Like the shared `portal` fixture, with `releases_dir` set to the test's releases folder."""
    settings = portal_settings(kafka_bootstrap, topics, tmp_path / "data", releases_dir=releases)
    service = Portal(settings)
    runner = _PortalThread(service)
    runner.start()
    running = RunningPortal(
        url=service.url,
        settings=service.settings.model_copy(update={"portal_port": service.port}),
        readmodel=service.readmodel,
        topics=topics,
        service=service,
        _producer=KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all"),
    )
    try:
        yield running
    finally:
        running.close()
        runner.stop()


async def _fetch(
    client: PortalClient, path: str | URL, **kwargs: Any
) -> tuple[int, bytes, aiohttp.ClientResponse]:
    url = URL(client.url + path, encoded=True) if isinstance(path, str) else path
    kwargs.setdefault("allow_redirects", False)
    async with client.session.get(url, **kwargs) as response:
        return response.status, await response.read(), response


def _downloads(portal: RunningPortal, username: str) -> list[PortalAuditEvent]:
    return [e for e in portal.audit_events() if e.action is PortalAction.DOWNLOAD and e.username == username]


async def test_partner_downloads_a_release_whose_sha256_matches_the_catalog(
    portal: RunningPortal, releases: Path
) -> None:
    release = load_catalog(releases).find("fleetwatch-agent", "2.4.1", "fleetwatch-agent-2.4.1.tar.gz")
    assert release is not None
    async with PortalClient(portal.url) as client:
        status, _, _ = await client.sign_in("nadia", USERS["nadia"])
        assert status == 302
        status, page, _ = await client.get("/downloads")
        assert status == 200
        assert "Fleetwatch Agent" in page
        assert "2.4.1" in page
        assert f'href="{AGENT}"' in page
        assert release.sha256 in page
        assert "Probes time out after 10 s" in page  # release notes, rendered from Markdown
        assert "<strong>Security and reliability update.</strong>" in page

        status, body, response = await _fetch(client, AGENT)
        assert status == 200
        assert hashlib.sha256(body).hexdigest() == release.sha256
        assert len(body) == release.size
        assert response.headers["Content-Type"] == "application/gzip"
        assert response.headers["Content-Length"] == str(release.size)
        assert (
            response.headers["Content-Disposition"] == 'attachment; filename="fleetwatch-agent-2.4.1.tar.gz"'
        )
        assert response.headers["ETag"] == f'"{release.sha256}"'
        assert response.headers["Accept-Ranges"] == "bytes"
        assert "Content-Encoding" not in response.headers  # the browser keeps the .gz as it is

        status, body, response = await _fetch(client, AGENT, headers={"If-None-Match": f'"{release.sha256}"'})
        assert status == 304
        assert body == b""

    audited = wait_for(lambda: _downloads(portal, "nadia"), 30, "the download's audit event")
    assert len(audited) == 1  # the 304 is no download
    event = audited[0]
    assert event.partner_id == "northwind-partners"
    assert event.details == {
        "product": "fleetwatch-agent",
        "version": "2.4.1",
        "file": "fleetwatch-agent-2.4.1.tar.gz",
        "sha256": release.sha256,
        "bytes": release.size,
        "partial": False,
    }


async def test_range_requests(portal: RunningPortal, releases: Path) -> None:
    data = (releases / "fleetwatch-agent-2.4.1.tar.gz").read_bytes()
    size = len(data)
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    async with PortalClient(portal.url) as client:
        await client.sign_in("tom", USERS["tom"])
        for header, first, last in [
            ("bytes=10-19", 10, 19),
            ("bytes=200-", 200, size - 1),
            ("bytes=-16", size - 16, size - 1),
            (f"bytes=0-{size + 500}", 0, size - 1),
        ]:
            status, body, response = await _fetch(client, AGENT, headers={"Range": header})
            assert status == 206, header
            assert body == data[first : last + 1], header
            assert response.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
            assert response.headers["Content-Length"] == str(last - first + 1)

        for unsatisfiable in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
            status, _, response = await _fetch(client, AGENT, headers={"Range": unsatisfiable})
            assert status == 416, unsatisfiable
            assert response.headers["Content-Range"] == f"bytes */{size}"

        # ignored ranges: several at once, another unit, a stale If-Range: the whole file
        for headers in (
            {"Range": "bytes=0-1,5-6"},
            {"Range": "items=0-1"},
            {"Range": "bytes=0-9", "If-Range": '"an-older-version"'},
        ):
            status, body, _ = await _fetch(client, AGENT, headers=headers)
            assert status == 200, headers
            assert body == data
        status, body, _ = await _fetch(client, AGENT, headers={"Range": "bytes=0-9", "If-Range": etag})
        assert status == 206
        assert body == data[:10]

    ranged = wait_for(
        lambda: [e for e in _downloads(portal, "tom") if e.details.get("range") == f"10-19/{size}"],
        30,
        "the ranged download's audit event",
    )
    assert ranged[0].details["bytes"] == 10
    assert ranged[0].details["partial"] is True


async def test_signed_out_requests_are_refused(portal: RunningPortal) -> None:
    async with PortalClient(portal.url) as client:
        for path in ("/downloads", AGENT, "/downloads/fleetwatch-agent"):
            status, body, response = await _fetch(client, path)
            assert status == 302, path
            assert response.headers["Location"].startswith("/login?next=")
            assert not body.startswith(b"\x1f\x8b")  # no gzip bytes
        for path in ("/api/downloads", "/api" + AGENT):
            status, body, _ = await _fetch(client, path)
            assert status == 401, path
            assert b"error" in body
        status, _, _ = await _fetch(client, "/api" + AGENT, headers={"Authorization": "Bearer fwt_wrong"})
        assert status == 401


async def test_path_traversal_finds_nothing(portal: RunningPortal) -> None:
    async with PortalClient(portal.url) as client:
        await client.sign_in("nadia", USERS["nadia"])
        for path in (
            "/downloads/fleetwatch-agent/2.4.1/catalog.yaml",
            "/downloads/fleetwatch-agent/2.4.1/..%2Fcatalog.yaml",
            "/downloads/fleetwatch-agent/2.4.1/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
            "/downloads/fleetwatch-agent/..%2F2.4.1/fleetwatch-agent-2.4.1.tar.gz",
            "/downloads/..%2Ffleetwatch-agent/2.4.1/fleetwatch-agent-2.4.1.tar.gz",
            "/downloads/fleetwatch-agent/2.4.1/%2Fetc%2Fpasswd",
            "/downloads/console-plugin/1.2.0/fleetwatch-agent-2.4.1.tar.gz",  # a real file, another release
            "/api/downloads/fleetwatch-agent/2.4.1/..%2F..%2Fcatalog.yaml",
        ):
            status, body, _ = await _fetch(client, path)
            assert status == 404, path
            assert b"agent.yaml" not in body
            assert b"root:" not in body
        status, _, _ = await _fetch(client, "/downloads/no-such-product")
        assert status == 404


async def test_tampered_or_changed_file_is_never_served(portal: RunningPortal, releases: Path) -> None:
    async with PortalClient(portal.url) as client:
        await client.sign_in("sam", USERS["sam"])
        status, page, _ = await client.get("/downloads/fleetwatch-agent")
        assert status == 200
        assert "2.5.0-beta" in page
        assert "unavailable: SHA-256 mismatch" in page  # staff see why
        assert "&lt;script&gt;" in page  # release notes: raw HTML is escaped
        assert "<script>alert" not in page
        status, _, _ = await _fetch(client, TAMPERED)
        assert status == 404

        # changed on disk after it was verified: refused too, until the portal checks it again
        target = releases / "fleetwatch-agent-2.4.0.tar.gz"
        stat = target.stat()
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        status, _, _ = await _fetch(client, "/downloads/fleetwatch-agent/2.4.0/fleetwatch-agent-2.4.0.tar.gz")
        assert status == 404

    async with PortalClient(portal.url) as client:
        await client.sign_in("nadia", USERS["nadia"])
        status, page, _ = await client.get("/downloads/fleetwatch-agent")
        assert "2.5.0-beta" in page
        assert "SHA-256 mismatch" not in page  # partners only see that it is unavailable
        assert f'href="{TAMPERED}"' not in page


async def test_json_catalog_and_token_download(portal: RunningPortal) -> None:
    async with PortalClient(portal.url) as client:
        status, body, _ = await _fetch(client, "/api/downloads", headers=BEARER)
        assert status == 200, body
        catalog = json.loads(body)
        products = {p["product"]: p for p in catalog["products"]}
        agent = products["fleetwatch-agent"]
        assert agent["current"] == "2.4.1"
        files = {f["file"]: f for v in agent["versions"] for f in v["files"]}
        beta = files["fleetwatch-agent-2.5.0-beta.tar.gz"]
        assert beta["available"] is False
        assert "url" not in beta
        assert "problem" not in beta  # a partner's token
        current = files["fleetwatch-agent-2.4.1.tar.gz"]
        assert current["url"] == "/api" + AGENT

        status, data, _ = await _fetch(client, current["url"], headers=BEARER)
        assert status == 200
        assert hashlib.sha256(data).hexdigest() == current["sha256"]
        status, body, _ = await _fetch(client, "/api/downloads/console-plugin", headers=BEARER)
        assert status == 200
        assert b"console-plugin-1.2.0-RELEASE-NOTES.txt" in body
        status, _, _ = await _fetch(client, "/api/downloads/nothing", headers=BEARER)
        assert status == 404
    wait_for(lambda: _downloads(portal, "nadia"), 30, "the token download's audit event")
