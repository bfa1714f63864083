"""Chained case histories for the casefile tests (unit and integration)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from casefile.signing import Keyring, Signer
from schemas.cases import (
    CaseEvent,
    CaseEventType,
    CaseSource,
    CaseState,
    DetailValue,
    Severity,
    Visibility,
    chained,
    event_id_for,
)
from tests.helpers import T0

E = CaseEventType
S = CaseState

SIGNER = Signer(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
"""The test case engine's key (fixed, so histories are byte-identical from run to run)."""
SEED_B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
"""base64 of SIGNER's seed (what FLEETWATCH_AUDIT_SIGNING_KEY takes)."""
KEYS = Keyring.of([SIGNER.public])


def event(
    type_: CaseEventType,
    minute: int,
    state: CaseState,
    case_id: str = "stf-case1",
    discriminator: str = "",
    details: dict[str, DetailValue] | None = None,
    **fields: Any,
) -> CaseEvent:
    """An unchained event of a staff-opened Sev2 case of customer `acme`, `minute` minutes after T0."""
    base: dict[str, object] = {
        "event_id": event_id_for(case_id, type_, discriminator or str(minute)),
        "case_id": case_id,
        "type": type_,
        "severity": Severity.SEV2,
        "source": CaseSource.STAFF,
        "customer_id": "acme",
        "server_id": "web-1",
        "at": T0 + timedelta(minutes=minute),
        "actor": "staff:alice",
        "state": state,
        "ticket": "FW-100003",
        "owner": "bob",
        "details": details or {},
    }
    base.update(fields)
    return CaseEvent.model_validate(base)


def chain(events: list[CaseEvent], signer: Signer | None = SIGNER) -> list[CaseEvent]:
    """The events linked into one hash chain, seq from 0, signed by `signer` (None: unsigned, legacy)."""
    out: list[CaseEvent] = []
    for seq, item in enumerate(events):
        linked = chained(item, seq, out[-1].hash if out else "")
        out.append(signer.sign(linked) if signer is not None else linked)
    return out


def history(
    case_id: str = "stf-case1", ticket: str = "FW-100003", signer: Signer | None = SIGNER
) -> list[CaseEvent]:
    """A whole case: opened, worked, updated, waited, breached, resolved, closed (9 events, chained and
    signed by `signer`; None: unsigned, as before signing)."""

    def ev(type_: CaseEventType, minute: int, state: CaseState, **fields: Any) -> CaseEvent:
        return event(type_, minute, state, case_id=case_id, ticket=ticket, **fields)

    return chain(
        [
            ev(E.CASE_OPENED, 0, S.TRIAGED, details={"title": "web-1 answers 500"}, owner=None),
            ev(E.WORK_STARTED, 5, S.WORKING),
            ev(E.CUSTOMER_UPDATE, 30, S.WORKING, reason="looking at the logs"),
            ev(E.NOTE, 40, S.WORKING, reason="called the customer", visibility=Visibility.INTERNAL),
            ev(E.WAITING, 50, S.WAITING, reason="need the config file"),
            ev(E.CUSTOMER_REPLIED, 70, S.WORKING),
            ev(E.SLA_BREACHED, 80, S.WORKING, details={"clock": "resolution"}),
            ev(E.RESOLVED, 90, S.RESOLVED, reason="config fixed"),
            ev(E.CLOSED, 120, S.CLOSED),
        ],
        signer,
    )
