"""The portal app without Kafka for unit tests: the demo directory (its passwords re-hashed with cheap argon2
parameters, so a sign-in costs milliseconds, not the production ~0.1 s of CPU), a read model that is never
started, and command and audit writers that record what they get; clients on aiohttp's test server,
optionally from other loopback addresses (127.0.0.2, ...) so the server sees different peers."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from aiohttp import ClientResponse, TCPConnector, web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from fleetcore.settings import Settings
from portal.directory import Directory, load_directory
from portal.readmodel import ReadModel
from portal.web import auth
from portal.web.app import create_app
from schemas.commands import CaseCommand
from schemas.portal import PortalAuditEvent

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "partners.yaml"
TOKEN_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
USERS = {"nadia": "northwind-demo", "tom": "telco-demo", "sam": "staff-demo"}
NADIA_TOKEN = "fwt_demo_northwind_token"

Client = TestClient[web.Request, web.Application]


class Recorder:
    """The app's command and audit writers: they keep what they are given (or fail, with `fail`)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.audits: list[PortalAuditEvent] = []
        self.commands: list[CaseCommand] = []

    async def audit(self, event: PortalAuditEvent) -> None:
        if self.fail:
            raise OSError("audit topic down")
        self.audits.append(event)

    async def send(self, command: CaseCommand) -> None:
        self.commands.append(command)


@cache
def quick_directory() -> Directory:
    """The demo directory with the same passwords, hashed with argon2id at its lowest cost."""
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    directory = load_directory(EXAMPLE)
    users = {
        name: user.model_copy(update={"password_hash": hasher.hash(USERS[name])})
        for name, user in directory.users.items()
    }
    return directory.model_copy(update={"users": users})


def make_app(recorder: Recorder, state: auth.AuthState | None = None, **settings: object) -> web.Application:
    """The portal app over the demo directory; `state` replaces the auth state built from settings."""
    values: dict[str, object] = {"portal_secret": "unit-test-key", "portal_secure_cookies": False}
    values.update(settings)
    config = Settings.model_validate(values)
    return create_app(
        config,
        quick_directory(),
        ReadModel("127.0.0.1:1", "unused"),
        recorder.send,
        recorder.audit,
        auth_state=state or auth.AuthState.from_settings(config),
    )


async def start(server: TestServer, source: str = "127.0.0.1") -> Client:
    """A client of `server` whose connections come from the loopback address `source`."""
    client: Client = TestClient(server, connector=TCPConnector(local_addr=(source, 0)))
    await client.start_server()
    return client


async def csrf_from_page(client: Client, path: str = "/login") -> str:
    """The CSRF token of the form on `path` (this starts an anonymous session on /login)."""
    response = await client.get(path)
    match = TOKEN_INPUT.search(await response.text())
    assert match, f"no csrf_token on {path}"
    return match.group(1)


async def sign_in(client: Client, user: str, password: str, next_path: str = "/") -> ClientResponse:
    """POST the sign-in form (redirects not followed); the client response."""
    token = await csrf_from_page(client)
    return await client.post(
        "/login",
        data={"username": user, "password": password, "csrf_token": token, "next": next_path},
        allow_redirects=False,
    )
