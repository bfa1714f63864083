"""`fleetwatch portal`: the partner portal and staff console as one aiohttp process.

`run(settings)` loads the partner directory, creates missing topics, starts the read model (it follows the
cases topic from the beginning), an aiokafka producer (acks=all) for case commands and portal audit events,
and serves the app on `portal_host:portal_port` until SIGINT/SIGTERM. `Portal` is the same thing as an async
start/stop pair, so tests can run a real portal in-process.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import secrets
import signal
import sys

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from fleetcore.clock import Clock, clock_for
from fleetcore.errors import BrokerError, ConfigError
from fleetcore.kafka_admin import ensure_topics
from fleetcore.logs import setup_logging
from fleetcore.settings import Settings
from portal.directory import Directory, hash_password, load_directory, token_digest
from portal.readmodel import ReadModel
from portal.web.app import create_app
from schemas.commands import CaseCommand
from schemas.portal import PortalAuditEvent
from schemas.topics import Topics

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 30.0


class CommandNotSent(BrokerError):
    """A case command or audit event could not be written to Kafka (the request fails with 503)."""


class Portal:
    """A running portal: read model, producer, HTTP site. `await start()`, then `await stop()`."""

    def __init__(self, settings: Settings, directory: Directory | None = None, clock: Clock | None = None):
        self.settings = settings
        self.topics = Topics(prefix=settings.topic_prefix)
        self.directory = directory if directory is not None else load_directory(settings.partners_file)
        self.clock = clock or clock_for(settings.clock_scale, settings.clock_origin_ms)
        self.readmodel = ReadModel(settings.kafka_bootstrap, self.topics.cases, settings)
        self._producer: AIOKafkaProducer | None = None
        self._runner: web.AppRunner | None = None
        self.port = settings.portal_port

    @property
    def url(self) -> str:
        """Where the portal answers (the configured public URL, else http://host:port)."""
        if self.settings.portal_public_url:
            return self.settings.portal_public_url.rstrip("/")
        return f"http://{self.settings.portal_host}:{self.port}"

    @property
    def app(self) -> web.Application:
        """The running aiohttp app (after `start`)."""
        if self._runner is None:
            raise RuntimeError("the portal is not started")
        return self._runner.app

    async def _send(self, topic: str, key: str, value: bytes) -> None:
        if self._producer is None:
            raise CommandNotSent("the portal is not started")
        try:
            await asyncio.wait_for(
                self._producer.send_and_wait(topic, value=value, key=key.encode("utf-8")), SEND_TIMEOUT_S
            )
        except (KafkaError, TimeoutError) as exc:
            raise CommandNotSent(f"could not write to {topic}: {exc!r}") from exc

    async def send_command(self, command: CaseCommand) -> None:
        """Write one case command (key: case id); returns once the broker has it."""
        await self._send(self.topics.case_commands, command.case_id, command.model_dump_json().encode())

    async def audit(self, event: PortalAuditEvent) -> None:
        """Write one portal audit event (key: user name)."""
        await self._send(self.topics.portal_audit, event.username, event.model_dump_json().encode())

    async def start(self) -> None:
        settings = self.settings
        if settings.create_topics:
            await asyncio.to_thread(ensure_topics, settings.kafka_bootstrap, self.topics)
        self.readmodel.start()
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            client_id="fleetwatch-portal",
        )
        try:
            await producer.start()
        except KafkaError as exc:
            self.readmodel.stop()
            raise BrokerError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
        self._producer = producer
        app = create_app(
            settings, self.directory, self.readmodel, self.send_command, self.audit, clock=self.clock
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.portal_host, settings.portal_port)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        log.info("portal on %s (partners file %s)", self.url, settings.partners_file)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        await asyncio.to_thread(self.readmodel.stop)


async def serve(settings: Settings) -> None:
    """Run the portal until SIGINT or SIGTERM."""
    portal = Portal(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await portal.start()
    try:
        await stopping.wait()
    finally:
        await portal.stop()


def run(settings: Settings) -> None:
    """Entry point of `fleetwatch portal`: serve until SIGINT/SIGTERM. Blocking."""
    setup_logging(settings.log_level)
    if settings.partners_file is None:
        log.warning("no partner directory (FLEETWATCH_PARTNERS_FILE): nobody can sign in")
    asyncio.run(serve(settings))


def command(action: str, settings: Settings) -> int:
    """`fleetwatch portal [serve|hash-password|new-token]`."""
    if action == "hash-password":
        if sys.stdin.isatty():
            password = getpass.getpass("password: ")
            if getpass.getpass("again: ") != password:
                raise ConfigError("the passwords differ")
        else:
            password = sys.stdin.readline().rstrip("\n")
        if len(password) < 8:
            raise ConfigError("use at least 8 characters")
        print(hash_password(password))
        return 0
    if action == "new-token":
        token = "fwt_" + secrets.token_urlsafe(32)
        print(f"token:  {token}\nsha256: {token_digest(token)}  (put this in the user's api_token_sha256)")
        return 0
    run(settings)
    return 0
