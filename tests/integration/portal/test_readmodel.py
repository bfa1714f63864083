"""The read model against the real broker: reads the cases topic from the beginning (every partition),
says when it has caught up, skips what is not a case event, and shows new events within seconds."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaProducer

from portal.readmodel import ReadModel
from schemas.cases import CaseEvent, CaseEventType, CaseSource, CaseState, Severity, chained, event_id_for
from schemas.topics import Topics
from tests.helpers import T0, wait_for

pytestmark = pytest.mark.integration


def _event(case_id: str, seq: int, previous: str, type_: CaseEventType, **fields: object) -> CaseEvent:
    values: dict[str, object] = {
        "event_id": event_id_for(case_id, type_, str(seq)),
        "case_id": case_id,
        "type": type_,
        "severity": None,
        "source": CaseSource.PORTAL,
        "customer_id": "acme",
        "partner_id": "northwind-partners",
        "at": T0,
        "details": {"title": f"title {case_id}"},
    }
    return chained(CaseEvent.model_validate({**values, **fields}), seq, previous)


def test_follows_the_cases_topic(kafka_bootstrap: str, topics: Topics) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    opened = {}
    for n in range(12):  # spread over the topic's partitions by key
        case_id = f"prt-{n:04d}"
        opened[case_id] = _event(case_id, 0, "", CaseEventType.CASE_OPENED)
        producer.send(topics.cases, key=case_id.encode(), value=opened[case_id].model_dump_json().encode())
    producer.send(topics.cases, key=b"junk", value=b"{not json")
    producer.send(topics.cases, key=b"prt-0000", value=None)
    producer.flush()

    model = ReadModel(kafka_bootstrap, topics.cases)
    model.start()
    try:
        wait_for(model.caught_up.is_set, 30, "the read model to catch up")
        assert {v.case_id for v in model.views()} == set(opened)
        assert model.problems == 2, "a broken message and an empty one are skipped"

        triaged = _event(
            "prt-0003",
            1,
            opened["prt-0003"].hash,
            CaseEventType.TRIAGED,
            severity=Severity.SEV1,
            ticket="FW-100003",
            state=CaseState.TRIAGED,
        )
        start = time.monotonic()
        producer.send(topics.cases, key=b"prt-0003", value=triaged.model_dump_json().encode())
        producer.flush()
        view = wait_for(lambda: model.get("FW-100003"), 10, "the new event")
        assert time.monotonic() - start < 5, "current within a few seconds"
        assert view.case_id == "prt-0003"
        assert view.state is CaseState.TRIAGED
    finally:
        producer.close()
        model.stop()
    assert model._thread is None, "stop() joined the follower"
