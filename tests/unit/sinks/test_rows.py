"""Message -> row conversion: column order, item indexes of rejected results, dead letters."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from fleetcore.clock import to_epoch_ms
from history.ddl import CASE_COLUMNS, PROBE_COLUMNS
from schemas.cases import CaseEvent, CaseEventType, CaseSource, CaseState, Severity, Visibility, chained
from schemas.probes import HealthMetrics, ProbeBatch, ProbeResult
from sinks.rows import (
    NO_SEVERITY,
    Rejected,
    case_row,
    columns,
    dead_letter,
    decode_case_message,
    decode_probe_message,
    probe_row,
)

AT = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ITEM = PROBE_COLUMNS.index("batch_item")


def result(n: int, **extra: object) -> ProbeResult:
    return ProbeResult.model_validate(
        {
            "server_id": "srv-a",
            "customer_id": "cust",
            "probe_id": f"srv-a@{n}",
            "started_at": AT,
            "latency_ms": n,
            "ok": True,
            "worker_id": "w",
            **extra,
        }
    )


def batch_bytes(results: list[ProbeResult]) -> bytes:
    return ProbeBatch(batch_id="b:1", worker_id="w", partition=0, results=results).model_dump_json().encode()


def test_probe_row_matches_the_column_order() -> None:
    r = result(7, status_code=200, health=HealthMetrics(load1=1.5, connections=4, disk_percent=50))
    row = dict(zip(PROBE_COLUMNS, probe_row(r, "topic", 2, 99, 3), strict=True))
    assert row == {
        "server_id": "srv-a",
        "customer_id": "cust",
        "probe_id": "srv-a@7",
        "started_at": to_epoch_ms(AT),
        "latency_ms": 7,
        "ok": True,
        "status_code": 200,
        "error_class": None,
        "error_message": None,
        "worker_id": "w",
        "health_load1": 1.5,
        "health_connections": 4,
        "health_users": None,
        "health_cpu_percent": None,
        "health_memory_percent": None,
        "health_disk_percent": 50,
        "kafka_topic": "topic",
        "kafka_partition": 2,
        "kafka_offset": 99,
        "batch_item": 3,
        "maintenance_id": None,
    }


def test_case_row_matches_the_column_order() -> None:
    event = CaseEvent(
        event_id="e1",
        case_id="c1",
        type=CaseEventType.CASE_OPENED,
        severity=Severity.SEV1,
        source=CaseSource.MONITOR,
        server_id="srv-a",
        customer_id="cust",
        at=AT,
        details={"z": 1, "a": "x"},
    )
    row = dict(zip(CASE_COLUMNS, case_row(event, "cases", 1, 5), strict=True))
    assert row["type"] == "case.opened"
    assert row["severity"] == 1
    assert row["source"] == "monitor"
    assert row["at"] == to_epoch_ms(AT)
    assert row["details"] == '{"a":"x","z":1}'
    assert (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"]) == ("cases", 1, 5)


def test_good_batch_gives_one_row_per_result_with_item_index() -> None:
    decoded = decode_probe_message(batch_bytes([result(1), result(2)]), "t", 0, 10)
    assert decoded.rejected == []
    assert [(r[2], r[ITEM]) for r in decoded.rows] == [("srv-a@1", 0), ("srv-a@2", 1)]


def test_rejected_items_keep_the_other_items_indexes() -> None:
    envelope = json.loads(batch_bytes([result(n) for n in range(5)]))
    envelope["results"][1]["latency_ms"] = -1
    envelope["results"][3] = {"nonsense": True}
    decoded = decode_probe_message(json.dumps(envelope).encode(), "t", 0, 10)
    assert [(r[2], r[ITEM]) for r in decoded.rows] == [("srv-a@0", 0), ("srv-a@2", 2), ("srv-a@4", 4)]
    assert [r.item for r in decoded.rejected] == [1, 3]
    assert "latency_ms" in decoded.rejected[0].reason
    assert json.loads(decoded.rejected[1].payload) == {"nonsense": True}


def test_bad_envelope_rejects_the_whole_message() -> None:
    for raw, reason in (
        (b"nope", "not JSON"),
        (b'{"results": []}', "not a ProbeBatch envelope"),
        (None, "empty"),
    ):
        decoded = decode_probe_message(raw, "t", 0, 10)
        assert decoded.rows == []
        assert len(decoded.rejected) == 1
        assert decoded.rejected[0].item is None
        assert reason in decoded.rejected[0].reason


def test_case_messages() -> None:
    event = CaseEvent(
        event_id="e1",
        case_id="c1",
        type=CaseEventType.SERVER_RECOVERED,
        severity=Severity.SEV1,
        source=CaseSource.MONITOR,
        customer_id="cust",
        at=AT,
    )
    good = decode_case_message(event.model_dump_json().encode(), "c", 0, 1)
    assert len(good.rows) == 1
    assert good.rows[0][5] is None  # no server
    bad = decode_case_message(b'{"event_id": 1}', "c", 0, 2)
    assert bad.rows == []
    assert bad.rejected[0].reason.startswith("not a CaseEvent")
    assert bad.rejected[0].payload == '{"event_id": 1}'
    assert decode_case_message(None, "c", 0, 3).rejected[0].reason == "empty message value"


def test_dead_letter_fields() -> None:
    letter = dead_letter(Rejected(2, "why", "{}"), "t", 1, 5, "sink", AT)
    assert letter.model_dump() == {
        "source_topic": "t",
        "partition": 1,
        "offset": 5,
        "item": 2,
        "consumer": "sink",
        "reason": "why",
        "payload": "{}",
        "rejected_at": AT,
    }


def test_columns_transposes_and_handles_empty() -> None:
    assert columns([(1, "a"), (2, "b")], 2) == [[1, 2], ["a", "b"]]
    assert columns([], 3) == [[], [], []]


def test_values_outside_the_columns_are_rejected_per_item() -> None:
    envelope = json.loads(batch_bytes([result(0), result(1), result(2), result(3)]))
    envelope["results"][1]["latency_ms"] = 2**40
    envelope["results"][2]["started_at"] = "2400-01-01T00:00:00Z"
    envelope["results"][3]["health"] = {"connections": 2**33}
    decoded = decode_probe_message(json.dumps(envelope).encode(), "t", 0, 10)
    assert [r[ITEM] for r in decoded.rows] == [0]
    assert [r.item for r in decoded.rejected] == [1, 2, 3]
    assert "latency_ms" in decoded.rejected[0].reason
    assert "1900..2299" in decoded.rejected[1].reason
    assert "health.connections" in decoded.rejected[2].reason
    assert all(r.reason.startswith("cannot store ProbeResult") for r in decoded.rejected)


def test_case_event_that_cannot_be_stored_is_rejected() -> None:
    base = {
        "event_id": "e1",
        "case_id": "c1",
        "type": "case.opened",
        "severity": 1,
        "source": "monitor",
        "customer_id": "cust",
        "at": "2026-11-01T00:00:00Z",
    }
    huge = decode_case_message(json.dumps({**base, "details": {"n": 2**70}}).encode(), "c", 0, 1)
    assert huge.rows == []
    assert huge.rejected[0].reason.startswith("cannot store CaseEvent")
    late = decode_case_message(json.dumps({**base, "at": "2400-01-01T00:00:00Z"}).encode(), "c", 0, 1)
    assert "1900..2299" in late.rejected[0].reason


def chained_events() -> list[CaseEvent]:
    """A portal case awaiting triage (no severity), then triaged: a two-event hash chain."""
    opened = CaseEvent(
        event_id="e-open",
        case_id="c-9",
        type=CaseEventType.CASE_OPENED,
        severity=None,
        source=CaseSource.PORTAL,
        customer_id="cust",
        at=AT,
        actor="alice@cust",
        reason="cannot log in",
        command_id="cmd-1",
        partner_id="isp-1",
    )
    first = chained(opened, 0, "")
    triaged = CaseEvent(
        event_id="e-triage",
        case_id="c-9",
        type=CaseEventType.TRIAGED,
        severity=Severity.SEV2,
        source=CaseSource.PORTAL,
        customer_id="cust",
        at=AT,
        actor="bob",
        state=CaseState.TRIAGED,
        ticket="FW-000123",
        owner="bob",
        visibility=Visibility.INTERNAL,
        command_id="cmd-2",
    )
    return [first, chained(triaged, 1, first.hash)]


def test_chained_case_events_fill_the_new_columns_and_no_severity_is_zero() -> None:
    first, second = chained_events()
    row = dict(zip(CASE_COLUMNS, case_row(first, "cases", 0, 7), strict=True))
    assert row["severity"] == NO_SEVERITY == 0
    assert (row["state"], row["ticket"], row["owner"]) == ("new", None, None)
    assert (row["partner_id"], row["reason"], row["command_id"]) == ("isp-1", "cannot log in", "cmd-1")
    assert (row["visibility"], row["seq"], row["prev_hash"]) == ("customer", 0, "")
    assert row["hash"] == first.hash
    assert len(row["hash"]) == 64
    row = dict(zip(CASE_COLUMNS, case_row(second, "cases", 0, 8), strict=True))
    assert (row["severity"], row["state"], row["ticket"], row["owner"]) == (2, "triaged", "FW-000123", "bob")
    assert (row["visibility"], row["seq"], row["prev_hash"]) == ("internal", 1, first.hash)


@pytest.mark.parametrize("event_type", list(CaseEventType))
def test_every_case_event_type_is_stored(event_type: CaseEventType) -> None:
    event = chained_events()[1].model_copy(update={"type": event_type})
    decoded = decode_case_message(event.model_dump_json().encode(), "c", 0, 1)
    assert decoded.rejected == []
    assert decoded.rows[0][CASE_COLUMNS.index("type")] == event_type.value


def test_a_seq_beyond_the_column_is_rejected_not_inserted() -> None:
    event = json.loads(chained_events()[0].model_dump_json())
    event["seq"] = 2**64
    decoded = decode_case_message(json.dumps(event).encode(), "c", 0, 1)
    assert decoded.rows == []
    assert "seq" in decoded.rejected[0].reason


def test_planned_lookup_marks_rows_with_their_window() -> None:
    results = [result(0), result(1, server_id="srv-b", probe_id="srv-b@1")]

    asked: list[tuple[str, str, datetime]] = []

    def planned(server_id: str, customer_id: str, started_at: datetime) -> str | None:
        asked.append((server_id, customer_id, started_at))
        return "mw-1" if server_id == "srv-a" else None

    decoded = decode_probe_message(batch_bytes(results), "t", 0, 10, planned)
    window = PROBE_COLUMNS.index("maintenance_id")
    assert [row[window] for row in decoded.rows] == ["mw-1", None]
    # the lookup gets plain values (the fast path builds no ProbeResult for it)
    assert asked == [(r.server_id, r.customer_id, r.started_at) for r in results]
    assert [row[window] for row in decode_probe_message(batch_bytes(results), "t", 0, 10).rows] == [
        None,
        None,
    ]


def test_case_rows_carry_the_sinks_verdict_and_keep_unverified_copies_apart() -> None:
    from casefile.audit import event_verdict
    from tests.unit.casefile.builders import KEYS, history

    events = history()
    col = {name: i for i, name in enumerate(CASE_COLUMNS)}

    def stored(item: CaseEvent, partition: int, offset: int, home: int = 2) -> tuple[str, str, str]:
        decoded = decode_case_message(
            item.model_dump_json().encode(),
            "c",
            partition,
            offset,
            lambda e, p: event_verdict(e, p, home, KEYS),
        )
        row = decoded.rows[0]
        assert (row[col["key_id"]], row[col["sig"]]) == (item.key_id, item.sig)
        return row[col["chain_status"]], row[col["chain_copy"]], row[col["chain_fault"]]

    assert stored(events[1], 2, 10) == ("verified", "", "")
    assert stored(events[1], 0, 11)[:2] == ("misplaced", "0:11")
    forged = events[1].model_copy(update={"reason": "rewritten"})
    status, copy, fault = stored(forged, 2, 12)
    assert (status, copy) == ("forged", "2:12")
    assert "hash mismatch" in fault
    unsigned = events[1].model_copy(update={"key_id": "", "sig": ""})
    assert stored(unsigned, 2, 13) == ("unsigned", "2:13", "unsigned")
    unchecked = decode_case_message(events[1].model_dump_json().encode(), "c", 2, 14).rows[0]
    assert unchecked[col["chain_status"]] == ""  # not checked: like rows stored before v4
