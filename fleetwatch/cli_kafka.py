"""`fleetwatch kafka`: the local Kafka broker in the foreground, for workers started separately.

    fleetwatch kafka [--port N] [--controller-port N] [--data-dir D] [--heap 512m] [--no-topics]

Starts the same broker `fleetwatch up` starts (Kafka 4.4, KRaft, from the cached jars; data under
<data dir>/kafka), creates the registry's topics under the topic prefix, and prints one line on stdout that a
script can parse once the broker serves:

    bootstrap=127.0.0.1:9092

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
from fleetwatch.kafka_local import LocalKafka, ensure_jars, free_port
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
    broker = LocalKafka(
        Path(settings.data_dir) / "kafka",
        port=ports["local_kafka_port"],
        controller_port=ports["local_kafka_controller_port"],
        heap=settings.local_kafka_heap,
    )
    brokers = [broker]  # one node today; a cluster (`--brokers N`) would start more and join their addresses
    try:
        heap = settings.local_kafka_heap
        say("kafka", f"starting Kafka on {broker.bootstrap} (heap {heap}; data in {broker.data_dir})")
        for node in brokers:
            node.start()
        bootstrap = ",".join(node.bootstrap for node in brokers)
        if create_topics:
            from fleetcore.kafka_admin import ensure_topics
            from schemas.topics import Topics

            created = ensure_topics(bootstrap, Topics(settings.topic_prefix))
            say("kafka", f"topics of prefix {settings.topic_prefix!r} ready ({len(created)} created)")
        print(f"bootstrap={bootstrap}", flush=True)
        say("kafka", f"Kafka ready (pid {', '.join(str(n.pid) for n in brokers)}); workers: "
            f"FLEETWATCH_KAFKA_BOOTSTRAP={bootstrap}. Ctrl-C stops it.")  # fmt: skip

        def died() -> str | None:
            dead = next((n for n in brokers if not n.running), None)
            return None if dead is None else f"Kafka exited by itself; see {dead.log_file}"

        failure = wait_for_signal(died)
    finally:
        for node in reversed(brokers):
            say("kafka", f"stopping Kafka (pid {node.pid})")
            node.stop()
    if failure is not None:
        raise BrokerError(failure)
    say("kafka", "stopped")
    return 0


def _cmd_kafka(args: argparse.Namespace, settings_of: SettingsOf) -> int:
    settings = settings_of(args)
    if args.heap:
        settings = settings.model_copy(update={"local_kafka_heap": args.heap})
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
    p.add_argument("--no-topics", action="store_true", help="do not create the registry's topics")
    p.set_defaults(handler=lambda args: _cmd_kafka(args, settings_of))
