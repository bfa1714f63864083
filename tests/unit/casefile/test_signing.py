"""Signed chains: forging an event needs the engine's key; rotation keeps old events verifiable."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from casefile.audit import ChainStatus, Located, verify_chain, verify_located
from casefile.signing import (
    Keyring,
    PublicKey,
    Signer,
    SigningKeyError,
    load_keyring,
    load_signer,
    parse_keyring,
    signature_problem,
)
from fleetcore.settings import Settings
from schemas.cases import CaseEvent, case_event_hash, chained
from tests.helpers import T0
from tests.unit.casefile.builders import KEYS, SEED_B64, SIGNER, E, S, chain, event, history


def test_signed_chain_verifies_and_each_event_carries_key_id_and_sig() -> None:
    events = history()
    assert all(e.key_id == SIGNER.key_id and e.sig for e in events)
    assert len(SIGNER.key_id) == 16
    report = verify_chain(events, keys=KEYS)
    assert report.status is ChainStatus.VERIFIED
    assert report.unsigned == 0


def test_appended_rehashed_event_without_the_key_fails() -> None:
    """A correct prev_hash and a recomputed hash used to pass: without the engine's key it fails now."""
    events = history()
    appended = chained(event(E.REOPENED, 200, S.WORKING, reason="reopened by nobody"), 9, events[-1].hash)
    assert appended.hash == case_event_hash(appended)
    report = verify_chain([*events, appended], keys=KEYS)
    assert report.status is ChainStatus.BROKEN
    assert any("seq 9" in p and "unsigned, but the chain is signed from seq 0" in p for p in report.problems)

    mallory = Signer(Ed25519PrivateKey.from_private_bytes(b"\x07" * 32))
    report = verify_chain([*events, mallory.sign(appended)], keys=KEYS)
    assert any(f"signed with key {mallory.key_id}, which is not a listed" in p for p in report.problems)

    wrong = appended.model_copy(update={"key_id": SIGNER.key_id, "sig": mallory.sign(appended).sig})
    report = verify_chain([*events, wrong], keys=KEYS)
    assert any("signature does not verify" in p for p in report.problems)


def test_stripped_signature_on_a_copy_fails() -> None:
    events = history()
    stripped = events[3].model_copy(update={"key_id": "", "sig": ""})
    report = verify_chain([*events, stripped], keys=KEYS)
    assert not report.ok
    assert any("seq 3" in p and "unsigned" in p for p in report.problems)


def test_unsigned_legacy_chain_is_unsigned_not_verified() -> None:
    legacy = history(signer=None)
    report = verify_chain(legacy, keys=KEYS)
    assert report.ok
    assert report.status is ChainStatus.UNSIGNED
    assert report.unsigned == 9
    assert "UNSIGNED" in report.render()
    # a chain signed from the upgrade on: the unsigned prefix is legacy, the rest must be signed
    mixed = legacy[:4] + [SIGNER.sign(e) for e in legacy[4:]]
    report = verify_chain(mixed, keys=KEYS)
    assert report.ok
    assert report.status is ChainStatus.UNSIGNED
    assert report.unsigned == 4


def test_misplaced_copy_fails_even_when_identical() -> None:
    events = history()
    items = [Located(e, 2, i, True) for i, e in enumerate(events)]
    assert verify_located(items, "stf-case1", KEYS).verified
    copy = Located(events[4], 0, 17, False)
    report = verify_located([*items, copy], "stf-case1", KEYS)
    assert report.status is ChainStatus.BROKEN
    assert any("found in partition 0 at offset 17" in p for p in report.problems)
    assert events[4].hash in report.flagged


def test_key_rotation_old_events_verify_while_the_old_key_is_listed() -> None:
    rotated_at = T0 + timedelta(minutes=45)
    new = Signer(Ed25519PrivateKey.from_private_bytes(b"\x09" * 32))
    unsigned = history(signer=None)
    events = [(SIGNER if e.at < rotated_at else new).sign(e) for e in unsigned]
    assert {e.key_id for e in events} == {SIGNER.key_id, new.key_id}
    ring = Keyring.of(
        [PublicKey(SIGNER.public.public, None, rotated_at), PublicKey(new.public.public, rotated_at)]
    )
    assert verify_chain(events, keys=ring).verified
    assert not verify_chain(events, keys=Keyring.of([new.public])).ok  # old key no longer listed
    # the old key cannot sign after its validity ended (e.g. it leaked at the rotation)
    late = SIGNER.sign(unsigned[-1])
    assert signature_problem(late, ring) == f"signed with key {SIGNER.key_id} outside that key's validity"
    # the published JSON round-trips
    assert parse_keyring(json.loads(json.dumps(ring.to_json()))) == ring


def test_replayed_sign_with_another_key_is_the_same_event() -> None:
    """A replay after a crash and a key rotation re-signs the same hash: not two events at one seq."""
    events = history()
    other = Signer(Ed25519PrivateKey.from_private_bytes(b"\x05" * 32))
    resigned = other.sign(events[5])
    report = verify_chain([*events, resigned], keys=KEYS.with_key(other.public))
    assert report.verified, report.problems


def test_legacy_event_hash_is_pinned() -> None:
    """The hash of an event written before signing (no key_id/sig on the wire) never changes: a field added
    to CaseEvent must not change the hashes of events already on the topic."""
    wire = (
        '{"event_id":"evt-1","case_id":"stf-x","type":"case.opened","severity":2,"source":"staff",'
        '"server_id":null,"customer_id":"acme","at":"2026-01-05T10:00:00Z","actor":"staff:alice",'
        '"details":{},"state":"triaged","ticket":"FW-100003","owner":null,"partner_id":null,"reason":"",'
        '"command_id":null,"visibility":"customer","seq":0,"prev_hash":"","hash":""}'
    )
    legacy = CaseEvent.model_validate_json(wire)
    assert case_event_hash(legacy) == "7e39e287bfd26be58788c1af1966a625cd7f28422c4f32eda5caa55168849445"


def test_settings_key_wins_generated_key_is_made_once(tmp_path: Path) -> None:
    base = Settings(data_dir=tmp_path / "data")
    generated = load_signer(base)
    assert load_signer(base).key_id == generated.key_id  # read back, not generated again
    assert (tmp_path / "data" / "audit" / "case-signing-key.pem").stat().st_mode & 0o077 == 0
    assert generated.public in load_keyring(base).keys.values()

    configured = Settings(data_dir=tmp_path / "data", audit_signing_key=SEED_B64)
    assert load_signer(configured).key_id == SIGNER.key_id
    pem = tmp_path / "engine.pem"
    pem.write_bytes(SIGNER.pem())
    from_file = Settings(data_dir=tmp_path / "data", audit_signing_key=str(pem))
    assert load_signer(from_file).key_id == SIGNER.key_id
    inline = Settings(data_dir=tmp_path / "data", audit_signing_key=SIGNER.pem().decode())
    assert load_signer(inline).key_id == SIGNER.key_id

    listed = tmp_path / "keys.json"
    old = Signer(Ed25519PrivateKey.from_private_bytes(b"\x03" * 32))
    listed.write_text(json.dumps(Keyring.of([old.public]).to_json()))
    ring = load_keyring(configured.model_copy(update={"audit_keys_file": listed}))
    assert set(ring.keys) == {old.key_id, SIGNER.key_id}


@pytest.mark.parametrize(
    ("value", "why"),
    [("not a key", "neither a PEM"), ("AAAA", "32 bytes"), ("/nonexistent/key.pem", "cannot read")],
)
def test_bad_signing_key_is_a_clear_error(tmp_path: Path, value: str, why: str) -> None:
    settings = Settings(data_dir=tmp_path, audit_signing_key=value)
    with pytest.raises(SigningKeyError, match=why):
        load_signer(settings)


def test_bad_key_list_is_a_clear_error() -> None:
    with pytest.raises(SigningKeyError, match="needs a public_key"):
        parse_keyring({"keys": [{"key_id": "x"}]})
    with pytest.raises(SigningKeyError, match="does not match"):
        parse_keyring({"keys": [{**SIGNER.public.to_json(), "key_id": "0" * 16}]})


def test_chain_helper_signs_with_the_given_signer() -> None:
    events = chain([event(E.CASE_OPENED, 0, S.TRIAGED)], signer=None)
    assert events[0].sig == ""
