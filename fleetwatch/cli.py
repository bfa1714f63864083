"""The `fleetwatch` command: parses flags, builds Settings, and calls one worker's `run(settings)`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fleetcore.errors import FleetwatchError
from fleetcore.settings import Settings
from fleetwatch.simfleet.layout import parse_fleet


def _settings(args: argparse.Namespace) -> Settings:
    update: dict[str, Any] = {}
    for flag, field in (
        ("bootstrap", "kafka_bootstrap"),
        ("topic_prefix", "topic_prefix"),
        ("data_dir", "data_dir"),
        ("clickhouse_dsn", "clickhouse_dsn"),
        ("log_level", "log_level"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            update[field] = value
    base = Settings()
    settings = Settings.model_validate({**base.model_dump(), **update}) if update else base
    if "FLEETWATCH_CLOCK_SCALE" in os.environ or getattr(args, "command", None) == "up":
        return settings
    from fleetwatch.stack import read_policy_clock

    return read_policy_clock(settings)  # a running demo's 60x clock, so case times line up with it


def _cmd_probe(args: argparse.Namespace) -> int:
    from probes.worker import run

    run(_settings(args))
    return 0


def _cmd_stream(args: argparse.Namespace) -> int:
    from streams.worker import run

    run(_settings(args))
    return 0


def _cmd_sink(args: argparse.Namespace) -> int:
    from sinks.service import run

    run(_settings(args))
    return 0


def _cmd_notify(args: argparse.Namespace) -> int:
    from sinks.notifier.service import run

    run(_settings(args))
    return 0


def _cmd_portal(args: argparse.Namespace) -> int:
    from portal.service import command

    return command(args.action, _settings(args))


def _cmd_intake(args: argparse.Namespace) -> int:
    from portal.intake.server import run

    run(_settings(args))
    return 0


def _cmd_inventory_load(args: argparse.Namespace) -> int:
    from probes.inventory import load_command

    count = load_command(_settings(args), Path(args.file), prune=args.prune)
    print(f"published {count} servers to the inventory topic")
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from history.client import fetch_history, render_history

    data = fetch_history(_settings(args), args.server_id, limit=args.limit)
    print(render_history(data))
    return 0


def _cmd_schema_export(args: argparse.Namespace) -> int:
    from schemas.jsonschema import write_schemas

    for path in write_schemas(Path(args.out)):
        print(path)
    return 0


DEMO_CLOCK_SCALE = 60.0
"""The demo's clock: one policy hour per real minute, so a Sev1's whole timeline shows in minutes."""


def _cmd_up(args: argparse.Namespace) -> int:
    from fleetwatch.stack import run_up

    settings = _settings(args)
    if args.brokers is not None:
        settings = settings.model_copy(update={"local_kafka_brokers": args.brokers})
    if args.clock_scale is not None:
        settings = settings.model_copy(update={"clock_scale": args.clock_scale})
    elif up_fleet(args)[0] and "FLEETWATCH_CLOCK_SCALE" not in os.environ:
        settings = settings.model_copy(update={"clock_scale": DEMO_CLOCK_SCALE})
    external = args.bootstrap is not None or "FLEETWATCH_KAFKA_BOOTSTRAP" in os.environ
    demo, sim_servers = up_fleet(args)
    return run_up(
        settings, external_kafka=external, demo=demo, run_for_s=args.run_for, sim_servers=sim_servers
    )


def up_fleet(args: argparse.Namespace) -> tuple[bool, int | None]:
    """`up`'s fleet: (demo fleet?, simulated servers or None). `--fleet sim:N` replaces the demo."""
    if args.fleet is not None:
        return False, args.fleet
    return not args.no_demo, None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (env FLEETWATCH_KAFKA_BOOTSTRAP)")
    parser.add_argument("--topic-prefix", help="topic name prefix (env FLEETWATCH_TOPIC_PREFIX)")
    parser.add_argument("--data-dir", help="local state directory (env FLEETWATCH_DATA_DIR)")
    parser.add_argument(
        "--clickhouse-dsn", help="chdb:///abs/path or http://host:8123 (env FLEETWATCH_CLICKHOUSE_DSN)"
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING (env FLEETWATCH_LOG_LEVEL)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleetwatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        _common(p)
        p.set_defaults(handler=handler)
        return p

    up = add("up", _cmd_up, "run the whole monitor on this machine (local Kafka, workers, demo fleet)")
    up.add_argument("--no-demo", action="store_true", help="do not start or load the demo fleet")
    up.add_argument(
        "--fleet",
        type=parse_fleet,
        default=None,
        help="demo (default): the demo fleet; sim:N: a simulated fleet of N servers (e.g. sim:100000, "
        "sim:1m) in its own process, at the normal probe cadence",
    )
    up.add_argument("--run-for", type=float, default=None, help="stop by itself after this many seconds")
    up.add_argument(
        "--brokers",
        type=int,
        choices=(1, 3),
        default=None,
        help="local Kafka nodes: 1, or 3 (a KRaft cluster; topics with 3 replicas, min.insync.replicas 2; "
        "env FLEETWATCH_LOCAL_KAFKA_BROKERS)",
    )
    up.add_argument(
        "--clock-scale",
        type=float,
        default=None,
        help=f"policy seconds per real second (demo default {DEMO_CLOCK_SCALE:g}: one policy hour per "
        "real minute; 1 = real time; env FLEETWATCH_CLOCK_SCALE)",
    )
    add("probe", _cmd_probe, "run a probe worker (joins the probe group, probes its share of the fleet)")
    add("stream", _cmd_stream, "run the Faust stream worker: the detector and the case engine")
    add("sink", _cmd_sink, "run the ClickHouse sink (and, embedded, the history query API)")
    add("notify", _cmd_notify, "run the notifier (delivers pages, emails and calls to contacts)")
    add("intake", _cmd_intake, "run the email intake (SMTP server of the support address)")
    portal = add("portal", _cmd_portal, "run the partner portal and staff console (web UI + JSON API)")
    portal.add_argument(
        "action",
        nargs="?",
        default="serve",
        choices=("serve", "hash-password", "new-token"),
        help="serve (default); hash-password: argon2 hash for the partners file; new-token: an API token",
    )

    inv = sub.add_parser("inventory", help="manage the fleet inventory").add_subparsers(
        dest="inventory_command", required=True
    )
    load = inv.add_parser("load", help="publish servers from a YAML/JSON file to the inventory topic")
    _common(load)
    load.add_argument("file", help="YAML or JSON file with a `servers:` list")
    load.add_argument("--prune", action="store_true", help="remove servers that are not in the file")
    load.set_defaults(handler=_cmd_inventory_load)

    hist = add("history", _cmd_history, "show a server's recent probes and cases from ClickHouse")
    hist.add_argument("server_id")
    hist.add_argument("--limit", type=int, default=20, help="probes to show (default 20)")

    schema = sub.add_parser("schema", help="topic contracts").add_subparsers(
        dest="schema_command", required=True
    )
    export = schema.add_parser("export", help="write a JSON Schema for each topic's value")
    export.add_argument("--out", default="docs/schemas", help="output directory (default docs/schemas)")
    export.set_defaults(handler=_cmd_schema_export)

    from fleetwatch.cli_case import register as register_case

    register_case(sub, _common, _settings)
    from fleetwatch.cli_maintenance import register as register_maintenance

    register_maintenance(sub, _common, _settings)
    from fleetwatch.cli_report import register as register_report

    register_report(sub, _common, _settings)
    from fleetwatch.cli_kafka import register as register_kafka

    register_kafka(sub, _common, _settings)
    from fleetwatch.cli_catch import register as register_catch

    register_catch(sub, _common, _settings)
    from fleetwatch.cli_settings import register as register_settings

    register_settings(sub, _common, _settings)
    from fleetwatch.simfleet.command import register as register_sim

    register_sim(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit flush
    except BrokenPipeError:  # `fleetwatch ... | head -1`: the reader has gone; end quietly, as on SIGPIPE
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except FleetwatchError as exc:
        print(f"fleetwatch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
