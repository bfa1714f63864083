"""The support policy end to end on a scaled clock: a monitor Sev1's pages, escalation and hourly updates.

Real parts: the Kafka broker, `fleetwatch stream` (detector + case engine + deadline timer) and
`fleetwatch notify` as child processes, an SMTP server (aiosmtpd) and a webhook receiver on 127.0.0.1.
The policy clock runs at SCALE x (one policy hour = 3600 / SCALE real seconds), shared by every process.

Scenario: two acme servers go down. db-01's Sev1 is never worked; db-02's is acknowledged by staff at 1 h.
Half an hour in, both the stream worker and the notifier are killed with SIGKILL and restarted. Then:
the Operations Manager was paged once per case and acme's technical staff emailed; at 2:00 db-01's VP of
Operations page and the customer call happen exactly once (none for db-02); db-01's status notices arrive at
2 h, 3 h and 4 h; every requested notification was delivered, none twice; the case's hash chain holds.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from casefile.audit import verify_chain
from casefile.commands import send_command
from casefile.signing import load_keyring
from fleetcore.settings import Settings
from fleetwatch.kafka_local import free_port
from fleetwatch.mailcatcher import MailCatcher
from fleetwatch.webhook_catcher import WebhookCatcher
from schemas.cases import CaseEvent, CaseEventType
from schemas.commands import CaseCommand, CommandType
from schemas.topics import Topics
from tests.helpers import TopicReader, fleetwatch_env, result, send_results, spawn, stop, wait_for

pytestmark = pytest.mark.integration

SCALE = 300.0
"""Policy seconds per real second: one policy hour every 12 real seconds."""
HOUR = timedelta(hours=1)
TOLERANCE = timedelta(minutes=20)
"""How late (policy time) a timed action may be: timer interval, engine and broker latency on a busy box."""
CONTACTS = Path(__file__).resolve().parents[3] / "examples" / "contacts.yaml"
OPS_MANAGER_KEY, VP_KEY = "demo-routing-ops-manager", "demo-routing-vp-operations"


class Stack:
    """The stream worker and the notifier of one test, with the catchers they deliver to."""

    def __init__(self, bootstrap: str, topics: Topics, tmp: Path) -> None:
        self.bootstrap, self.topics, self.tmp = bootstrap, topics, tmp
        self.mail = MailCatcher(tmp / "mail").start()
        self.hooks = WebhookCatcher(path=tmp / "hooks.jsonl").start()
        self.env = fleetwatch_env(
            kafka_bootstrap=bootstrap,
            topic_prefix=topics.prefix,
            data_dir=tmp,
            log_level="INFO",
            stream_web_port=free_port(),
            stream_metrics_port=0,
            notify_metrics_port=0,
            clock_scale=SCALE,
            clock_origin_ms=int(time.time() * 1000),
            timer_interval_s=0.1,
            contacts_file=CONTACTS,
            smtp_port=self.mail.port,
            pager_url=self.hooks.pager_url,
            call_url=self.hooks.call_url,
            notify_backoff_s=0.2,
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        self.procs[name] = spawn([name], self.env, self.tmp / f"{name}.log")

    def kill(self, name: str) -> None:
        stop(self.procs[name], kill=True)

    def alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited:\n{self.log_tail(name)}"

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.tmp / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def ready_count(self) -> int:
        path = self.tmp / "stream.log"
        return path.read_text(errors="replace").count("[^Worker]: Ready") if path.exists() else 0

    def close(self) -> None:
        for proc in self.procs.values():
            stop(proc)
        self.hooks.stop()
        self.mail.stop()


@pytest.fixture
def stack(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(kafka_bootstrap, topics, tmp_path)
    yield s
    s.close()


def events_of(reader: TopicReader) -> list[CaseEvent]:
    """Every case event so far, identical re-emissions (same event id) kept once."""
    seen: dict[str, CaseEvent] = {}
    for _, value in reader.poll():
        if value is not None:
            event = CaseEvent.model_validate_json(value)
            seen.setdefault(event.event_id, event)
    return list(seen.values())


def of_case(events: list[CaseEvent], case_id: str, type_: CaseEventType) -> list[CaseEvent]:
    return [e for e in events if e.case_id == case_id and e.type is type_]


def test_monitor_sev1_pages_escalates_and_updates_on_time_through_crashes(
    stack: Stack, kafka_bootstrap: str, topics: Topics
) -> None:
    stack.start("stream")
    stack.start("notify")
    wait_for(lambda: stack.ready_count() >= 1, 90, "the stream worker")
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    failures = [
        result(s, n, ok=False, customer_id="acme", t0=t0) for s in ("db-01", "db-02") for n in range(10)
    ]
    send_results(kafka_bootstrap, topics.probe_results, failures)
    cases = TopicReader(kafka_bootstrap, topics.cases)

    def opened() -> dict[str, CaseEvent]:
        stack.alive()
        found = {e.server_id: e for e in events_of(cases) if e.type is CaseEventType.CASE_OPENED}
        return found if len(found) == 2 else {}

    by_server = wait_for(opened, 60, "both Sev1 cases to open")
    first, second = by_server["db-01"], by_server["db-02"]
    assert first.ticket is not None
    assert second.ticket not in (None, first.ticket)
    assert first.severity == 1
    t_open = first.at

    def policy_now() -> datetime:
        return t_open + (datetime.now(UTC) - wall_open) * SCALE

    wall_open = datetime.now(UTC)
    # the Operations Manager is paged at once (one page per case)
    wait_for(lambda: len(stack.hooks.records("page")) >= 2, 30, "the Operations Manager's pages")

    # half an hour in: kill -9 both workers, restart them
    wait_for(lambda: policy_now() >= t_open + HOUR / 2, 30, "half an hour of policy time")
    stack.kill("stream")
    stack.kill("notify")
    stack.start("stream")
    stack.start("notify")
    wait_for(
        lambda: stack.ready_count() >= 2, 90, f"the restarted stream worker:\n{stack.log_tail('stream')}"
    )

    # staff acknowledge db-02's case at 1 h
    wait_for(lambda: policy_now() >= t_open + HOUR, 60, "one hour of policy time")
    ack = CaseCommand(
        command_id="test-ack-db-02",
        case_id=second.case_id,
        type=CommandType.START_WORK,
        at=policy_now(),
        actor="staff:test",
        reason="on it",
    )
    send_command(kafka_bootstrap, topics.case_commands, ack)

    # run until db-01's third status notice (due at 4 h) is out, then let deliveries settle
    def third_notice() -> bool:
        stack.alive()
        return len(of_case(events_of(cases), first.case_id, CaseEventType.STATUS_NOTICE)) >= 3

    wait_for(third_notice, 120, "db-01's status notices at 2, 3 and 4 h")
    events = events_of(cases)

    def settled() -> bool:
        requested = {
            e.details["key"] for e in events_of(cases) if e.type is CaseEventType.NOTIFICATION_REQUESTED
        }
        done = {
            e.details["key"]
            for e in events_of(cases)
            if e.type in (CaseEventType.NOTIFICATION_SENT, CaseEventType.NOTIFICATION_FAILED)
        }
        return requested <= done

    wait_for(settled, 60, "every requested notification to be delivered")
    events = events_of(cases)

    # -- the case timeline ---------------------------------------------------------------------------
    assert len([e for e in events if e.type is CaseEventType.CASE_OPENED]) == 2
    assert of_case(events, second.case_id, CaseEventType.WORK_STARTED)
    breaches = of_case(events, first.case_id, CaseEventType.SLA_BREACHED)
    work_breaches = [e for e in breaches if e.details.get("clock") == "sev1.work"]
    assert len(work_breaches) == 1, breaches
    assert t_open + 2 * HOUR <= work_breaches[0].at <= t_open + 2 * HOUR + TOLERANCE
    assert not [
        e
        for e in of_case(events, second.case_id, CaseEventType.SLA_BREACHED)
        if e.details.get("clock") == "sev1.work"
    ]
    notices = sorted(of_case(events, first.case_id, CaseEventType.STATUS_NOTICE), key=lambda e: e.at)
    for hours, notice in zip((2, 3, 4), notices, strict=False):
        due = t_open + hours * HOUR
        assert due <= notice.at <= due + TOLERANCE, (hours, notice.at - t_open)
    chain = [e for e in events if e.case_id == first.case_id]
    keys = load_keyring(Settings(data_dir=stack.tmp))  # the key the engine generated in its data_dir
    report = verify_chain(sorted(chain, key=lambda e: e.seq), keys=keys)
    assert report.verified, report.problems

    # -- deliveries: each once, none missed ----------------------------------------------------------
    pages = stack.hooks.records("page")
    page_keys = Counter((p["dedup_key"], p["routing_key"]) for p in pages)
    assert all(n == 1 for n in page_keys.values()), page_keys
    ops_pages = [k for k, _ in page_keys if _ == OPS_MANAGER_KEY]
    assert sorted(ops_pages) == sorted(
        f"{c}:case.opened:operations_manager:page" for c in (first.case_id, second.case_id)
    )
    vp_pages = [k for k, rk in page_keys if rk == VP_KEY]
    assert len(vp_pages) == 1
    assert vp_pages[0].startswith(first.case_id)
    calls = stack.hooks.records("call")
    assert len(calls) == 1
    assert calls[0]["case_id"] == first.case_id
    mails = Counter((str(m["X-Fleetwatch-Key"]).strip(), str(m["To"])) for m in stack.mail.messages)
    assert all(n == 1 for n in mails.values()), [k for k, n in mails.items() if n > 1]
    acme_mail = [k for k, to in mails if "it-ops@acme.example" in to and k.startswith(first.case_id)]
    assert any(":case.opened:customer_technical:" in k for k in acme_mail)
    assert len([k for k in acme_mail if ":status.notice:" in k]) >= 3
    requested = {e.details["key"] for e in events if e.type is CaseEventType.NOTIFICATION_REQUESTED}
    delivered = {k for k, _ in page_keys} | {k for k, _ in mails} | {c["key"] for c in calls}
    missing = {k for k in requested if k not in delivered}
    assert not missing, missing
    cases.close()
