"""The sink verifies case events (real broker, embedded store): a forged copy produced by a raw producer to
another partition, and events appended with a correct prev_hash but no valid signature, are stored as what
they are, never replace the genuine rows, never reach case_state or the reports, and show in
case_chain_faults."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from casefile.reader import partition_for_case
from casefile.signing import Signer
from fleetcore.settings import Settings
from history.reports import build, report_query
from history.store import connect
from schemas.cases import CaseEventType, CaseState, chained
from schemas.topics import Topics
from sinks.service import SinkService
from tests.integration.sinks.conftest import produce_raw
from tests.unit.casefile.builders import SEED_B64, event, history

pytestmark = pytest.mark.integration


def test_forged_copies_and_unsigned_appends_never_replace_or_count(
    kafka_bootstrap: str, topics: Topics, sink_settings: Settings
) -> None:
    settings = sink_settings  # verifies with the test engine key (SEED_B64)
    assert settings.audit_signing_key.get_secret_value() == SEED_B64
    events = history()  # signed with the test engine key; closed at seq 8
    home = partition_for_case("stf-case1", 4)
    elsewhere = (home + 1) % 4
    forged = events[4].model_copy(update={"reason": "the customer never answered"})  # same key columns
    appended = chained(
        event(CaseEventType.REOPENED, 300, CaseState.WORKING, reason="reopened"), 9, events[-1].hash
    )
    mallory = Signer(Ed25519PrivateKey.from_private_bytes(b"\x07" * 32))
    wrongly_signed = chained(
        event(CaseEventType.NOTE, 301, CaseState.WORKING, reason="signed by someone else"), 10, appended.hash
    )
    messages: list[tuple[int, bytes | None, bytes | None]] = [
        (home, e.case_id.encode(), e.model_dump_json().encode()) for e in events
    ]
    messages += [
        (elsewhere, b"stf-case1", forged.model_dump_json().encode()),  # kcat's default partitioner
        (home, b"stf-case1", appended.model_dump_json().encode()),
        (home, b"stf-case1", mallory.sign(wrongly_signed).model_dump_json().encode()),
    ]
    produce_raw(kafka_bootstrap, topics.cases, messages)
    stats = SinkService(
        settings, until=lambda s: s.rows.get("case_events", 0) >= len(messages), http=False, grace_ms=200
    ).run()
    assert stats.dead_letters == 0

    client = connect(settings.store_dsn(), settings.clickhouse_database)
    try:
        client.command("OPTIMIZE TABLE case_events FINAL")
        rows = client.query(
            "SELECT seq, reason, chain_status, kafka_partition FROM case_events FINAL "
            "WHERE event_id = {e:String} ORDER BY chain_status",
            parameters={"e": events[4].event_id},
        ).result_rows
        assert rows == [
            (4, "the customer never answered", "forged", elsewhere),  # hash mismatch and misplaced
            (4, events[4].reason, "verified", home),  # the genuine row survives
        ]
        tail = client.query("SELECT seq, chain_status FROM case_events FINAL WHERE seq >= 9").result_rows
        statuses = {int(seq): str(status) for seq, status in tail}
        assert statuses == {9: "unsigned", 10: "forged"}
        verified = client.query(
            "SELECT count() FROM case_events FINAL WHERE chain_status = 'verified'"
        ).result_rows[0][0]
        assert verified == len(events)
        faults = client.query(
            "SELECT seq, chain_status, chain_fault FROM case_chain_faults ORDER BY seq"
        ).result_rows
        assert [(s, st) for s, st, _ in faults] == [(4, "forged"), (9, "unsigned"), (10, "forged")]
        assert f"in partition {elsewhere}, not the case's partition {home}" in faults[0][2]
        assert f"signed with key {mallory.key_id}, which is not a listed" in faults[2][2]
        state = client.query("SELECT seq, state FROM case_state FINAL WHERE case_id = 'stf-case1'")
        assert state.result_rows == [(8, "closed")]
        cases = build(client, "cases", report_query("2026-11"))["rows"]
        total = next(r for r in cases if r["dimension"] == "total")
        assert (total["opened"], total["open"], total["closed"]) == (1, 0, 1)
    finally:
        client.close()
