"""`fleetwatch up`: the whole monitor on one machine.

Starts, in order: the local Kafka broker (unless a bootstrap server is configured), the topics, the demo fleet
(a dozen simulated MyCorpServers on 127.0.0.1) and its inventory, a local SMTP catcher and a pager/call
webhook catcher (so the demo's emails, pages and calls land on this machine), then the workers as child
processes (sink, which owns the embedded ClickHouse store and serves its queries; stream; notify; intake, the
support address's SMTP server; portal, the partner portal and staff console; probe). It prints each case
event as it appears on the case topic and each email, page and call the catchers receive; with the demo it
also prints the demo partners' sign-ins.
With the demo the policy clock runs at 60x (one policy hour per real minute; `--clock-scale`), all processes
sharing one origin, so a Sev1's page, VP escalation and hourly updates show within minutes. Ctrl-C (or
SIGTERM) stops the children in reverse order, then the catchers, the demo fleet and the broker, each by its
own PID. Before anything starts, every port `up` and its children will listen on is checked: a default that
is taken moves to a free port (said on the console), one set in the environment that is taken stops `up` at
once, naming its setting (`fleetwatch.ports`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from fleetcore.clock import SystemClock, to_epoch_ms
from fleetcore.errors import FleetwatchError
from fleetcore.kafka_admin import ensure_topics_of
from fleetcore.settings import Settings
from fleetwatch.kafka_local import LocalKafka, LocalKafkaCluster, free_port, local_broker
from fleetwatch.ports import env_name, explicit_settings, plan_ports, port_taken, taken_ports
from schemas.cases import CaseEvent
from schemas.topics import Topics

log = logging.getLogger(__name__)

DEMO_CADENCE = {"probe_interval_s": 15.0, "probe_retry_interval_s": 3.0}
"""Demo cadences: a healthy server every 15 s, a failing one every 3 s, so 10 in a row take ~30 s."""

DEMO_ANALYSTS = {"analysts_port": 8123, "analysts_user": "analyst", "analysts_password": "analyst-demo"}
"""The demo's analysts' endpoint: the embedded store read-only, on the port clickhouse-connect expects."""

WORKERS = ("sink", "stream", "notify", "intake", "portal", "probe")
"""Start order; they stop in reverse."""


def _say(message: str) -> None:
    print(f"[fleetwatch up] {message}", flush=True)


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
"""The repository's examples (demo contacts directory and SLA policy book)."""


def policy_clock_file(settings: Settings) -> Path:
    """Where a running `up` publishes its policy clock, so CLI commands on this data dir share it."""
    return settings.data_dir / "policy-clock.json"


def write_policy_clock(settings: Settings) -> None:
    """Publish the stack's scaled clock (scale and origin) for `fleetwatch case ...` and friends."""
    body = {
        "clock_scale": settings.clock_scale,
        "clock_origin_ms": settings.clock_origin_ms,
        "pid": os.getpid(),
    }
    policy_clock_file(settings).write_text(json.dumps(body))


def read_policy_clock(settings: Settings) -> Settings:
    """`settings` on the clock of a running `up` on the same data dir, unless a clock is configured (a file
    left by an `up` that no longer runs is ignored)."""
    path = policy_clock_file(settings)
    if settings.clock_scale != 1.0 or not path.exists():
        return settings
    try:
        body = json.loads(path.read_text())
        update = {"clock_scale": float(body["clock_scale"]), "clock_origin_ms": int(body["clock_origin_ms"])}
        os.kill(int(body["pid"]), 0)  # is that `up` still running?
    except (OSError, ValueError, KeyError, TypeError):
        return settings
    return settings.model_copy(update=update)


def format_case_event(event: CaseEvent) -> str:
    """One readable line per case event."""
    stamp = event.at.strftime("%Y-%m-%d %H:%M:%S")
    sev = f"SEV{int(event.severity)}" if event.severity is not None else "SEV?"
    what = event.reason or str(event.details.get("reason") or "")
    kind = event.type.value
    if kind.startswith("notification."):
        what = f"{event.details.get('channel')} to {event.details.get('role')}"
        if event.details.get("contact"):
            what += f" ({event.details.get('contact')})"
        if event.details.get("error"):
            what += f": {event.details.get('error')}"
    elif kind == "server.recovered":
        what = f"server passed again after {event.details.get('outage_seconds')} s"
    error = event.details.get("error_class")
    return (
        f"{stamp}Z  {event.ticket or event.case_id:<10} {kind:<24} {sev}  {event.state.value:<9} "
        f"server={event.server_id or '-'} customer={event.customer_id}  "
        f"{what}{f' ({error})' if error else ''}"
    )


def worker_env(settings: Settings, **overrides: Any) -> dict[str, str]:
    """The environment of a child worker: every setting as FLEETWATCH_<NAME>."""
    env = dict(os.environ)
    values = {**settings.model_dump(), **overrides}
    for name, value in values.items():
        if value is None:  # unset optional settings stay unset (str(None) would be a value)
            env.pop(f"FLEETWATCH_{name.upper()}", None)
        elif isinstance(value, SecretStr):  # str() would hand the child "**********"
            env[f"FLEETWATCH_{name.upper()}"] = value.get_secret_value()
        else:
            env[f"FLEETWATCH_{name.upper()}"] = str(value)
    return env


@dataclass
class Child:
    """One worker process started by `up`."""

    name: str
    proc: subprocess.Popen[bytes]
    log_file: Path

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_worker(name: str, env: dict[str, str], logs: Path) -> Child:
    """Start `fleetwatch <name>` in its own session (so Ctrl-C reaches only `up`, which stops it in order)."""
    logs.mkdir(parents=True, exist_ok=True)
    log_file = logs / f"{name}.log"
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetwatch.cli", name],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Child(name, proc, log_file)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - our own loopback URL
            return bool(resp.status == 200)
    except OSError:
        return False


def wait_until(check: Callable[[], bool], child: Child | None, timeout_s: float, what: str) -> float:
    """Poll `check` until true; fail early if the child died. Returns seconds waited."""
    start = time.monotonic()
    while not check():
        if child is not None and child.proc.poll() is not None:
            raise FleetwatchError(f"{child.name} exited with {child.proc.returncode}; see {child.log_file}")
        if time.monotonic() - start > timeout_s:
            raise FleetwatchError(f"{what} not ready after {timeout_s:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - start


class CaseWatcher(threading.Thread):
    """Follows the case topic from its end and hands each event to `on_event` (kafka-python, in a thread)."""

    def __init__(self, bootstrap: str, topic: str, on_event: Callable[[CaseEvent], None]) -> None:
        super().__init__(name="case-watcher", daemon=True)
        self.bootstrap, self.topic, self.on_event = bootstrap, topic, on_event
        self.stopping = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        try:
            parts = consumer.partitions_for_topic(self.topic) or set()
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            consumer.seek_to_end(*tps)
            for tp in tps:
                consumer.position(tp)
            self.ready.set()
            while not self.stopping.is_set():
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        try:
                            self.on_event(CaseEvent.model_validate_json(record.value))
                        except ValueError as exc:
                            log.warning("unreadable case event at offset %s: %s", record.offset, exc)
        finally:
            consumer.close()


@dataclass
class Stack:
    """Everything `up` started, so it can stop it in reverse order."""

    settings: Settings
    broker: LocalKafka | LocalKafkaCluster | None = None
    children: list[Child] = field(default_factory=list)
    watcher: CaseWatcher | None = None
    demo: Any = None
    catchers: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stopping.set()
        for child in reversed(self.children):
            _say(f"stopping {child.name} (pid {child.proc.pid})")
            child.stop()
        for catcher in reversed(self.catchers):
            catcher.stop()
        if self.demo is not None:
            self.demo.stop()
        policy_clock_file(self.settings).unlink(missing_ok=True)
        if self.broker is not None:
            _say(f"stopping Kafka (pid {', '.join(map(str, self.broker.pids))})")
            self.broker.stop()


def run_up(
    settings: Settings,
    external_kafka: bool,
    demo: bool = True,
    run_for_s: float | None = None,
    sim_servers: int | None = None,
) -> int:
    """Run the whole monitor until Ctrl-C (or for `run_for_s` seconds). Returns the exit code."""
    logging.basicConfig(level=logging.WARNING)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(settings)
    stopping = threading.Event()
    # Ctrl-C and SIGTERM both stop the stack in order. SIGINT is set explicitly: a process started in the
    # background by a non-interactive shell inherits SIGINT as ignored, and Python then keeps ignoring it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        return _up(stack, external_kafka, demo, run_for_s, stopping, sim_servers)
    except KeyboardInterrupt:
        return 0
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            stack.stop()
        _say("stopped")


QUIET = frozenset({"notification.requested", "notification.sent"})
"""Case events `up` does not print: the catchers' [mail]/[page]/[call] lines show those deliveries."""


def _print_event(event: CaseEvent) -> None:
    if event.type.value not in QUIET:
        print(format_case_event(event), flush=True)


def _mail_line(sender: str, recipients: list[str], subject: str) -> None:
    print(f"{'':>21}  [mail] to {', '.join(recipients)}: {subject}", flush=True)


def hook_text(kind: str, body: dict[str, Any]) -> str:
    """One line for a page, call or webhook the catcher received."""
    if kind == "page":
        payload = body.get("payload") or {}
        return f"[page] {body.get('routing_key')}: {payload.get('summary')}"
    if kind == "call":
        return f"[call] {body.get('name')} {body.get('phone')}: {body.get('message')}"
    return f"[{kind}] {body.get('key')}"


def _hook_line(kind: str, body: dict[str, Any]) -> None:
    print(f"{'':>21}  {hook_text(kind, body)}", flush=True)


def _notification_setup(stack: Stack, settings: Settings, demo: bool) -> dict[str, Any]:
    """Start the demo's mail and webhook catchers; the notifier settings that point at them."""
    from fleetwatch.mailcatcher import MailCatcher
    from fleetwatch.webhook_catcher import WebhookCatcher

    out: dict[str, Any] = {}
    if demo:
        for name, file in (
            ("contacts_file", "contacts.yaml"),
            ("sla_policy_file", "sla-policy.yaml"),
            ("partners_file", "partners.yaml"),
            ("kb_dir", "kb"),
            ("releases_dir", "releases"),
        ):
            if getattr(settings, name) is None and (EXAMPLES / file).exists():
                out[name] = EXAMPLES / file
    mail = MailCatcher(settings.data_dir / "mail", port=settings.mail_catcher_port, callback=_mail_line)
    mail.start()
    stack.catchers.append(mail)
    hooks = WebhookCatcher(port=0, path=settings.data_dir / "webhooks.jsonl", callback=_hook_line)
    hooks.start()
    stack.catchers.append(hooks)
    out.update(
        smtp_host="127.0.0.1",
        smtp_port=mail.port,
        pager_url=settings.pager_url or hooks.pager_url,
        call_url=settings.call_url or hooks.call_url,
    )
    _say(
        f"notifications: SMTP catcher on 127.0.0.1:{mail.port} (mail kept in {settings.data_dir / 'mail'}), "
        f"pager/call webhooks on {hooks.base_url}"
    )
    return out


def ready_lines(settings: Settings, overrides: dict[str, Any], demo: bool, portal_url: str) -> list[str]:
    """What `up` says once its workers serve: where each front door is (demo names only with the demo)."""
    sign_in = (
        " (demo sign-in: nadia / northwind-demo for Northwind Partners, tom / telco-demo for Telco ISP, "
        "sam / staff-demo for support staff)"
        if demo
        else " (sign-ins: the users of FLEETWATCH_PARTNERS_FILE)"
        if settings.partners_file
        else " (no FLEETWATCH_PARTNERS_FILE: nobody can sign in yet)"
    )
    lines = [f"partner portal and staff console: {portal_url}{sign_in}"]
    analysts_port = overrides.get("analysts_port", settings.analysts_port)
    if analysts_port:
        who = (
            "user analyst, password analyst-demo"
            if "analysts_password" in overrides
            else f"user {settings.analysts_user}, password FLEETWATCH_ANALYSTS_PASSWORD"
        )
        lines.append(
            f"analysts: the history store read-only over ClickHouse's HTTP interface on "
            f"http://{settings.analysts_host}:{analysts_port} ({who}); "
            "`fleetwatch report uptime|sla|capacity|cases` for the reports"
        )
    example = " (e.g. from helpdesk@northwind.example)" if demo else ""
    lines.append(
        f"email intake: send mail to {settings.smtp_sender} through SMTP {settings.intake_host}:"
        f"{settings.intake_port}{example}; replies land in the SMTP catcher"
    )
    server = "demo-srv-03" if demo else "SERVER"
    lines.append(f"case events print below; `fleetwatch history {server}` shows a server's history")
    return lines


def listening_ports(
    settings: Settings, overrides: dict[str, Any], external_kafka: bool
) -> tuple[dict[str, int], dict[str, str]]:
    """The port settings `up` (and its children) listen on, with each one's bind address."""
    metrics = settings.metrics_host
    hosts = {
        "portal_port": settings.portal_host,
        "intake_port": settings.intake_host,
        "mail_catcher_port": "127.0.0.1",
        "analysts_port": settings.analysts_host,
        "sink_http_port": settings.sink_http_host,
        "probe_metrics_port": metrics,
        "stream_metrics_port": metrics,
        "notify_metrics_port": metrics,
        "stream_web_port": "127.0.0.1",
    }
    if not external_kafka:
        hosts.update(local_kafka_port="127.0.0.1", local_kafka_controller_port="127.0.0.1")
    values = {**settings.model_dump(), **overrides}
    return {name: int(values[name]) for name in hosts}, hosts


def plan_listening_ports(
    settings: Settings,
    overrides: dict[str, Any],
    external_kafka: bool,
    probe: Callable[[str, int], bool] = port_taken,
) -> tuple[Settings, dict[str, Any]]:
    """Move default ports that are taken to free ones (said on the console); an explicit port that is taken
    fails at once (`PortTakenError` names its setting). Returns the settings and overrides to use."""
    wanted, hosts = listening_ports(settings, overrides, external_kafka)
    explicit = explicit_settings(wanted)
    plan = plan_ports(wanted, explicit, taken_ports(hosts, wanted, probe), iter(free_port, None))
    for name, (default, chosen) in plan.moved.items():
        _say(f"port {default} ({env_name(name)}) is taken: using {chosen} instead")
    moved = {name: plan.ports[name] for name in plan.moved}
    in_overrides = {name: port for name, port in moved.items() if name in overrides}
    settings = settings.model_copy(update={k: v for k, v in moved.items() if k not in in_overrides})
    return settings, {**overrides, **in_overrides}


def _up(
    stack: Stack,
    external_kafka: bool,
    demo: bool,
    run_for_s: float | None,
    stopping: threading.Event,
    sim_servers: int | None = None,
) -> int:
    started = time.monotonic()
    overrides: dict[str, Any] = dict(DEMO_CADENCE) if demo else {}
    if demo and stack.settings.embedded_store() and not stack.settings.analysts_port:
        overrides.update(DEMO_ANALYSTS)
    settings, overrides = plan_listening_ports(stack.settings, overrides, external_kafka)
    stack.settings = settings
    if not external_kafka:
        from fleetwatch.kafka_local import ensure_jars

        _say("Kafka 4.4 jars: checking the cache (first run fetches them from Maven Central)")
        ensure_jars()
        broker = local_broker(
            settings.data_dir,
            settings.local_kafka_brokers,
            settings.local_kafka_port,
            settings.local_kafka_controller_port,
            settings.local_kafka_heap,
        )
        _say(f"starting Kafka ({settings.local_kafka_brokers} node(s)) on {broker.bootstrap}")
        broker.start()
        stack.broker = broker
        settings = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
        pids = ", ".join(map(str, broker.pids))
        _say(f"Kafka ready (pid {pids}, {time.monotonic() - started:.1f} s)")
    topics = Topics(settings.topic_prefix)
    created = ensure_topics_of(settings, topics)
    _say(f"topics ready ({len(created)} created)")
    from casefile.signing import load_signer

    signer = load_signer(settings)  # before the children start: engine, sink and CLI read the same key
    _say(f"case events signed with key {signer.key_id} (`fleetwatch audit keys` lists the public keys)")
    if settings.clock_scale != 1.0:
        settings = settings.model_copy(update={"clock_origin_ms": to_epoch_ms(SystemClock().now())})
        stack.settings = settings
        write_policy_clock(settings)
        _say(
            f"policy clock at {settings.clock_scale:g}x: one policy hour every "
            f"{3600 / settings.clock_scale:.0f} real seconds (--clock-scale 1 for real time)"
        )

    if demo:
        from fleetwatch.demo_fleet import DemoFleet, DemoFleetThread

        fleet_thread = DemoFleetThread(DemoFleet())
        servers = fleet_thread.start_serving()
        stack.demo = fleet_thread
        from probes.inventory import publish_inventory

        publish_inventory(settings.kafka_bootstrap, topics, servers, prune=True)
        _say(f"demo fleet: {len(servers)} servers on {fleet_thread.fleet.base_url} (inventory published)")
    if sim_servers:
        from fleetwatch.simfleet.command import up_sim_fleet

        stack.demo = up_sim_fleet(settings.kafka_bootstrap, topics, sim_servers, settings.data_dir, _say)

    overrides.update(_notification_setup(stack, settings, demo))
    env = worker_env(settings, **overrides)
    logs = settings.data_dir / "logs"
    stack.watcher = CaseWatcher(settings.kafka_bootstrap, topics.cases, _print_event)
    stack.watcher.start()
    stack.watcher.ready.wait(30)
    for name in WORKERS:
        child = start_worker(name, env, logs)
        stack.children.append(child)
        _say(f"{name} worker started (pid {child.proc.pid}, log {child.log_file})")
    sink = stack.children[0]
    waited = wait_until(lambda: _http_ok(f"{settings.sink_url()}/healthz"), sink, 120, "sink")
    _say(f"sink ready: ClickHouse store {settings.store_dsn()} ({waited:.1f} s)")
    portal_url = settings.portal_public_url or f"http://{settings.portal_host}:{settings.portal_port}"
    portal = next(c for c in stack.children if c.name == "portal")
    wait_until(lambda: _http_ok(f"{portal_url}/healthz"), portal, 60, "portal")
    for line in ready_lines(settings, overrides, demo, portal_url):
        _say(line)
    _say(f"monitoring. Ctrl-C stops. ({time.monotonic() - started:.1f} s since start)")
    deadline = None if run_for_s is None else time.monotonic() + run_for_s
    while not stopping.is_set():
        for child in stack.children:
            if child.proc.poll() is not None:
                _say(f"{child.name} exited with {child.proc.returncode}; see {child.log_file}")
                return 1
        if deadline is not None and time.monotonic() > deadline:
            return 0
        stopping.wait(0.5)
    return 0
