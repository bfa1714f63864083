"""A real portal for page and API tests: the `portal` fixture.

It runs `portal.service.Portal` (read model, aiokafka producer, aiohttp site) in a thread with its own event
loop, on 127.0.0.1 and a free port, against the test broker and the test's unique `topics`, with the demo
directory `examples/partners.yaml` (nadia / northwind-demo, tom / telco-demo, sam / staff-demo; API token
`fwt_demo_northwind_token` is nadia's). Cookies are not marked Secure (plain http).

No stream worker runs: `portal.seed_case(...)` writes a chained case history straight to the cases topic, as
the case engine would, and waits until the read model shows it. Commands the portal sends are read back with
`portal.commands()`, audit events with `portal.audit_events()` (each reads its topic to the current end).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from casefile.view import CaseView
from fleetcore.clock import SystemClock
from fleetcore.settings import Settings
from portal.readmodel import ReadModel
from portal.service import Portal
from schemas.cases import (
    CaseEvent,
    CaseEventType,
    CaseSource,
    CaseState,
    Severity,
    Visibility,
    chained,
    event_id_for,
)
from schemas.commands import CaseCommand
from schemas.portal import PortalAuditEvent
from schemas.topics import Topics
from tests.helpers import wait_for

PARTNERS = Path(__file__).resolve().parents[3] / "examples" / "partners.yaml"
SECRET = "portal-test-secret-0123456789abcdef0123456789"
USERS = {"nadia": "northwind-demo", "tom": "telco-demo", "sam": "staff-demo"}
"""Demo accounts and their passwords."""
NADIA_TOKEN = "fwt_demo_northwind_token"


class _PortalThread:
    """Runs a Portal on its own event loop in a daemon thread."""

    def __init__(self, service: Portal) -> None:
        self.service = service
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-portal", daemon=True)

    def start(self, timeout_s: float = 60.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise AssertionError("the portal did not start")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.service.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            await self.service.stop()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.service.stop()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@dataclass
class RunningPortal:
    """What page and API tests get from the `portal` fixture."""

    url: str
    settings: Settings
    readmodel: ReadModel
    topics: Topics
    service: Portal
    _producer: KafkaProducer

    def seed_case(
        self,
        customer_id: str = "acme",
        partner_id: str | None = "northwind-partners",
        *,
        case_id: str | None = None,
        title: str = "Web shop unreachable",
        description: str = "Our web shop has not answered since 09:00.",
        ticket: str | None = None,
        severity: Severity | None = None,
        source: CaseSource = CaseSource.PORTAL,
        server_id: str | None = None,
        steps: Sequence[Mapping[str, Any]] = (),
        at: datetime | None = None,
        wait: bool = True,
    ) -> CaseView:
        """Write a chained history for one case to the cases topic (as the engine would); its view.

        The case opens NEW (no severity, no ticket). With `ticket` (or `severity`) a `case.triaged` event
        follows (state triaged, severity default Sev2). Each step is a mapping with `type` (a CaseEventType
        value), and optionally `state`, `visibility` ("customer"/"internal"), `message`, `reason`,
        `details`, `actor`, `owner`, `severity`, `ticket`. Events are a minute apart from `at` (default:
        an hour ago).
        """
        case_id = case_id or f"prt-{uuid.uuid4().hex[:20]}"
        start = at or (SystemClock().now() - timedelta(hours=1))
        header: dict[str, Any] = {
            "case_id": case_id,
            "source": source,
            "customer_id": customer_id,
            "partner_id": partner_id,
            "server_id": server_id,
        }
        events: list[CaseEvent] = [
            CaseEvent(
                event_id=event_id_for(case_id, CaseEventType.CASE_OPENED),
                type=CaseEventType.CASE_OPENED,
                severity=None,
                at=start,
                actor="partner:seed",
                state=CaseState.NEW,
                reason="portal case opened; awaiting triage",
                details={"title": title, "message": description},
                **header,
            )
        ]
        current: dict[str, Any] = {"state": CaseState.NEW, "severity": None, "ticket": None, "owner": None}
        if ticket is not None or severity is not None:
            current.update(
                state=CaseState.TRIAGED,
                severity=severity or Severity.SEV2,
                ticket=ticket,
                owner="staff:sam",
            )
            events.append(
                CaseEvent(
                    event_id=event_id_for(case_id, CaseEventType.TRIAGED, "seed"),
                    type=CaseEventType.TRIAGED,
                    at=start + timedelta(minutes=1),
                    actor="staff:sam",
                    reason="triaged",
                    **current,
                    **header,
                )
            )
        for index, step in enumerate(steps):
            kind = CaseEventType(step["type"])
            for key in ("state", "severity", "ticket", "owner"):
                if key in step:
                    current[key] = step[key]
            details = dict(step.get("details") or {})
            if step.get("message"):
                details["message"] = step["message"]
            events.append(
                CaseEvent(
                    event_id=event_id_for(case_id, kind, f"seed-{index}"),
                    type=kind,
                    at=start + timedelta(minutes=2 + index),
                    actor=step.get("actor", "staff:sam"),
                    reason=step.get("reason", kind.value),
                    visibility=Visibility(step.get("visibility", "customer")),
                    details=details,
                    **current,
                    **header,
                )
            )
        previous = ""
        for seq, event in enumerate(events):
            placed = chained(event, seq, previous)
            previous = placed.hash
            self._producer.send(
                self.topics.cases, key=case_id.encode(), value=placed.model_dump_json().encode()
            )
        self._producer.flush(timeout=30)
        if not wait:
            return CaseView(case_id=case_id)

        def shown() -> CaseView | None:
            view = self.readmodel.get(case_id)
            return view if view is not None and len(view.timeline) >= len(events) else None

        return wait_for(shown, 30, f"the read model to show {case_id}")

    def _read(self, topic: str) -> list[bytes]:
        """Every value on `topic` up to its end offsets now (so a negative check sees everything sent)."""
        consumer = KafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False)
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            end = consumer.end_offsets(tps)
            values: list[bytes] = []

            def done() -> bool:
                for records in consumer.poll(timeout_ms=200).values():
                    values.extend(r.value for r in records if r.value is not None)
                return all(consumer.position(tp) >= end[tp] for tp in tps)

            wait_for(done, 30, f"reading {topic} to its end")
            return values
        finally:
            consumer.close()

    def commands(self) -> list[CaseCommand]:
        """Every case command on the test's case-commands topic so far."""
        return [CaseCommand.model_validate_json(v) for v in self._read(self.topics.case_commands)]

    def audit_events(self) -> list[PortalAuditEvent]:
        """Every portal audit event on the test's portal-audit topic so far."""
        return [PortalAuditEvent.model_validate_json(v) for v in self._read(self.topics.portal_audit)]

    def close(self) -> None:
        self._producer.close()


def portal_settings(kafka_bootstrap: str, topics: Topics, data_dir: Path, **extra: Any) -> Settings:
    """Settings of a test portal: test broker and topics, demo directory, port 0, http cookies."""
    values: dict[str, Any] = {
        "kafka_bootstrap": kafka_bootstrap,
        "topic_prefix": topics.prefix,
        "create_topics": False,
        "data_dir": data_dir,
        "partners_file": PARTNERS,
        "portal_host": "127.0.0.1",
        "portal_port": 0,
        "portal_secret": SECRET,
        "portal_secure_cookies": False,
        "clock_scale": 1.0,
    }
    return Settings(**{**values, **extra})


@pytest.fixture
def portal(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> Iterator[RunningPortal]:
    """A running portal on 127.0.0.1:<free port> over the test's topics (see the module docstring)."""
    service = Portal(portal_settings(kafka_bootstrap, topics, tmp_path / "data"))
    runner = _PortalThread(service)
    runner.start()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    running = RunningPortal(
        url=service.url,
        settings=service.settings.model_copy(update={"portal_port": service.port}),
        readmodel=service.readmodel,
        topics=topics,
        service=service,
        _producer=producer,
    )
    try:
        wait_for(service.readmodel.caught_up.is_set, 30, "the portal's read model to catch up")
        yield running
    finally:
        running.close()
        runner.stop()
