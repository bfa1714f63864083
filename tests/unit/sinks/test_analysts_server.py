"""The analysts' endpoint over HTTP on the real embedded engine: sign-in throttle and fair query slots."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import BasicAuth, ClientResponse, TCPConnector, web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from fleetcore.settings import Settings
from fleetcore.throttle import SignInThrottle, ThrottlePolicy
from sinks.analysts import AnalystsServer, ReadOnlyEngine
from tests.helpers import eventually

PASSWORD = "analyst-secret"
Client = TestClient[web.Request, web.Application]


class StepClock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    def scale(self) -> float:
        return 1.0


@pytest.fixture
async def rig() -> AsyncIterator[tuple[AnalystsServer, TestServer, StepClock]]:
    settings = Settings(
        analysts_port=1,
        analysts_password=SecretStr(PASSWORD),
        analysts_max_execution_s=3.0,
        analysts_query_slots=4,
        analysts_query_slots_per_user=2,
        clickhouse_database="default",
    )
    engine = await asyncio.to_thread(ReadOnlyEngine.open, "chdb://", settings)
    clock = StepClock()
    server = AnalystsServer(settings, engine, clock=clock)
    test_server = TestServer(server.app(), host="127.0.0.1")
    await test_server.start_server()
    try:
        yield server, test_server, clock
    finally:
        await test_server.close()


async def client_from(server: TestServer, source: str) -> Client:
    client: Client = TestClient(server, connector=TCPConnector(local_addr=(source, 0)))
    await client.start_server()
    return client


async def query(client: Client, sql: str, password: str = PASSWORD) -> ClientResponse:
    response = await client.post("/", data=sql.encode(), auth=BasicAuth("analyst", password))
    await response.read()
    return response


async def test_a_burst_of_wrong_passwords_is_throttled_but_not_the_owner(
    rig: tuple[AnalystsServer, TestServer, StepClock],
) -> None:
    _, test_server, clock = rig
    guesser = await client_from(test_server, "127.0.0.1")
    owner = await client_from(test_server, "127.0.0.2")
    try:
        statuses = [(await query(guesser, "SELECT 1", password=f"guess-{n}")).status for n in range(300)]
        free = ThrottlePolicy().free_failures
        assert statuses[: free + 1] == [403] * (free + 1)
        assert set(statuses[free + 1 :]) == {429}
        throttled = await query(guesser, "SELECT 1")  # even the right password waits its turn
        assert throttled.status == 429
        assert throttled.headers["Retry-After"] == "1"
        assert throttled.headers["X-ClickHouse-Exception-Code"] == "201"
        text = await throttled.text()
        assert text.startswith("Code: 201. DB::Exception: analyst: too many failed sign-ins from 127.0.0.1")
        assert "(QUOTA_EXCEEDED)" in text
        # another client that has not failed signs in
        assert (await query(owner, "SELECT 1")).status == 200
        clock.at += timedelta(seconds=1)
        assert (await query(guesser, "SELECT 1")).status == 200  # the block is over, and success clears it
        assert (await query(guesser, "SELECT 1", password="wrong")).status == 403
    finally:
        await guesser.close()
        await owner.close()


async def test_under_attack_failing_addresses_are_blocked_at_once_and_a_clean_one_still_signs_in(
    rig: tuple[AnalystsServer, TestServer, StepClock],
) -> None:
    server, test_server, _ = rig
    server.throttle = SignInThrottle(ThrottlePolicy(account_failures=3, account_delay_s=0.01))
    clients = [await client_from(test_server, f"127.0.0.{n}") for n in range(1, 6)]
    try:
        for client in clients[:3]:  # a guesser spread over three addresses, one failure each
            assert (await query(client, "SELECT 1", password="guess")).status == 403
        assert server.throttle.under_attack("analyst", server.clock.now())
        assert (await query(clients[3], "SELECT 1", password="guess")).status == 403
        assert (await query(clients[3], "SELECT 1", password="guess")).status == 429  # after one failure
        assert (await query(clients[4], "SELECT 1")).status == 200  # slowed down, never refused
    finally:
        for client in clients:
            await client.close()


async def test_one_analyst_cannot_hold_every_slot(rig: tuple[AnalystsServer, TestServer, StepClock]) -> None:
    server, test_server, _ = rig
    hog = await client_from(test_server, "127.0.0.1")
    other = await client_from(test_server, "127.0.0.2")
    try:
        # as many slow queries as there are slots (each ends at max_execution_time: 408)
        slow = [
            asyncio.create_task(query(hog, "SELECT count() FROM system.numbers"))
            for _ in range(server.slots.total)
        ]
        hog_id = "analyst@127.0.0.1"
        await eventually(
            lambda: server.slots.running(hog_id) == 2 and server.slots.waiting(hog_id) == 2,
            10,
            "the hog's share running and the rest queued",
        )
        fast = await query(other, "SELECT 1")
        assert fast.status == 200
        assert not any(task.done() for task in slow)  # answered while the hog's queries still ran
        statuses = [response.status for response in await asyncio.gather(*slow)]
        # the share's two ran to the time limit; the queued two ran after them or gave up waiting (503)
        assert statuses.count(408) >= 2
        assert set(statuses) <= {408, 503}
    finally:
        await hog.close()
        await other.close()
