"""The case read side and staff CLI against the real broker: audit verify, list, show, and commands.

A chained case history is written straight to a test cases topic (keyed by case id, default partitioner,
like the engine). A small stand-in engine answers commands where a test needs an answer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from casefile.commands import await_answer, send_command
from casefile.reader import partition_for_case, read_events
from casefile.signing import Signer
from fleetwatch.cli import main
from schemas.cases import CaseEvent, CaseEventType, CaseState, chained
from schemas.commands import CaseCommand, CommandType
from schemas.topics import Topics
from tests.helpers import T0, TopicReader, fleetwatch_env, wait_for
from tests.unit.casefile.builders import SEED_B64, SIGNER, event, history

pytestmark = pytest.mark.integration


def write(bootstrap: str, topic: str, events: list[CaseEvent]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for item in events:
        producer.send(topic, key=item.case_id.encode(), value=item.model_dump_json().encode())
    producer.flush()
    producer.close()


def write_raw(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer.send(topic, key=key, value=value).get(timeout=30)
    producer.close()


@pytest.fixture
def env(kafka_bootstrap: str, topics: Topics, monkeypatch: pytest.MonkeyPatch) -> Topics:
    """The CLI's settings point at the test broker and this test's topics (as `fleetwatch_env` does)."""
    for key, value in fleetwatch_env(kafka_bootstrap=kafka_bootstrap, topic_prefix=topics.prefix).items():
        if key.startswith("FLEETWATCH_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("FLEETWATCH_AUDIT_SIGNING_KEY", SEED_B64)  # the key the test histories are signed with
    return topics


@pytest.fixture
def open_case(kafka_bootstrap: str, env: Topics) -> list[CaseEvent]:
    """Case stf-case1 (FW-100003), opened and being worked (3 events), plus a closed case FW-100004."""
    events = history()[:3]
    write(kafka_bootstrap, env.cases, [*events, *history(case_id="stf-case2", ticket="FW-100004")])
    return events


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def commands_on(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def test_audit_verify_ok_then_tampering_detected(
    kafka_bootstrap: str, env: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    events = history()
    write(kafka_bootstrap, env.cases, [*events, *history(case_id="stf-case2", ticket="FW-100004")])
    code, out, _ = run(capsys, "audit", "verify", "stf-case1")
    assert code == 0, out
    assert "stf-case1: OK, chain of 9 events intact and signed" in out
    code, out, _ = run(capsys, "audit", "verify", "fw-100003")  # by ticket too
    assert code == 0, out
    assert events[-1].hash in out

    forged = events[4].model_copy(update={"reason": "the customer never answered"})
    write(kafka_bootstrap, env.cases, [forged])
    code, out, _ = run(capsys, "audit", "verify", "FW-100003")
    assert code == 1, out
    assert "FAILED" in out
    assert f"seq 4 ({events[4].event_id}, case.waiting_on_customer): hash mismatch" in out
    assert "seq 4 holds 2 different events" in out

    code, out, _ = run(capsys, "audit", "verify", "--all")
    assert code == 1
    assert "stf-case2: OK" in out
    assert "stf-case1: FAILED" in out
    assert "1 chain(s) verified, 0 unsigned, 1 broken" in out


def test_undecodable_message_is_reported_not_fatal(
    kafka_bootstrap: str, env: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    events = history()
    write(kafka_bootstrap, env.cases, events)
    write_raw(kafka_bootstrap, env.cases, b"stf-case1", b'{"not": "an event"}')
    result = read_events(kafka_bootstrap, env.cases, case_id="stf-case1")
    assert result.events == events
    assert len(result.problems) == 1
    assert f"partition {partition_for_case('stf-case1', 4)}" in result.problems[0]
    assert "not a case event" in result.problems[0]
    code, out, err = run(capsys, "case", "list", "--all")
    assert code == 0
    assert "FW-100003" in out
    assert "warning: skipped" in err
    code, out, _ = run(capsys, "audit", "verify", "stf-case1")
    assert code == 1
    assert "not a case event" in out


def test_list_and_show(
    kafka_bootstrap: str, open_case: list[CaseEvent], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "case", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ticket", "sev", "state"]
    assert len(lines) == 2  # the closed case is hidden by default
    assert lines[1].split()[:6] == ["FW-100003", "Sev2", "working", "acme", "web-1", "bob"]
    code, out, _ = run(capsys, "case", "list", "--all", "--json")
    assert code == 0
    assert sorted(item["ticket"] for item in json.loads(out)) == ["FW-100003", "FW-100004"]

    code, out, _ = run(capsys, "case", "show", "FW-100003")
    assert code == 0
    assert "web-1 answers 500" in out
    assert "case.customer_update" in out
    assert "looking at the logs" in out
    code, out, _ = run(capsys, "case", "show", "stf-case1", "--json")
    assert code == 0
    shown = json.loads(out)
    assert [e["hash"] for e in shown["timeline"]] == [e.hash for e in open_case]

    code, _, err = run(capsys, "case", "show", "FW-999999")
    assert code == 2
    assert "no case or ticket 'FW-999999'" in err


def test_ack_no_wait_puts_the_command_on_case_commands(
    kafka_bootstrap: str, env: Topics, open_case: list[CaseEvent], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "case", "ack", "FW-100003", "--no-wait")
    assert code == 0, out
    assert "sent start_work for FW-100003" in out
    reader = TopicReader(kafka_bootstrap, env.case_commands)
    try:
        messages = wait_for(reader.poll, 30, "the command on case-commands")
    finally:
        reader.close()
    assert len(messages) == 1
    key, value = messages[0]
    assert key == b"stf-case1"
    assert value is not None
    command = CaseCommand.model_validate_json(value)
    assert command.type is CommandType.START_WORK
    assert command.case_id == "stf-case1"
    assert command.actor == "staff:alice"
    assert command.command_id in out
    assert command.at.year >= 2026  # the runtime clock (wall time at scale 1), not T0


def test_unknown_case_sends_nothing(
    kafka_bootstrap: str, open_case: list[CaseEvent], env: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "case", "resolve", "FW-424242", "-m", "x", "--no-wait")
    assert code == 2
    assert "no case or ticket 'FW-424242'" in err
    assert "nothing sent" in err
    assert commands_on(kafka_bootstrap, env.case_commands) == 0


class StandInEngine(threading.Thread):
    """Answers each command on case-commands with one chained event (or a rejection), like the engine."""

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        history_: list[CaseEvent],
        reject: str = "",
        signer: Signer | None = SIGNER,
    ) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topics, self.chain, self.reject = bootstrap, topics, list(history_), reject
        self.signer = signer
        self.stopping = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        tps = [TopicPartition(self.topics.case_commands, p) for p in range(4)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        self.ready.set()
        try:
            while not self.stopping.is_set():
                for records in consumer.poll(timeout_ms=100).values():
                    for record in records:
                        self.answer(CaseCommand.model_validate_json(record.value))
        finally:
            consumer.close()

    def answer(self, command: CaseCommand) -> None:
        last = self.chain[-1]
        if self.reject:
            kind, state, reason = CaseEventType.COMMAND_REJECTED, last.state, self.reject
        else:
            kind, state, reason = CaseEventType.WORK_STARTED, CaseState.WORKING, command.reason
        answer = event(kind, 200, state, discriminator=command.command_id, reason=reason)
        answer = chained(
            answer.model_copy(update={"command_id": command.command_id}), last.seq + 1, last.hash
        )
        answer = self.signer.sign(answer) if self.signer is not None else answer
        self.chain.append(answer)
        write(self.bootstrap, self.topics.cases, [answer])


@pytest.fixture
def engine_factory(kafka_bootstrap: str, env: Topics) -> Iterator[type[StandInEngine]]:
    started: list[StandInEngine] = []

    class Engine(StandInEngine):
        def start(self) -> None:
            started.append(self)
            super().start()
            assert self.ready.wait(30)

    yield Engine
    for engine in started:
        engine.stopping.set()
        engine.join(timeout=30)


def test_write_waits_for_the_engine_answer(
    kafka_bootstrap: str,
    env: Topics,
    open_case: list[CaseEvent],
    engine_factory: type[StandInEngine],
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine_factory(kafka_bootstrap, env, open_case).start()
    code, out, _ = run(capsys, "case", "ack", "FW-100003", "--as", "bob")
    assert code == 0, out
    assert "accepted: case.work_started; FW-100003 is working, Sev2" in out
    code, out, _ = run(capsys, "audit", "verify", "FW-100003")
    assert code == 0, out  # the stand-in's answer extends the chain properly


def test_rejected_write_exits_1(
    kafka_bootstrap: str,
    env: Topics,
    open_case: list[CaseEvent],
    engine_factory: type[StandInEngine],
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine_factory(kafka_bootstrap, env, open_case, reject="a case being worked cannot be closed").start()
    code, out, _ = run(capsys, "case", "close", "stf-case1")
    assert code == 1, out
    assert "rejected: a case being worked cannot be closed" in out


def test_no_answer_exits_3(
    kafka_bootstrap: str, env: Topics, open_case: list[CaseEvent], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "case", "note", "FW-100003", "-m", "hello?", "--timeout", "1")
    assert code == 3, out
    assert "no answer from the case engine within 1 s" in out
    assert commands_on(kafka_bootstrap, env.case_commands) == 1


def test_await_answer_finds_an_answer_written_before_the_wait(kafka_bootstrap: str, env: Topics) -> None:
    """Reading from the offset noted before sending: an engine faster than the waiter is not missed."""
    events = history()[:2]
    write(kafka_bootstrap, env.cases, events)
    command = CaseCommand(
        command_id="cmd-1", case_id="stf-case1", type=CommandType.NOTE, at=T0, actor="staff:x", message="m"
    )
    partition, _ = send_command(kafka_bootstrap, env.case_commands, command)
    assert partition == partition_for_case("stf-case1", 4)
    note = event(CaseEventType.NOTE, 9, CaseState.WORKING, reason="m").model_copy(
        update={"command_id": "cmd-1"}
    )
    other = event(CaseEventType.NOTE, 8, CaseState.WORKING).model_copy(update={"command_id": "cmd-0"})
    answer_events = [chained(other, 2, events[1].hash)]
    answer_events.append(chained(note, 3, answer_events[0].hash))
    write(kafka_bootstrap, env.cases, answer_events)
    answer = await_answer(kafka_bootstrap, env.cases, command, timeout=30, since=0)
    assert [e.command_id for e in answer.events] == ["cmd-1"]
    assert answer.rejected is None
    empty = await_answer(kafka_bootstrap, env.cases, command, timeout=1, since=4)
    assert not empty.answered


def write_to(bootstrap: str, topic: str, partition: int, item: CaseEvent) -> None:
    """A raw producer putting a copy where the engine never would (kcat's default partitioner does)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    key, value = item.case_id.encode(), item.model_dump_json().encode()
    producer.send(topic, key=key, value=value, partition=partition).get(timeout=30)
    producer.close()


def test_forged_copy_in_another_partition_fails_by_ticket_and_all_and_show_marks_it(
    kafka_bootstrap: str, env: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    """A forged event produced to a partition other than the case's: every lookup reads every partition and
    gives the same verdict; `case show` says the chain is broken and does not fold the forgery in."""
    events = history()[:8]  # resolved
    write(kafka_bootstrap, env.cases, [*events, *history(case_id="stf-case2", ticket="FW-100004")])
    home = partition_for_case("stf-case1", 4)
    forged = chained(
        event(CaseEventType.CLOSED, 300, CaseState.CLOSED, reason="customer withdrew the complaint"),
        8,
        events[-1].hash,
    )
    write_to(kafka_bootstrap, env.cases, (home + 1) % 4, forged)

    for ref in ("FW-100003", "stf-case1"):
        code, out, _ = run(capsys, "audit", "verify", ref)
        assert code == 1, out
        assert "stf-case1: FAILED" in out
        assert f"found in partition {(home + 1) % 4}" in out
    code, out, _ = run(capsys, "audit", "verify", "--all")
    assert code == 1
    assert "stf-case1: FAILED" in out
    assert "stf-case2: OK" in out

    code, out, _ = run(capsys, "case", "show", "FW-100003")
    assert code == 0, out
    assert out.startswith("chain:     BROKEN")
    assert "NOT verified" in out
    assert "customer withdrew the complaint" not in out.split("\n\n", 1)[1]  # not in the timeline
    header = next(line for line in out.splitlines() if line.startswith("FW-100003"))
    assert header.endswith("Sev2  resolved")  # the forged close is not folded in
    code, out, _ = run(capsys, "case", "show", "FW-100003", "--json")
    shown = json.loads(out)
    assert shown["state"] == "resolved"
    assert shown["chain"]["status"] == "broken"

    code, out, _ = run(capsys, "case", "show", "FW-100004")
    assert out.startswith("chain:     verified")


def test_appended_rehashed_event_without_the_key_fails(
    kafka_bootstrap: str, env: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    """An event appended to the case's own partition with the right prev_hash and a fresh hash passed before
    events were signed; without the engine's key it fails now."""
    events = history()[:8]
    write(kafka_bootstrap, env.cases, events)
    appended = chained(
        event(CaseEventType.REOPENED, 300, CaseState.WORKING, reason="reopened"), 8, events[-1].hash
    )
    write(kafka_bootstrap, env.cases, [appended])
    code, out, _ = run(capsys, "audit", "verify", "FW-100003")
    assert code == 1, out
    assert "unsigned, but the chain is signed from seq 0" in out
    code, out, _ = run(capsys, "case", "show", "FW-100003")
    assert out.startswith("chain:     BROKEN")
    assert any(line.startswith("!") and "case.reopened" in line for line in out.splitlines())


def test_unsigned_legacy_chain_needs_allow_unsigned(
    kafka_bootstrap: str, env: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    write(kafka_bootstrap, env.cases, history(signer=None))
    code, out, _ = run(capsys, "audit", "verify", "FW-100003")
    assert code == 1, out
    assert "UNSIGNED, chain of 9 events intact but 9 unsigned" in out
    code, out, _ = run(capsys, "audit", "verify", "FW-100003", "--allow-unsigned")
    assert code == 0, out
    code, out, _ = run(capsys, "audit", "keys")
    assert code == 0
    assert json.loads(out)["keys"][0]["key_id"] == SIGNER.key_id


def test_an_answer_not_signed_by_the_engine_is_flagged(
    kafka_bootstrap: str,
    env: Topics,
    open_case: list[CaseEvent],
    engine_factory: type[StandInEngine],
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine_factory(kafka_bootstrap, env, open_case, signer=None).start()
    code, out, err = run(capsys, "case", "ack", "FW-100003", "--as", "bob")
    assert code == 0, out
    assert "warning: answer seq 3 (case.work_started) is not verified: it is unsigned" in err
