"""`fleetwatch maintenance add|list|cancel`: declare planned maintenance windows on the compacted topic.

    fleetwatch maintenance add --server acme-web-1 --customer acme --start 2026-11-07T02:00Z --duration 2h
    fleetwatch maintenance add --customer acme --start 2026-11-01T23:00Z --end 2026-11-02T01:00Z --recur daily
    fleetwatch maintenance list [--all]
    fleetwatch maintenance cancel mw-1a2b3c4d [--as alice]

Times are ISO 8601; without an offset they are UTC. Recurring windows repeat every 24 h or 7 days in UTC.
A window is published keyed by its id (acks=all); adding with an existing `--id` replaces that window.
A cancel republishes the window with `cancelled_at` (now, from the runtime clock) and `cancelled_by`:
it stops covering from then on, and earlier failures stay planned. Bad input is an argparse error (exit 2)
and publishes nothing; an unknown window id on cancel is an error (exit 2).
"""

from __future__ import annotations

import argparse
import getpass
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from fleetcore.clock import clock_for
from fleetcore.errors import FleetwatchError
from fleetcore.settings import Settings
from policy.maintenance import WindowStatus, current_or_next, status, still_relevant
from schemas.inventory import ID_PATTERN
from schemas.maintenance import MaintenanceWindow, Recurrence
from schemas.topics import MAINTENANCE, Topics

MAX_DURATION = timedelta(days=366)
"""Longest window accepted from the command line."""

_ID = re.compile(ID_PATTERN)
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_ORDER = {WindowStatus.ACTIVE: 0, WindowStatus.UPCOMING: 1, WindowStatus.CANCELLED: 2, WindowStatus.PAST: 3}

SettingsOf = Callable[[argparse.Namespace], Settings]


class UnknownWindow(FleetwatchError):
    """No maintenance window has that id."""


# -- argument types (argparse turns ArgumentTypeError into "argument --x: message", exit 2) -------------


def parse_time(text: str) -> datetime:
    """An ISO 8601 time as aware UTC; without an offset it is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (e.g. 2026-11-07T02:00Z or 2026-11-07T03:00+01:00)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_duration(text: str) -> timedelta:
    """A duration like 2h, 90m, 1h30m, 45s or 1d (positive, at most MAX_DURATION)."""
    match = _DURATION.match(text.strip().lower())
    if not text.strip() or match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 2h, 90m, 1h30m, 1d)")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    if max(days, hours, minutes, seconds) > 10**6:
        raise argparse.ArgumentTypeError(f"duration {text!r} is longer than {MAX_DURATION.days} days")
    value = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if value <= timedelta(0):
        raise argparse.ArgumentTypeError(f"duration must be positive (got {text!r})")
    if value > MAX_DURATION:
        raise argparse.ArgumentTypeError(f"duration {text!r} is longer than {MAX_DURATION.days} days")
    return value


def parse_id(text: str) -> str:
    """A server, customer or window id (letters, digits and . _ : -, 1-128 characters)."""
    if not _ID.match(text):
        raise argparse.ArgumentTypeError(f"invalid id {text!r}: 1-128 letters, digits and . _ : -")
    return text


def parse_name(text: str) -> str:
    """A person's name for created_by / cancelled_by."""
    if not text.strip() or len(text) > 200:
        raise argparse.ArgumentTypeError("a name must be 1-200 characters")
    return text.strip()


# -- Kafka (module functions so tests can replace them) ----------------------------------------------------


def publish_window(settings: Settings, window: MaintenanceWindow) -> None:
    """Publish one window to the maintenance topic, creating the topic first if settings allow."""
    from fleetcore.compacted import publish

    topics = Topics(settings.topic_prefix)
    if settings.create_topics:
        from fleetcore.kafka_admin import ensure_topics_of

        ensure_topics_of(settings, topics, specs=[MAINTENANCE])
    publish(settings.kafka_bootstrap, topics.maintenance, window.window_id, window.model_dump_json().encode())


def read_windows(settings: Settings) -> dict[str, MaintenanceWindow]:
    """Every window on the maintenance topic, by id."""
    from fleetcore.compacted import read_latest

    return read_latest(
        settings.kafka_bootstrap,
        Topics(settings.topic_prefix).maintenance,
        MaintenanceWindow.model_validate_json,
    )


def _now(settings: Settings) -> datetime:
    return clock_for(settings.clock_scale, settings.clock_origin_ms).now()


def _default_name() -> str:
    try:
        return getpass.getuser() or "cli"
    except (KeyError, OSError):  # no login name (containers)
        return "cli"


# -- commands ------------------------------------------------------------------------------------------


def _fmt(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def build_window(args: argparse.Namespace, now: datetime) -> MaintenanceWindow:
    """The window the `add` arguments describe; ValueError (with a message for the user) if invalid."""
    start: datetime = args.start
    try:
        end: datetime = args.end if args.end is not None else start + args.duration
    except OverflowError:
        raise ValueError(f"the window would end after year 9999 ({_fmt(start)} + {args.duration})") from None
    if end <= start:
        raise ValueError(f"the window must end after it starts ({_fmt(end)} <= {_fmt(start)})")
    recurrence = Recurrence(args.recur) if args.recur else Recurrence.NONE
    if args.until is not None and recurrence is Recurrence.NONE:
        raise ValueError("--until only applies to a recurring window (--recur daily|weekly)")
    try:
        return MaintenanceWindow(
            window_id=args.id or f"mw-{secrets.token_hex(4)}",
            server_id=args.server,
            customer_id=args.customer,
            starts_at=start,
            ends_at=end,
            recurrence=recurrence,
            until=args.until,
            reason=args.reason,
            created_by=args.as_name or _default_name(),
            created_at=now,
        )
    except ValidationError as exc:
        raise ValueError(
            "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        ) from exc


def _cmd_add(args: argparse.Namespace, settings_of: SettingsOf) -> int:
    parser: argparse.ArgumentParser = args.parser
    settings = settings_of(args)
    try:
        window = build_window(args, _now(settings))
    except ValueError as exc:
        parser.error(str(exc))  # exits 2, nothing published
    publish_window(settings, window)
    scope = f"server {window.server_id}" if window.server_id else f"all servers of {window.customer_id}"
    print(window.window_id)
    print(f"maintenance window for {scope}: {_fmt(window.starts_at)} -> {_fmt(window.ends_at)} UTC", end="")
    print(f", {window.recurrence.value}" if window.recurrence is not Recurrence.NONE else "")
    return 0


def _repeats(window: MaintenanceWindow) -> str:
    if window.recurrence is Recurrence.NONE:
        return "once"
    if window.until is None:
        return window.recurrence.value
    return f"{window.recurrence.value} until {_fmt(window.until)}"


def _cut(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def render_windows(windows: list[MaintenanceWindow], now: datetime, show_all: bool) -> str:
    """The `list` table: active and upcoming windows (and cancelled ones until their time would have
    passed); with `show_all` every window. Times in UTC."""
    rows: list[tuple[int, datetime, str, tuple[str, ...]]] = []
    for w in windows:
        if not show_all and not still_relevant(w, now):
            continue
        state = status(w, now)
        ref = w.cancelled_at if state is WindowStatus.CANCELLED and w.cancelled_at is not None else now
        occurrence = current_or_next(w, ref)
        start, end = (occurrence.start, occurrence.end) if occurrence else (w.starts_at, w.ends_at)
        scope = f"server {w.server_id}" if w.server_id else f"customer {w.customer_id} (all)"
        note = f"by {w.cancelled_by or '?'} at {_fmt(w.cancelled_at)}" if w.cancelled_at else ""
        cells = (w.window_id, state.value, scope, _fmt(start), _fmt(end), _repeats(w), w.created_by)
        rows.append((_ORDER[state], start, w.window_id, (*cells, note, _cut(w.reason))))
    if not rows:
        return "no maintenance windows" + ("" if show_all else " active or upcoming (--all shows past ones)")
    rows.sort(key=lambda r: r[:3])
    headers = ("ID", "STATUS", "SCOPE", "START (UTC)", "END (UTC)", "REPEATS", "BY", "CANCELLED", "REASON")
    table = [headers, *(r[3] for r in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    )


def _cmd_list(args: argparse.Namespace, settings_of: SettingsOf) -> int:
    settings = settings_of(args)
    windows = read_windows(settings)
    print(render_windows(list(windows.values()), _now(settings), args.all))
    return 0


def _cmd_cancel(args: argparse.Namespace, settings_of: SettingsOf) -> int:
    settings = settings_of(args)
    window = read_windows(settings).get(args.window_id)
    if window is None:
        raise UnknownWindow(
            f"no maintenance window {args.window_id!r} (see `fleetwatch maintenance list --all`)"
        )
    if window.cancelled_at is not None:
        print(f"{window.window_id} was already cancelled at {_fmt(window.cancelled_at)} UTC")
        return 0
    now = _now(settings)
    by = args.as_name or _default_name()
    publish_window(
        settings,
        MaintenanceWindow.model_validate({**window.model_dump(), "cancelled_at": now, "cancelled_by": by}),
    )
    print(f"{window.window_id} cancelled at {_fmt(now)} UTC")
    return 0


def register(
    sub: Any,
    common: Callable[[argparse.ArgumentParser], None],
    settings_of: SettingsOf,
) -> None:
    """Add `maintenance add|list|cancel` to the `fleetwatch` subcommands (`sub`: its subparsers)."""
    group = sub.add_parser("maintenance", help="planned maintenance windows (no monitor case inside one)")
    commands = group.add_subparsers(dest="maintenance_command", required=True)

    def command(
        name: str, handler: Callable[[argparse.Namespace, SettingsOf], int], help_: str
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = commands.add_parser(name, help=help_, description=help_)
        common(p)
        p.set_defaults(handler=lambda args: handler(args, settings_of), parser=p)
        return p

    add = command("add", _cmd_add, "declare a maintenance window for a server or a whole customer")
    add.add_argument("--server", type=parse_id, help="the server (omit: every server of the customer)")
    add.add_argument("--customer", type=parse_id, required=True, help="the customer")
    add.add_argument("--start", type=parse_time, required=True, help="start, ISO 8601 (UTC without offset)")
    ends = add.add_mutually_exclusive_group(required=True)
    ends.add_argument("--end", type=parse_time, help="end (exclusive), ISO 8601")
    ends.add_argument("--duration", type=parse_duration, help="length, e.g. 2h, 90m, 1h30m")
    add.add_argument("--recur", choices=("daily", "weekly"), help="repeat every day or week (UTC)")
    add.add_argument("--until", type=parse_time, help="recurring: no occurrence starts at or after this")
    add.add_argument("--reason", default="", help="why (shown in listings)")
    add.add_argument(
        "--id", type=parse_id, help="window id (default mw-<random>; an existing id is replaced)"
    )
    add.add_argument("--as", dest="as_name", type=parse_name, help="who declares it (default: login name)")

    lst = command("list", _cmd_list, "list active and upcoming maintenance windows")
    lst.add_argument("--all", action="store_true", help="include past and long-cancelled windows")

    cancel = command("cancel", _cmd_cancel, "cancel a maintenance window from now on")
    cancel.add_argument("window_id", help="the window's id (see `maintenance list`)")
    cancel.add_argument("--as", dest="as_name", type=parse_name, help="who cancels it (default: login name)")
