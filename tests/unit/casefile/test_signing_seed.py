"""A base64 seed holding "/" (as `openssl rand -base64 32` and `fleetwatch audit keygen` often print) is a
key, not a file path."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from casefile.signing import Signer, load_keyring, load_signer
from fleetcore.settings import Settings


def test_a_seed_with_a_slash_is_a_key(tmp_path: Path) -> None:
    seed = bytes(range(32))
    while b"/" not in base64.b64encode(seed):
        seed = bytes((b + 1) % 256 for b in seed)
    text = base64.b64encode(seed).decode("ascii")
    assert "/" in text
    settings = Settings(data_dir=tmp_path, audit_signing_key=text)
    expected = Signer(Ed25519PrivateKey.from_private_bytes(seed)).key_id
    assert load_signer(settings).key_id == expected
    assert list(load_keyring(settings).keys) == [expected]
    assert not (tmp_path / "audit").exists(), "no key generated beside the configured one"
