"""Ed25519 signatures of case events: the case engine signs, every reader checks (one verdict everywhere).

The case engine signs each event's chain hash with its Ed25519 key; the engine, `fleetwatch audit verify`,
`fleetwatch case show`, the sink and the portal's published key list all use this module.

* key id: the first 16 hex digits of sha256 over the 32 raw bytes of the public key.
* `sig`: standard base64 (padded) of the Ed25519 signature over the ASCII bytes of the event's `hash` (the 64
  lower-case hex digits as they appear in the JSON). The signature fields `key_id` and `sig` are outside the
  hash (`schemas.cases.UNHASHED`).
* A key list (`Keyring`) holds the public keys that verify events, each with an optional validity
  (`valid_from` inclusive, `valid_until` exclusive, compared with the event's `at`): after a rotation the old
  public key stays listed, valid until the rotation, and the events it signed keep verifying.
* The key list's JSON (the `audit_keys_file` setting, the portal's GET /audit/keys, `fleetwatch audit keys`)::

    {"algorithm": "Ed25519", "signed": "the ASCII bytes of each case event's `hash`",
     "keys": [{"key_id": "0f1e...", "public_key": "<base64 of the 32 raw bytes>",
               "valid_from": "2026-01-01T00:00:00+00:00" | null, "valid_until": null}]}

Pure apart from the loaders at the end (`load_signer`, `load_keyring`), which read files named by settings.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fleetcore.errors import ConfigError
from fleetcore.settings import Settings
from schemas.cases import CaseEvent

log = logging.getLogger(__name__)

ALGORITHM = "Ed25519"
KEY_FILE = Path("audit") / "case-signing-key.pem"
"""Where the engine's key is generated (under data_dir) when the settings name none."""


class SigningKeyError(ConfigError):
    """A signing or verification key could not be read (the message says which and why)."""


def key_id_of(public: bytes) -> str:
    """The key id of a raw 32-byte Ed25519 public key."""
    return hashlib.sha256(public).hexdigest()[:16]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class PublicKey:
    """One verification key and when it was valid (None: open-ended)."""

    public: bytes
    valid_from: datetime | None = None
    valid_until: datetime | None = None

    @property
    def key_id(self) -> str:
        return key_id_of(self.public)

    def valid_at(self, at: datetime) -> bool:
        return (self.valid_from is None or at >= self.valid_from) and (
            self.valid_until is None or at < self.valid_until
        )

    def to_json(self) -> dict[str, Any]:
        def iso(at: datetime | None) -> str | None:
            return at.isoformat() if at is not None else None

        return {
            "key_id": self.key_id,
            "algorithm": ALGORITHM,
            "public_key": base64.b64encode(self.public).decode("ascii"),
            "valid_from": iso(self.valid_from),
            "valid_until": iso(self.valid_until),
        }


class Signer:
    """The case engine's private key: signs events' hashes."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = PublicKey(_raw_public(private.public_key()))
        self.key_id = self.public.key_id

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    def sign(self, event: CaseEvent) -> CaseEvent:
        """`event` with `key_id` and `sig` set (its hash, which the signature covers, is unchanged)."""
        if not event.hash:
            raise ValueError(f"event {event.event_id} has no hash to sign")
        sig = base64.b64encode(self._private.sign(event.hash.encode("ascii"))).decode("ascii")
        return event.model_copy(update={"key_id": self.key_id, "sig": sig})

    def pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


@dataclass(frozen=True)
class Keyring:
    """The public keys that verify case events, by key id."""

    keys: Mapping[str, PublicKey] = field(default_factory=dict)

    @classmethod
    def of(cls, keys: Iterable[PublicKey]) -> Keyring:
        return cls({key.key_id: key for key in keys})

    def with_key(self, key: PublicKey) -> Keyring:
        """This ring plus `key` (a key already listed keeps its listed validity)."""
        if key.key_id in self.keys:
            return self
        return Keyring({**self.keys, key.key_id: key})

    def to_json(self) -> dict[str, Any]:
        return {
            "algorithm": ALGORITHM,
            "signed": "the ASCII bytes of each case event's `hash` (64 lower-case hex digits)",
            "key_id": "first 16 hex digits of sha256 over the 32 raw public key bytes",
            "keys": [self.keys[k].to_json() for k in sorted(self.keys)],
        }


@functools.lru_cache(maxsize=64)
def _verifier(public: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public)


def is_signed(event: CaseEvent) -> bool:
    """Whether the event carries a signature at all (checked or not)."""
    return bool(event.sig or event.key_id)


def signature_problem(event: CaseEvent, keys: Keyring) -> str | None:
    """Why the event's signature does not hold (None: signed by a listed key, valid at the event's time).

    An unsigned event (no `key_id`, no `sig`) has no signature problem here: whether unsigned events are
    acceptable is the chain's question (`casefile.audit`)."""
    if not is_signed(event):
        return None
    if not event.sig or not event.key_id:
        return "has a key id but no signature" if event.key_id else "has a signature but no key id"
    key = keys.keys.get(event.key_id)
    if key is None:
        return f"signed with key {event.key_id}, which is not a listed verification key"
    try:
        sig = base64.b64decode(event.sig, validate=True)
    except (binascii.Error, ValueError):
        return "its signature is not base64"
    try:
        _verifier(key.public).verify(sig, event.hash.encode("ascii"))
    except (InvalidSignature, ValueError):
        return f"signature does not verify with key {event.key_id} (forged, or the hash was changed)"
    if not key.valid_at(event.at):
        return f"signed with key {event.key_id} outside that key's validity"
    return None


# -- keys from text and files -------------------------------------------------------------------------


def parse_private_key(text: str, where: str = "the signing key") -> Ed25519PrivateKey:
    """A PEM (PKCS#8) Ed25519 private key, or the base64 of its 32-byte seed."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise SigningKeyError(f"{where} is not an Ed25519 key")
            return key
        seed = base64.b64decode(text, validate=True)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise SigningKeyError(f"{where} is neither a PEM Ed25519 key nor a base64 seed: {exc}") from exc
    if len(seed) != 32:
        raise SigningKeyError(f"{where}: a base64 seed must decode to 32 bytes, not {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def parse_public_key(text: str, where: str = "a verification key") -> bytes:
    """Raw 32 public key bytes from base64 of the raw key or a PEM SubjectPublicKeyInfo."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
            if not isinstance(key, Ed25519PublicKey):
                raise SigningKeyError(f"{where} is not an Ed25519 key")
            return _raw_public(key)
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise SigningKeyError(f"{where} is neither base64 nor PEM: {exc}") from exc
    if len(raw) != 32:
        raise SigningKeyError(f"{where}: an Ed25519 public key has 32 bytes, not {len(raw)}")
    return raw


def parse_keyring(data: Any, where: str = "the key list") -> Keyring:
    """A Keyring from the key list's JSON (see the module docstring); a bare list of keys works too."""
    items = data.get("keys") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise SigningKeyError(f'{where}: expected {{"keys": [...]}}')
    keys: list[PublicKey] = []
    for n, item in enumerate(items):
        here = f"{where}, key {n + 1}"
        if not isinstance(item, dict) or not isinstance(item.get("public_key"), str):
            raise SigningKeyError(f"{here}: needs a public_key (base64 or PEM)")
        key = PublicKey(
            parse_public_key(item["public_key"], here),
            _when(item.get("valid_from"), here),
            _when(item.get("valid_until"), here),
        )
        if item.get("key_id") not in (None, key.key_id):
            raise SigningKeyError(f"{here}: key_id {item['key_id']} does not match the key ({key.key_id})")
        keys.append(key)
    return Keyring.of(keys)


def _when(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise SigningKeyError(f"{where}: {value!r} is not an ISO 8601 time") from exc
    if moment.tzinfo is None:
        raise SigningKeyError(f"{where}: {value!r} needs a time zone")
    return moment


def _configured_key(settings: Settings) -> Ed25519PrivateKey | None:
    value = settings.audit_signing_key.get_secret_value().strip()
    if not value:
        return None
    if not value.startswith("-----BEGIN") and "/" in value and not _is_seed(value):
        path = Path(value).expanduser()
        try:
            return parse_private_key(path.read_text(encoding="ascii"), f"signing key file {path}")
        except OSError as exc:
            raise SigningKeyError(f"cannot read the signing key file {path}: {exc}") from exc
    return parse_private_key(value, "FLEETWATCH_AUDIT_SIGNING_KEY")


def _is_seed(value: str) -> bool:
    """Whether `value` is the base64 of a 32-byte seed (base64 may hold "/": not a path then)."""
    try:
        return len(base64.b64decode(value, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def key_file(settings: Settings) -> Path:
    """The generated signing key's file under data_dir."""
    return settings.data_dir / KEY_FILE


def existing_signer(settings: Settings) -> Signer | None:
    """The configured signing key, else the one generated under data_dir; None if there is neither."""
    configured = _configured_key(settings)
    if configured is not None:
        return Signer(configured)
    path = key_file(settings)
    if not path.is_file():
        return None
    return Signer(parse_private_key(path.read_text(encoding="ascii"), f"signing key file {path}"))


def load_signer(settings: Settings) -> Signer:
    """The engine's signer: the configured key wins; else the data_dir key, generated at first use.

    Generation is safe when several processes start at once: the key is written to a temporary file and
    linked into place, so exactly one key wins and every process reads that one."""
    signer = existing_signer(settings)
    if signer is not None:
        return signer
    path = key_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = Signer.generate()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(fresh.pem())
        try:
            os.link(tmp, path)
            log.warning(
                "audit: generated the case engine's signing key in %s (key id %s); publish its public key "
                "(`fleetwatch audit keys`) and set FLEETWATCH_AUDIT_SIGNING_KEY in production",
                path,
                fresh.key_id,
            )
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    loaded = existing_signer(settings)
    assert loaded is not None
    return loaded


def load_keyring(settings: Settings) -> Keyring:
    """The verification keys: the `audit_keys_file` list plus the public key of the engine's own key (the
    configured one or the data_dir one), if this process can read it."""
    ring = Keyring()
    if settings.audit_keys_file is not None:
        path = settings.audit_keys_file
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SigningKeyError(f"cannot read the audit key list {path}: {exc}") from exc
        ring = parse_keyring(_load_document(text, path), f"audit key list {path}")
    signer = existing_signer(settings)
    if signer is not None:
        ring = ring.with_key(signer.public)
    return ring


def _load_document(text: str, path: Path) -> Any:
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SigningKeyError(f"audit key list {path} is not YAML: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SigningKeyError(f"audit key list {path} is not JSON: {exc}") from exc
