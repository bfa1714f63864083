"""`fleetwatch kafka`: the local Kafka broker in the foreground, for workers started separately.

    fleetwatch kafka [--brokers 1|3] [--port N] [--controller-port N] [--data-dir D] [--heap 512m]
                     [--no-topics]

Starts the same broker `fleetwatch up` starts (Kafka 4.4, KRaft, from the cached jars; data under
<data dir>/kafka), creates the registry's topics under the topic prefix, and prints one line on stdout that a
script can parse once the broker serves:

    bootstrap=127.0.0.1:9092

`--brokers 3` (FLEETWATCH_LOCAL_KAFKA_BROKERS=3) starts a three-node KRaft cluster instead (data under
<data dir>/kafka-cluster, heap 256m per node, node 1 on the ports below, the others on free ports kept for
later starts); the topics then get 3 replicas and min.insync.replicas 2, and the printed bootstrap lists
all three nodes.

Everything else goes to stderr. Ports come from FLEETWATCH_LOCAL_KAFKA_PORT / _CONTROLLER_PORT (9092 / 9093;
0: any free port) or the flags; a default port that is taken moves to a free one, an explicit one that is
taken fails at once. Ctrl-C or SIGTERM stops the broker by its PID. Start the workers with
FLEETWATCH_KAFKA_BOOTSTRAP set to the printed address.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetcore.errors import BrokerError
from fleetcore.settings import Settings
from fleetwatch.cli_foreground import say, wait_for_signal
from fleetwatch.kafka_local import ensure_jars, free_port, local_broker
from fleetwatch.ports import env_name, explicit_settings, plan_ports, port_taken, taken_ports

SettingsOf = Callable[[argparse.Namespace], Settings]
PORTS = ("local_kafka_port", "local_kafka_controller_port")


def broker_ports(settings: Settings, flags: dict[str, int | None]) -> dict[str, int]:
    """The broker's ports: flags, else settings; a taken default moves, a taken explicit one fails."""
    wanted: dict[str, int] = {}
    for name in PORTS:
        flag = flags.get(name)
        wanted[name] = int(getattr(settings, name)) if flag is None else flag
    explicit = explicit_settings(PORTS) | {name for name in PORTS if flags.get(name) is not None}
    hosts = dict.fromkeys(PORTS, "127.0.0.1")
    plan = plan_ports(wanted, explicit, taken_ports(hosts, wanted, port_taken), iter(free_port, None))
    for name, (default, chosen) in plan.moved.items():
        say("kafka", f"port {default} ({env_name(name)}) is taken: using {chosen} instead")
    return plan.ports


def run_kafka(settings: Settings, ports: dict[str, int], create_topics: bool = True) -> int:
    """Run one local broker until SIGINT/SIGTERM; print its bootstrap on stdout. Returns the exit code."""
    say("kafka", "Kafka 4.4 jars: checking the cache (first run fetches them from Maven Central)")
    ensure_jars()
    broker = local_broker(
        Path(settings.data_dir),
        settings.local_kafka_brokers,
        ports["local_kafka_port"],
        ports["local_kafka_controller_port"],
        settings.local_kafka_heap,
    )
    brokers = broker.members
    try:
        heap = brokers[0].heap
        say("kafka", f"starting Kafka ({len(brokers)} node(s), heap {heap} each) on {broker.bootstrap}; "
            f"data in {broker.data_dir}")  # fmt: skip
        broker.start()
        bootstrap = broker.bootstrap
        if create_topics:
            from fleetcore.kafka_admin import ensure_topics_of
            from schemas.topics import Topics

            created = ensure_topics_of(
                settings.model_copy(update={"kafka_bootstrap": bootstrap}), Topics(settings.topic_prefix)
            )
            say("kafka", f"topics of prefix {settings.topic_prefix!r} ready ({len(created)} created)")
        print(f"bootstrap={bootstrap}", flush=True)
        say("kafka", f"Kafka ready (pid {', '.join(str(n.pid) for n in brokers)}); workers: "
            f"FLEETWATCH_KAFKA_BOOTSTRAP={bootstrap}. Ctrl-C stops it.")  # fmt: skip

        def died() -> str | None:
            dead = next((n for n in brokers if not n.running), None)
            return None if dead is None else f"Kafka exited by itself; see {dead.log_file}"

        failure = wait_for_signal(died)
    finally:
        say("kafka", f"stopping Kafka (pid {', '.join(map(str, broker.pids))})")
        broker.stop()
    if failure is not None:
        raise BrokerError(failure)
    say("kafka", "stopped")
    return 0


def _cmd_kafka(args: argparse.Namespace, settings_of: SettingsOf) -> int:
    settings = settings_of(args)
    if args.heap:
        settings = settings.model_copy(update={"local_kafka_heap": args.heap})
    if args.brokers is not None:
        settings = settings.model_copy(update={"local_kafka_brokers": args.brokers})
    flags = {"local_kafka_port": args.port, "local_kafka_controller_port": args.controller_port}
    return run_kafka(settings, broker_ports(settings, flags), create_topics=not args.no_topics)


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None], settings_of: SettingsOf) -> None:
    """Add `kafka` to the `fleetwatch` subcommands (`sub`: its subparsers)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "kafka", help="run the local Kafka broker in the foreground (prints bootstrap=HOST:PORT)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    common(p)
    p.add_argument("--port", type=int, help="PLAINTEXT port (env FLEETWATCH_LOCAL_KAFKA_PORT; 0: any free)")
    p.add_argument(
        "--controller-port",
        type=int,
        help="KRaft controller port (env FLEETWATCH_LOCAL_KAFKA_CONTROLLER_PORT)",
    )
    p.add_argument("--heap", help="broker heap, e.g. 512m (env FLEETWATCH_LOCAL_KAFKA_HEAP)")
    p.add_argument(
        "--brokers",
        type=int,
        choices=(1, 3),
        help="nodes: 1, or 3 (a KRaft cluster, heap 256m each; env FLEETWATCH_LOCAL_KAFKA_BROKERS)",
    )
    p.add_argument("--no-topics", action="store_true", help="do not create the registry's topics")
    p.set_defaults(handler=lambda args: _cmd_kafka(args, settings_of))
