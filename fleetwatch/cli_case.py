"""`fleetwatch case ...` and `fleetwatch audit verify`: the staff side of the case topic.

Reads fold the case topic into case views (`casefile.view`); writes send one `CaseCommand` (actor
`staff:<name>`, a uuid4 command id, the runtime clock's time) to the case engine and wait for its answer on
the case topic. Exit codes: 0 done / accepted / chain verified, 1 rejected / chain broken or unsigned (see
`--allow-unsigned`), 2 bad input or an unknown case (nothing sent), 3 no answer from the engine in time.

One read path for a case, whether named by id or by ticket: the whole case topic (`casefile.reader.read_log`,
every partition). A case's view is folded from its own partition only; `case show` and `audit verify` run the
same check (`casefile.audit.verify_located`, signatures against `casefile.signing.load_keyring`), so they
give the same verdict, and `case show` says plainly when the history it prints is not verified.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from casefile.audit import AuditReport, ChainStatus
from casefile.view import CaseView, age, clock_of, fold

if TYPE_CHECKING:
    from casefile.reader import CaseLog
    from casefile.signing import Keyring
from fleetcore.errors import FleetwatchError
from fleetcore.settings import Settings
from schemas.cases import CaseEvent, CaseSource, CaseState, Severity
from schemas.commands import CaseCommand, CommandType
from schemas.topics import Topics

EXIT_REJECTED = 1
EXIT_NO_ANSWER = 3
DEFAULT_WAIT_S = 15.0

SettingsOf = Callable[[argparse.Namespace], Settings]
AddCommon = Callable[[argparse.ArgumentParser], None]


class UnknownCase(FleetwatchError):
    """No case with that id or ticket is on the case topic."""


class BadCommand(FleetwatchError):
    """The command's fields do not fit its contract (nothing was sent)."""


WRITES: dict[str, CommandType] = {
    "open": CommandType.OPEN,
    "triage": CommandType.TRIAGE,
    "assign": CommandType.ASSIGN,
    "ack": CommandType.START_WORK,
    "update": CommandType.POST_UPDATE,
    "wait": CommandType.WAIT_ON_CUSTOMER,
    "reply": CommandType.CUSTOMER_REPLIED,
    "note": CommandType.NOTE,
    "severity": CommandType.CHANGE_SEVERITY,
    "resolve": CommandType.RESOLVE,
    "close": CommandType.CLOSE,
    "reopen": CommandType.REOPEN,
}
"""CLI verb -> the command it sends."""

_MESSAGE_IS_TEXT = {CommandType.POST_UPDATE, CommandType.NOTE, CommandType.CUSTOMER_REPLIED}
"""Commands whose -m goes into `message` (the text); for the others -m is the `reason`."""


# -- pure helpers (tested without Kafka) ------------------------------------------------------------


def actor_of(name: str | None) -> str:
    """`staff:<name>`: the --as name, else $USER."""
    return f"staff:{name or os.environ.get('USER') or 'unknown'}"


def build_command(args: argparse.Namespace, case_id: str, actor: str, at: datetime) -> CaseCommand:
    """The CaseCommand a parsed write verb asks for; BadCommand when a field breaks the contract."""
    kind = WRITES[args.case_command]
    fields: dict[str, Any] = {
        "command_id": str(uuid.uuid4()),
        "case_id": case_id,
        "type": kind,
        "at": at,
        "actor": actor,
    }
    text = getattr(args, "message", None) or ""
    fields["message" if kind in _MESSAGE_IS_TEXT else "reason"] = text
    if kind is CommandType.OPEN:
        fields.update(
            source=CaseSource.STAFF,
            customer_id=args.customer,
            partner_id=args.partner,
            server_id=args.server,
            title=args.title,
        )
    if getattr(args, "severity", None) is not None:
        fields["severity"] = Severity(args.severity)
    if getattr(args, "owner", None) is not None:
        fields["owner"] = args.owner
    try:
        return CaseCommand.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BadCommand(f"invalid {where}: {first['msg']}") from exc


def new_case_id() -> str:
    """Id of a staff-opened case (random: a person, not a machine, opens it)."""
    return "stf-" + uuid.uuid4().hex[:20]


def _stamp(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment is not None else "-"


def _sev(severity: Severity | None) -> str:
    return f"Sev{int(severity)}" if severity is not None else "-"


def table(rows: list[list[str]], header: list[str]) -> str:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def select(views: list[CaseView], args: argparse.Namespace) -> list[CaseView]:
    """The cases `case list` shows, Sev1 first, oldest first within a severity."""
    picked = [v for v in views if v.is_case]
    if args.state is not None:
        picked = [v for v in picked if v.state.value == args.state]
    elif not args.all:
        picked = [v for v in picked if v.is_open]
    if args.customer is not None:
        picked = [v for v in picked if v.customer == args.customer]
    if args.severity is not None:
        picked = [v for v in picked if v.severity is not None and int(v.severity) == args.severity]
    never = datetime.max.replace(tzinfo=UTC)
    return sorted(
        picked, key=lambda v: (int(v.severity) if v.severity is not None else 9, v.opened_at or never)
    )


def render_list(views: list[CaseView], now: datetime) -> str:
    if not views:
        return "no cases"
    rows = [
        [
            v.ticket or v.case_id,
            _sev(v.severity),
            v.state.value,
            v.customer or "-",
            v.server or "-",
            v.owner or "-",
            age(now - v.opened_at) if v.opened_at is not None else "-",
            v.title[:60],
        ]
        for v in views
    ]
    return table(rows, ["ticket", "sev", "state", "customer", "server", "owner", "age", "title"])


def _text(event: CaseEvent) -> str:
    """The reason, and the message text the engine keeps in `details` (updates, notes, replies)."""
    message = event.details.get("message")
    parts = [event.reason, str(message) if message else ""]
    text = " | ".join(dict.fromkeys(part for part in parts if part))
    return " ".join(text.split())[:200]


def chain_banner(report: AuditReport) -> list[str]:
    """What `case show` says about the chain before the history it prints."""
    status = report.status
    if status is ChainStatus.VERIFIED:
        return [f"chain:     verified, {report.count} events signed ({report.head()})"]
    if status is ChainStatus.UNSIGNED:
        return [
            f"chain:     UNSIGNED: {report.unsigned} of {report.count} events carry no signature; nothing "
            "proves the case engine wrote them"
        ]
    lines = [
        f"chain:     BROKEN ({len(report.problems)} problem(s)): the history below is NOT verified; events "
        "marked ! are suspect (`fleetwatch audit verify` for details)"
    ]
    lines.extend(f"  - {problem}" for problem in report.problems[:5])
    if len(report.problems) > 5:
        lines.append(f"  - ... and {len(report.problems) - 5} more")
    return lines


def render_show(view: CaseView, report: AuditReport | None = None) -> str:
    head = [
        f"{view.ticket or '(no ticket)'}  {view.case_id}  {_sev(view.severity)}  {view.state.value}",
        f"title:     {view.title or '-'}",
        f"customer:  {view.customer or '-'}   partner: {view.partner or '-'}   server: {view.server or '-'}",
        f"source:    {view.source.value if view.source else '-'}   owner: {view.owner or '-'}",
        f"opened:    {_stamp(view.opened_at)}   updated: {_stamp(view.updated_at)}",
        f"last customer update: {_stamp(view.last_customer_update_at)}",
    ]
    if view.waiting_since is not None:
        head.append(f"waiting on customer since {_stamp(view.waiting_since)}")
    if view.breaches:
        head.append("SLA breaches: " + ", ".join(f"{clock_of(e)} at {_stamp(e.at)}" for e in view.breaches))
    if view.conflicts:
        head.append(
            f"{len(view.conflicts)} event(s) at an old seq were not applied (replayed or forged copies)"
        )
    if report is None:
        rows = [[_stamp(e.at), e.type.value, e.actor, e.visibility.value, _text(e)] for e in view.timeline]
        return "\n".join([*head, "", table(rows, ["time", "type", "actor", "visibility", "reason"])])
    marks = {ChainStatus.VERIFIED: "ok", ChainStatus.UNSIGNED: "?", ChainStatus.BROKEN: "?"}
    rows = [
        [
            "!" if e.hash in report.flagged else marks[report.status] if e.sig else "?",
            _stamp(e.at),
            e.type.value,
            e.actor,
            e.visibility.value,
            _text(e),
        ]
        for e in view.timeline
    ]
    table_text = table(rows, ["chk", "time", "type", "actor", "visibility", "reason"])
    return "\n".join([*chain_banner(report), *head, "", table_text])


# -- Kafka-side handlers ----------------------------------------------------------------------------


def _now(settings: Settings) -> datetime:
    from fleetcore.clock import clock_for

    return clock_for(settings.clock_scale, settings.clock_origin_ms).now()


def _warn(problems: list[str]) -> None:
    for problem in problems:
        print(f"warning: skipped {problem}", file=sys.stderr)


def _read(settings: Settings) -> CaseLog:
    from casefile.reader import read_log

    return read_log(settings.kafka_bootstrap, Topics(settings.topic_prefix).cases)


def audit_case(log: CaseLog, case_id: str, keys: Keyring) -> AuditReport:
    """The one verdict on a case: its events wherever they sit, and its unreadable messages."""
    from casefile.audit import verify_located

    return verify_located(log.cases.get(case_id, []), case_id, keys, log.problems.get(case_id, []))


def find_case(log: CaseLog, ref: str) -> CaseView | None:
    """The case `ref` names: a case id, else a ticket (case-insensitive), each folded from its own
    partition. Several cases claiming one ticket: the one whose events are all in their own partition and
    that opened first wins (a forged case elsewhere cannot take a ticket over)."""
    if ref in log.cases:
        view = fold(log.home_events(ref)).get(ref)
        if view is not None and view.is_case:
            return view
    wanted = ref.strip().upper()
    candidates = []
    for case_id, items in log.cases.items():
        if not any(item.event.ticket and item.event.ticket.upper() == wanted for item in items):
            continue
        view = fold(log.home_events(case_id)).get(case_id)
        if view is not None and view.is_case and (view.ticket or "").upper() == wanted:
            never = datetime.max.replace(tzinfo=UTC)
            candidates.append((not all(item.home for item in items), view.opened_at or never, view))
    if not candidates:
        return None
    return min(candidates, key=lambda c: (c[0], c[1]))[2]


def _lookup(settings: Settings, ref: str) -> tuple[CaseView, CaseLog]:
    """The case `ref` names (id, else ticket) and the log it was read from; UnknownCase if none."""
    log = _read(settings)
    view = find_case(log, ref)
    if view is None:
        raise UnknownCase(f"no case or ticket {ref!r} on {Topics(settings.topic_prefix).cases}; nothing sent")
    return view, log


def _keys(settings: Settings) -> Keyring:
    from casefile.signing import load_keyring

    return load_keyring(settings)


def _cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    log = _read(settings)
    _warn([*log.unkeyed, *(p for problems in log.problems.values() for p in problems)])
    views = select([v for case_id in log.cases for v in fold(log.home_events(case_id)).values()], args)
    if args.json:
        print(json.dumps([v.summary() for v in views], indent=2))
    else:
        print(render_list(views, _now(settings)))
    return 0


def _cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    view, log = _lookup(settings, args.case)
    report = audit_case(log, view.case_id, _keys(settings))
    if args.json:
        print(json.dumps({**view.to_dict(), "chain": report.to_dict()}, indent=2))
    else:
        print(render_show(view, report))
    return 0


def _cmd_write(args: argparse.Namespace, settings: Settings) -> int:
    from casefile.commands import answer_mark, await_answer, send_command

    topics = Topics(settings.topic_prefix)
    if args.case_command == "open":
        case_id, label = new_case_id(), "new case"
        mark: int | None = None
    else:
        view, log = _lookup(settings, args.case)
        case_id, label, mark = view.case_id, view.ticket or view.case_id, log.end_offset(view.case_id)
    command = build_command(args, case_id, actor_of(args.as_name), _now(settings))
    if mark is None and not args.no_wait:
        mark = answer_mark(settings.kafka_bootstrap, topics.cases, case_id)
    send_command(settings.kafka_bootstrap, topics.case_commands, command)
    print(f"sent {command.type.value} for {label} (case {case_id}, command {command.command_id})")
    if args.no_wait:
        return 0
    answer = await_answer(settings.kafka_bootstrap, topics.cases, command, args.timeout, since=mark)
    if not answer.answered:
        print(f"no answer from the case engine within {args.timeout:g} s (is `fleetwatch stream` running?)")
        return EXIT_NO_ANSWER
    _warn_unverified(answer.events, _keys(settings))
    rejected = answer.rejected
    if rejected is not None:
        print(f"rejected: {rejected.reason or '(no reason given)'}")
        return EXIT_REJECTED
    last = answer.events[-1]
    types = ", ".join(e.type.value for e in answer.events)
    print(f"accepted: {types}; {last.ticket or case_id} is {last.state.value}, {_sev(last.severity)}")
    return 0


def _warn_unverified(events: list[CaseEvent], keys: Keyring) -> None:
    """Say so when an answer is not signed by a listed key (it may not come from the case engine)."""
    from casefile.signing import is_signed, signature_problem

    for item in events:
        why = signature_problem(item, keys) if is_signed(item) else "it is unsigned"
        if why is not None:
            print(
                f"warning: answer seq {item.seq} ({item.type.value}) is not verified: {why}", file=sys.stderr
            )


def _cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    keys = _keys(settings)
    if not args.all and args.case is None:
        raise BadCommand("name a case or ticket, or pass --all")
    if args.all:
        log = _read(settings)
        reports = [audit_case(log, case_id, keys) for case_id in log.cases]
        reports += [
            AuditReport(ok=False, case_id=key, count=0, problems=problems)
            for key, problems in log.problems.items()
            if key not in log.cases
        ]
        if log.unkeyed:
            topic = Topics(settings.topic_prefix).cases
            reports.append(AuditReport(ok=False, case_id=topic, count=0, problems=log.unkeyed))
    else:
        view, log = _lookup(settings, args.case)
        reports = [audit_case(log, view.case_id, keys)]
    for report in reports:
        print(report.render())
    broken = sum(r.status is ChainStatus.BROKEN for r in reports)
    unsigned = sum(r.status is ChainStatus.UNSIGNED for r in reports)
    if args.all:
        print(f"{len(reports) - broken - unsigned} chain(s) verified, {unsigned} unsigned, {broken} broken")
    if broken or (unsigned and not args.allow_unsigned):
        return 1
    return 0


def _cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    ring = _keys(settings)
    text = json.dumps(ring.to_json(), indent=2) + "\n"
    if args.output is None:
        print(text, end="")
        return 0
    from pathlib import Path

    target = Path(args.output)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)  # readers never see a half-written list
    print(f"wrote {len(ring.keys)} key(s) to {target}", file=sys.stderr)
    return 0


def _cmd_keygen(args: argparse.Namespace) -> int:
    """A new Ed25519 signing key: the settings line on stdout (append it to .env), the public key's
    entry for a key list on stderr."""
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from casefile.signing import Signer

    private = Ed25519PrivateKey.generate()
    seed = base64.b64encode(private.private_bytes_raw()).decode("ascii")
    public = Signer(private).public
    print(f"FLEETWATCH_AUDIT_SIGNING_KEY={seed}")
    print(f"# key id {public.key_id}; key list entry: {json.dumps(public.to_json())}", file=sys.stderr)
    return 0


# -- parser ------------------------------------------------------------------------------------------


def register(sub: Any, common: AddCommon, settings_of: SettingsOf) -> None:
    """Add `case ...` and `audit verify` to the `fleetwatch` subparsers `sub`."""

    def handler(fn: Callable[[argparse.Namespace, Settings], int]) -> Callable[[argparse.Namespace], int]:
        return lambda args: fn(args, settings_of(args))

    case = sub.add_parser("case", help="list, show and work support cases").add_subparsers(
        dest="case_command", required=True
    )

    def verb(name: str, help_: str, fn: Callable[[argparse.Namespace, Settings], int]) -> Any:
        p = case.add_parser(name, help=help_, description=help_)
        common(p)
        p.set_defaults(handler=handler(fn))
        return p

    lst = verb("list", "open cases (Sev1 first)", _cmd_list)
    lst.add_argument("--all", action="store_true", help="include resolved and closed cases")
    lst.add_argument("--state", choices=[s.value for s in CaseState], help="only cases in this state")
    lst.add_argument("--customer", help="only this customer's cases")
    lst.add_argument("--severity", type=int, choices=[1, 2, 3], help="only this severity")
    lst.add_argument("--json", action="store_true", help="JSON for machines")
    show = verb("show", "a case's header and timeline", _cmd_show)
    show.add_argument("case", metavar="CASE|TICKET")
    show.add_argument("--json", action="store_true", help="JSON for machines (the timeline as on the wire)")

    def write(name: str, help_: str) -> Any:
        p = verb(name, help_, _cmd_write)
        if name != "open":
            p.add_argument("case", metavar="CASE|TICKET")
        p.add_argument("--as", dest="as_name", metavar="NAME", help="your name (default $USER)")
        p.add_argument("--no-wait", action="store_true", help="send and return, without the engine's answer")
        p.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_WAIT_S,
            help=f"seconds to wait (default {DEFAULT_WAIT_S:g})",
        )
        return p

    sev = {"type": int, "choices": [1, 2, 3]}
    opened = write("open", "open a case as staff")
    opened.add_argument("--customer", required=True)
    opened.add_argument("--severity", required=True, **sev)
    opened.add_argument("--title", required=True)
    opened.add_argument("--server")
    opened.add_argument("--partner")
    triage = write("triage", "set severity (and owner); assigns the ticket number")
    triage.add_argument("--severity", required=True, **sev)
    triage.add_argument("--owner")
    write("assign", "set the owner").add_argument("owner")
    write("ack", "acknowledge: you work the case")
    write("update", "post a status update to the customer").add_argument("-m", dest="message", required=True)
    write("wait", "the next move is the customer's").add_argument("-m", dest="message", help="why")
    write("reply", "the customer replied").add_argument("-m", dest="message", help="what they said")
    write("note", "an internal note or phone follow-up").add_argument("-m", dest="message", required=True)
    write("severity", "change the severity").add_argument("severity", **sev)
    write("resolve", "resolve the case").add_argument("-m", dest="message", help="reason")
    write("close", "close the case").add_argument("-m", dest="message", help="reason")
    write("reopen", "reopen a resolved or closed case").add_argument("-m", dest="message", help="reason")

    audit = sub.add_parser("audit", help="audit the case topic").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit.add_parser(
        "verify", help="check a case's signed hash chain (exit 1 if broken, or unsigned without the flag)"
    )
    common(verify)
    verify.add_argument("case", nargs="?", metavar="CASE|TICKET")
    verify.add_argument("--all", action="store_true", help="check every case on the topic")
    verify.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="exit 0 for intact chains with events from before signing (still reported UNSIGNED)",
    )
    verify.set_defaults(handler=handler(_cmd_audit))
    keys = audit.add_parser("keys", help="the public keys that verify case events (JSON, publish it)")
    common(keys)
    keys.add_argument(
        "--output", metavar="FILE", help="write the list to FILE (atomically) instead of printing it"
    )
    keys.set_defaults(handler=handler(_cmd_keys))
    keygen = audit.add_parser(
        "keygen",
        help="a new case-signing key: prints FLEETWATCH_AUDIT_SIGNING_KEY=<base64 seed> (append it to .env) "
        "and, on stderr, its key id and public key-list entry",
    )
    keygen.set_defaults(handler=_cmd_keygen)
