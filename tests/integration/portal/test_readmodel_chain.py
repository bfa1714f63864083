"""The read model against the real broker judges each event where it sits: an event of a case produced to
another partition of the cases topic (a producer that does not partition like the engine) never changes the
case's view, and its chain reads as broken."""

from __future__ import annotations

import pytest
from kafka import KafkaProducer

from casefile.audit import ChainStatus
from casefile.reader import partition_for_case
from casefile.signing import Keyring, Signer
from portal.readmodel import ReadModel
from schemas.cases import CaseEvent, CaseEventType, CaseSource, CaseState, Severity, chained
from schemas.topics import Topics
from tests.helpers import T0, wait_for

pytestmark = pytest.mark.integration

CASE = "prt-forged-elsewhere"


def _event(seq: int, previous: str, kind: CaseEventType, state: CaseState) -> CaseEvent:
    event = CaseEvent(
        event_id=f"evt-{seq}",
        case_id=CASE,
        type=kind,
        severity=Severity.SEV2,
        state=state,
        ticket="FW-100555",
        source=CaseSource.PORTAL,
        customer_id="acme",
        partner_id="northwind-partners",
        at=T0,
        details={"title": "forged elsewhere"},
    )
    return chained(event, seq, previous)


def test_an_event_in_another_partition_is_not_folded(kafka_bootstrap: str, topics: Topics) -> None:
    engine = Signer.generate()
    opened = engine.sign(_event(0, "", CaseEventType.CASE_OPENED, CaseState.NEW))
    triaged = engine.sign(_event(1, opened.hash, CaseEventType.TRIAGED, CaseState.TRIAGED))
    resolved = engine.sign(_event(2, triaged.hash, CaseEventType.RESOLVED, CaseState.RESOLVED))
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")  # murmur2, as the engine
    try:
        partitions = len(producer.partitions_for(topics.cases))
        assert partitions > 1, "the cases topic needs several partitions for this test"
        elsewhere = (partition_for_case(CASE, partitions) + 1) % partitions
        key = CASE.encode()
        for event in (opened, triaged):
            producer.send(topics.cases, key=key, value=event.model_dump_json().encode())
        producer.send(topics.cases, key=key, value=resolved.model_dump_json().encode(), partition=elsewhere)
        producer.flush()
    finally:
        producer.close()

    model = ReadModel(kafka_bootstrap, topics.cases, keys=Keyring.of([engine.public]))
    model.start()
    try:
        wait_for(model.caught_up.is_set, 30, "the read model to catch up")
        view = model.get("FW-100555")
        assert view is not None
        assert view.state is CaseState.TRIAGED, "the event in another partition resolved the case"
        assert [e.seq for e in view.timeline] == [0, 1]
        report = model.chain(CASE)
        assert report.status is ChainStatus.BROKEN
        assert any(f"found in partition {elsewhere}" in p for p in report.problems), report.problems
        assert model.partitions == partitions
    finally:
        model.stop()
