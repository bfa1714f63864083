"""`fleetwatch case ...` / `audit verify` without Kafka: parsing, the commands built, list and show output."""

from __future__ import annotations

import argparse
from datetime import timedelta

import pytest

from casefile.view import fold
from fleetwatch.cli import build_parser, main
from fleetwatch.cli_case import (
    BadCommand,
    actor_of,
    age,
    build_command,
    new_case_id,
    render_list,
    render_show,
    select,
)
from schemas.cases import CaseSource, Severity
from schemas.commands import CommandType
from tests.helpers import T0
from tests.unit.casefile.builders import history


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def command_for(*argv: str) -> tuple[argparse.Namespace, CommandType]:
    args = parse("case", *argv)
    cmd = build_command(args, "stf-case1", "staff:alice", T0)
    assert cmd.case_id == "stf-case1"
    assert cmd.actor == "staff:alice"
    assert cmd.at == T0
    return args, cmd.type


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("triage", "FW-1", "--severity", "2"), CommandType.TRIAGE),
        (("assign", "FW-1", "bob"), CommandType.ASSIGN),
        (("ack", "FW-1"), CommandType.START_WORK),
        (("update", "FW-1", "-m", "on it"), CommandType.POST_UPDATE),
        (("wait", "FW-1"), CommandType.WAIT_ON_CUSTOMER),
        (("reply", "FW-1", "-m", "here is the file"), CommandType.CUSTOMER_REPLIED),
        (("note", "FW-1", "-m", "called"), CommandType.NOTE),
        (("severity", "FW-1", "1"), CommandType.CHANGE_SEVERITY),
        (("resolve", "FW-1"), CommandType.RESOLVE),
        (("close", "FW-1"), CommandType.CLOSE),
        (("reopen", "FW-1", "-m", "again"), CommandType.REOPEN),
    ],
)
def test_each_verb_sends_its_command(argv: tuple[str, ...], expected: CommandType) -> None:
    args, kind = command_for(*argv)
    assert kind is expected
    assert args.case == "FW-1"
    assert args.no_wait is False
    assert args.timeout == 15.0


def test_fields_of_the_commands() -> None:
    cmd = build_command(parse("case", "triage", "x", "--severity", "2", "--owner", "bob"), "c", "a", T0)
    assert (cmd.severity, cmd.owner) == (Severity.SEV2, "bob")
    cmd = build_command(parse("case", "assign", "x", "carol"), "c", "a", T0)
    assert cmd.owner == "carol"
    cmd = build_command(parse("case", "update", "x", "-m", "restarted the service"), "c", "a", T0)
    assert (cmd.message, cmd.reason) == ("restarted the service", "")
    cmd = build_command(parse("case", "resolve", "x", "-m", "fixed"), "c", "a", T0)
    assert (cmd.reason, cmd.message) == ("fixed", "")
    cmd = build_command(parse("case", "severity", "x", "3"), "c", "a", T0)
    assert cmd.severity is Severity.SEV3
    one = build_command(parse("case", "ack", "x"), "c", "a", T0)
    two = build_command(parse("case", "ack", "x"), "c", "a", T0)
    assert one.command_id != two.command_id  # uuid4 per command


def test_open_command() -> None:
    args = parse(
        "case", "open", "--customer", "acme", "--severity", "1", "--title", "all down", "--server", "web-1"
    )
    cmd = build_command(args, new_case_id(), "staff:alice", T0)
    assert cmd.type is CommandType.OPEN
    assert cmd.case_id.startswith("stf-")
    assert cmd.source is CaseSource.STAFF
    assert (cmd.customer_id, cmd.severity, cmd.title, cmd.server_id, cmd.partner_id) == (
        "acme",
        Severity.SEV1,
        "all down",
        "web-1",
        None,
    )


def test_bad_fields_are_a_clear_error() -> None:
    args = parse("case", "open", "--customer", "not a valid id!", "--severity", "2", "--title", "t")
    with pytest.raises(BadCommand, match="customer_id"):
        build_command(args, "c", "a", T0)


def test_bad_command_lines_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["case", "open", "--customer", "acme", "--severity", "2"],  # no title
        ["case", "severity", "FW-1", "4"],
        ["case", "update", "FW-1"],  # no -m
        ["case", "frobnicate", "FW-1"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    capsys.readouterr()


def test_audit_verify_needs_a_case_or_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse("audit", "verify", "--all").case is None
    assert parse("audit", "verify", "FW-100003").case == "FW-100003"
    assert main(["audit", "verify", "--bootstrap", "127.0.0.1:1"]) == 2
    assert "--all" in capsys.readouterr().err


def test_actor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "dora")
    assert actor_of(None) == "staff:dora"
    assert actor_of("alice") == "staff:alice"
    assert parse("case", "ack", "x", "--as", "alice").as_name == "alice"
    monkeypatch.delenv("USER")
    assert actor_of(None) == "staff:unknown"


def test_age() -> None:
    assert age(timedelta(seconds=42)) == "42s"
    assert age(timedelta(minutes=17, seconds=5)) == "17m"
    assert age(timedelta(hours=3, minutes=5)) == "3h05m"
    assert age(timedelta(days=2, hours=4, minutes=59)) == "2d04h"
    assert age(timedelta(seconds=-5)) == "0s"


def _views() -> list:  # type: ignore[type-arg]
    closed = history()
    open_sev2 = history(case_id="stf-2", ticket="FW-100004")[:3]
    open_sev1 = [
        e.model_copy(update={"severity": Severity.SEV1, "customer_id": "zeta"})
        for e in history(case_id="stf-3", ticket="FW-100005")[:2]
    ]
    return list(fold([*closed, *open_sev2, *open_sev1]).values())


def test_list_selects_open_cases_sev1_first() -> None:
    views = _views()
    picked = select(views, parse("case", "list"))
    assert [v.ticket for v in picked] == ["FW-100005", "FW-100004"]
    assert [v.ticket for v in select(views, parse("case", "list", "--all"))] == [
        "FW-100005",
        "FW-100003",
        "FW-100004",
    ]
    assert [v.ticket for v in select(views, parse("case", "list", "--state", "closed"))] == ["FW-100003"]
    assert [v.ticket for v in select(views, parse("case", "list", "--customer", "zeta"))] == ["FW-100005"]
    assert [v.ticket for v in select(views, parse("case", "list", "--severity", "2"))] == ["FW-100004"]


def test_render_list_and_show() -> None:
    views = _views()
    text = render_list(select(views, parse("case", "list")), T0 + timedelta(hours=2))
    lines = text.splitlines()
    assert lines[0].split() == ["ticket", "sev", "state", "customer", "server", "owner", "age", "title"]
    assert lines[1].split()[:7] == ["FW-100005", "Sev1", "working", "zeta", "web-1", "bob", "2h00m"]
    assert "web-1 answers 500" in lines[1]
    assert render_list([], T0) == "no cases"
    shown = render_show(views[0])
    assert "FW-100003" in shown
    assert "stf-case1" in shown
    assert "closed" in shown
    assert "SLA breaches: resolution" in shown
    assert "case.waiting_on_customer" in shown
    assert "need the config file" in shown
    assert "internal" in shown
    note = history()[3].model_copy(update={"details": {"message": "customer says it is back"}})
    shown = render_show(fold([*history()[:3], note]).popitem()[1])
    assert "called the customer | customer says it is back" in shown
