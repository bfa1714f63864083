"""The portal publishes the public keys that verify case events, to anyone, without signing in."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from casefile.signing import Keyring, parse_keyring
from tests.unit.casefile.builders import SEED_B64, SIGNER
from tests.unit.portal.rig import Recorder, make_app


async def test_audit_keys_are_public_json_with_rotated_keys(tmp_path: Path) -> None:
    old = Keyring.of([SIGNER.public]).to_json()
    old["keys"][0]["valid_until"] = "2026-12-01T00:00:00+00:00"
    listed = tmp_path / "keys.json"
    listed.write_text(json.dumps(old))
    app = make_app(Recorder(), audit_keys_file=str(listed), data_dir=str(tmp_path / "data"))
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/audit/keys")
        assert response.status == 200
        body = await response.json()
    assert body["algorithm"] == "Ed25519"
    ring = parse_keyring(body)
    assert list(ring.keys) == [SIGNER.key_id]
    assert body["keys"][0]["valid_until"] == "2026-12-01T00:00:00+00:00"


async def test_audit_keys_include_the_engines_own_key(tmp_path: Path) -> None:
    app = make_app(Recorder(), audit_signing_key=SEED_B64, data_dir=str(tmp_path))
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/audit/keys")
        body = await response.json()
    assert [k["key_id"] for k in body["keys"]] == [SIGNER.key_id]
    assert "PRIVATE" not in json.dumps(body)


async def test_an_unreadable_key_list_is_503_with_a_message(tmp_path: Path) -> None:
    app = make_app(Recorder(), audit_keys_file=str(tmp_path / "missing.json"), data_dir=str(tmp_path))
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/audit/keys")
        assert response.status == 503
        assert "cannot read the audit key list" in (await response.json())["error"]
