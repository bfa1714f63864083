"""Contracts reject bad data with clear reasons and decode tolerant batches item by item."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest
from pydantic import ValidationError

from schemas import Server
from schemas.envelope import decode_probe_batch, item_payload
from schemas.probes import ProbeBatch
from schemas.topics import TOPICS, Topics
from tests.helpers import result


def test_server_validates_targets() -> None:
    Server(server_id="s1", customer_id="c", target="http://127.0.0.1/status")
    Server(server_id="s2", customer_id="c", probe="tcp", target="db.example:5432")
    with pytest.raises(ValidationError, match="http"):
        Server(server_id="s1", customer_id="c", target="ftp://x")
    with pytest.raises(ValidationError, match="host:port"):
        Server(server_id="s1", customer_id="c", probe="tcp", target="nohost")
    with pytest.raises(ValidationError, match="backup_of"):
        Server(server_id="s1", customer_id="c", role="secondary", target="http://x/")
    with pytest.raises(ValidationError):
        Server(server_id="bad id!", customer_id="c", target="http://x/")


def test_probe_result_requires_aware_time() -> None:
    data = result("s1", 0, ok=True).model_dump()
    data["started_at"] = datetime(2026, 1, 1)  # naive
    with pytest.raises(ValidationError, match="timezone"):
        type(result("s1", 0, ok=True)).model_validate(data)


def test_decode_batch_keeps_good_items_and_reports_bad_ones() -> None:
    good = result("s1", 0, ok=True)
    raw = (
        b'{"batch_id":"b","worker_id":"w","partition":0,"results":['
        + good.model_dump_json().encode()
        + b',{"server_id":"s2"},'
        + good.model_dump_json().encode()
        + b"]}"
    )
    decoded = decode_probe_batch(raw)
    assert decoded.results == [good, good]
    assert [i for i, _ in decoded.rejected] == [1]
    assert "customer_id" in decoded.rejected[0][1]
    assert item_payload(raw, 1) == '{"server_id":"s2"}'


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(None, "empty"), (b"\xff\xfe", "not JSON"), (b"[]", "envelope"), (b'{"batch_id":"b"}', "envelope")],
)
def test_decode_rejects_bad_envelopes(raw: bytes | None, reason: str) -> None:
    decoded = decode_probe_batch(raw)
    assert decoded.results == []
    assert decoded.rejected[0][0] is None
    assert reason in decoded.rejected[0][1]


def test_batch_round_trip() -> None:
    batch = ProbeBatch(
        batch_id="w:1", worker_id="w", partition=2, results=[result("s", i, ok=True) for i in range(3)]
    )
    assert decode_probe_batch(batch.model_dump_json().encode()).results == batch.results


def test_topic_names_and_registry() -> None:
    names = Topics("p.")
    assert names.cases == "p.cases"
    assert names.probe_results == "p.probe-results"
    assert TOPICS["fleet-inventory"].cleanup_policy == "compact"
    assert TOPICS["probe-results"].config()["message.timestamp.type"] == "LogAppendTime"


def test_a_result_with_a_partner_decodes_on_the_fast_path_and_stores_and_one_without_still_does() -> None:
    from sinks.rows import probe_row

    with_partner = result("s", 0, ok=False).model_copy(update={"partner_id": "northwind-partners"})
    old = result("s", 1, ok=True).model_dump(mode="json")
    old.pop("partner_id")  # a result of a probe worker from before the field
    raw = (
        b'{"batch_id":"w:1","worker_id":"w","partition":0,"results":['
        + with_partner.model_dump_json().encode()
        + b","
        + orjson.dumps(old)
        + b"]}"
    )
    decoded = decode_probe_batch(raw)
    assert decoded.rejected == []
    assert [r.partner_id for r in decoded.results] == ["northwind-partners", None]
    assert probe_row(decoded.results[0], "t", 0, 0, 0)[:3] == ("s", "acme", with_partner.probe_id)
    with pytest.raises(ValidationError, match="partner_id"):
        type(with_partner).model_validate({**old, "partner_id": "no spaces allowed"})
