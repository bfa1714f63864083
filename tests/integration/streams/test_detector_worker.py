"""The Faust stream worker against the real broker: 10 in a row opens exactly one Sev1 case."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwatch.kafka_local import free_port
from schemas.cases import CaseEvent
from schemas.topics import Topics
from tests.helpers import TopicReader, fleetwatch_env, result, send_raw, send_results, spawn, stop, wait_for

pytestmark = pytest.mark.integration


class StreamWorker:
    """A `fleetwatch stream` child process for one test."""

    def __init__(self, bootstrap: str, topics: Topics, tmp: Path) -> None:
        self.env = fleetwatch_env(
            kafka_bootstrap=bootstrap,
            topic_prefix=topics.prefix,
            data_dir=tmp,
            stream_web_port=free_port(),
            stream_metrics_port=0,
            log_level="INFO",
        )
        self.log = tmp / "stream.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = spawn(["stream"], self.env, self.log)

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None:
            stop(self.proc, kill=kill)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def ready_count(self) -> int:
        """How many times a worker writing to this log has said it is ready (after recovery)."""
        return self.log.read_text(errors="replace").count("[^Worker]: Ready") if self.log.exists() else 0


@pytest.fixture
def worker(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> Iterator[StreamWorker]:
    w = StreamWorker(kafka_bootstrap, topics, tmp_path)
    w.start()
    yield w
    w.stop()


def case_events(reader: TopicReader) -> list[CaseEvent]:
    return [CaseEvent.model_validate_json(v) for _, v in reader.poll() if v is not None]


def changelog_failures(reader: TopicReader, server_id: str) -> int:
    counts = [json.loads(v)["failures"] for k, v in reader.poll() if k and json.loads(k) == server_id and v]
    return counts[-1] if counts else 0


def test_tenth_failure_opens_one_case_and_success_recovers(
    worker: StreamWorker, kafka_bootstrap: str, topics: Topics
) -> None:
    # the inventory names the customer's partner: the probe worker copies it onto the results
    down = [result("srv-down", n, ok=False).model_copy(update={"partner_id": "isp-1"}) for n in range(12)]
    healthy = [result(f"srv-ok-{i}", n, ok=True) for i in range(2) for n in range(12)]
    send_results(kafka_bootstrap, topics.probe_results, down[:9] + healthy)
    reader = TopicReader(kafka_bootstrap, topics.cases)
    send_results(kafka_bootstrap, topics.probe_results, [*down[9:], result("srv-down", 12, ok=True)])
    milestones = ("case.opened", "server.recovered")

    def seen() -> list[CaseEvent]:
        return [e for e in case_events(reader) if e.type.value in milestones]

    events = wait_for(lambda: len(seen()) >= 2 and seen(), 90, "case events")
    assert [e.type.value for e in events] == list(milestones), [e.type.value for e in case_events(reader)]
    opened = events[0]
    assert opened.severity == 1
    assert opened.source.value == "monitor"
    assert opened.server_id == "srv-down"
    assert opened.partner_id == "isp-1"  # the cases report and the portal see the partner's case
    assert opened.details["probe_started_at"] == down[9].started_at.isoformat()  # exactly the 10th failure
    assert events[1].case_id == opened.case_id
    assert not [e for e in case_events(reader) if e.type.value == "command.rejected"]
    reader.close()


def test_malformed_message_goes_to_dead_letter_and_pipeline_goes_on(
    worker: StreamWorker, kafka_bootstrap: str, topics: Topics
) -> None:
    send_raw(kafka_bootstrap, topics.probe_results, b"{not json", partition=0)
    bad_item = b'{"batch_id":"x","worker_id":"w","partition":1,"results":[{"server_id":"s"}]}'
    send_raw(kafka_bootstrap, topics.probe_results, bad_item, partition=1)
    send_results(kafka_bootstrap, topics.probe_results, [result("srv-x", n, ok=False) for n in range(10)])
    dlq = TopicReader(kafka_bootstrap, topics.dead_letter)
    letters = wait_for(lambda: len(dlq.poll()) >= 2 and dlq.messages, 90, "dead letters")
    reasons = sorted(json.loads(v)["reason"] for _, v in letters if v)
    assert any(r.startswith("not JSON") for r in reasons)
    assert any(r.startswith("invalid ProbeResult") for r in reasons)
    cases = TopicReader(kafka_bootstrap, topics.cases)
    opened = wait_for(lambda: case_events(cases), 90, "case after bad input")
    assert opened[0].server_id == "srv-x"
    assert opened[0].type.value == "case.opened"
    dlq.close()
    cases.close()


def test_kill_after_sixth_failure_still_opens_exactly_once(
    worker: StreamWorker, kafka_bootstrap: str, topics: Topics
) -> None:
    fails = [result("srv-crash", n, ok=False) for n in range(10)]
    send_results(kafka_bootstrap, topics.probe_results, fails[:6])
    changelog = TopicReader(kafka_bootstrap, f"{topics.prefix}stream-streaks-changelog")
    wait_for(lambda: changelog_failures(changelog, "srv-crash") == 6, 90, "6 failures in the changelog")
    changelog.close()
    worker.stop(kill=True)
    worker.start()
    wait_for(lambda: worker.ready_count() >= 2, 120, f"the restarted worker to recover:\n{worker.log_tail()}")
    send_results(kafka_bootstrap, topics.probe_results, fails[6:])
    # a success afterwards gives a sentinel: its recovery event comes after any duplicate case.opened
    send_results(kafka_bootstrap, topics.probe_results, [result("srv-crash", 10, ok=True)])
    reader = TopicReader(kafka_bootstrap, topics.cases)

    def recovered() -> bool:
        assert worker.proc is not None
        assert worker.proc.poll() is None, worker.log_tail()
        return any(e.type.value == "server.recovered" for e in case_events(reader))

    try:
        wait_for(recovered, 120, "recovery")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; events {case_events(reader)}; stream log:\n{worker.log_tail()}"
        ) from exc
    events = case_events(reader)
    opened = [e for e in events if e.type.value == "case.opened"]
    assert len(opened) == 1
    assert opened[0].details["probe_started_at"] == fails[9].started_at.isoformat()
    reader.close()
