"""The analysts' endpoint on a real sink: clickhouse-connect reads through it; writes and DDL fail."""

from __future__ import annotations

import base64
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from pydantic import SecretStr

from fleetcore.settings import Settings
from schemas.topics import Topics
from sinks.service import SinkService
from tests.integration.sinks.conftest import free_port, probe, produce_batches, wait_for

pytestmark = pytest.mark.integration

PASSWORD = "analyst-secret"
SERVERS = ("srv-a", "srv-b", "srv-c")
PER_SERVER = 40


@pytest.fixture
def sink(kafka_bootstrap: str, topics: Topics, sink_settings: Settings) -> Iterator[SinkService]:
    """A running sink with the analysts' endpoint on, its store holding 120 probe results."""
    settings = sink_settings.model_copy(
        update={
            "analysts_port": free_port(),
            "analysts_password": SecretStr(PASSWORD),
            "analysts_max_execution_s": 2.0,
            "analysts_max_memory_bytes": 64 << 20,
            "analysts_max_result_bytes": 1 << 20,
        }
    )
    results = [probe(s, n) for s in SERVERS for n in range(PER_SERVER)]
    produce_batches(kafka_bootstrap, topics.probe_results, results, per_batch=10)
    service = SinkService(settings, grace_ms=200)
    thread = threading.Thread(target=service.run, name="sink-under-test")
    thread.start()
    try:
        assert service.ready.wait(60)
        assert service.analysts_url == f"http://127.0.0.1:{settings.analysts_port}"
        client = analyst_client(service)
        try:
            wait_for(
                lambda: client.command("SELECT count() FROM probe_results") == len(results),
                120,  # a loaded 2-core box once needed more than 60 s (sink start + first chunk)
                "all probes stored",
            )
        finally:
            client.close()
        yield service
    finally:
        service.stop_event.set()
        thread.join(timeout=60)
    assert not thread.is_alive()


def analyst_client(service: SinkService, password: str = PASSWORD, **options: object) -> Client:
    return clickhouse_connect.get_client(
        host="127.0.0.1",
        port=service.settings.analysts_port,
        username="analyst",
        password=password,
        **options,
    )


def http(
    service: SinkService,
    query: str | None = None,
    *,
    body: bytes | None = None,
    auth: tuple[str, str] | None = ("analyst", PASSWORD),
    headers: dict[str, str] | None = None,
    path: str = "/",
    **params: str,
) -> tuple[int, dict[str, str], str]:
    """A raw request to the endpoint: (status, headers, body text)."""
    if query is not None:
        params["query"] = query
    url = f"{service.analysts_url}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url, data=body, headers=dict(headers or {}))
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_clickhouse_connect_reads_the_store(sink: SinkService) -> None:
    client = analyst_client(sink)
    try:
        assert client.query("SELECT count() FROM probe_results").result_rows == [(len(SERVERS) * PER_SERVER,)]
        assert client.server_version == client.command("SELECT version()")
        per_server = client.query(
            "SELECT server_id, count() FROM probe_results WHERE server_id IN {ids:Array(String)} "
            "AND latency_ms >= {floor:UInt32} GROUP BY server_id ORDER BY server_id",
            parameters={"ids": ["srv-a", "srv-c", "x' OR 1=1 --"], "floor": 0},
        )
        assert per_server.result_rows == [("srv-a", PER_SERVER), ("srv-c", PER_SERVER)]
        # a value is a value: the quote in it neither breaks nor widens the query
        tricky = client.query(
            "SELECT count() FROM probe_results WHERE server_id = {s:String}",
            parameters={"s": "srv-a' OR '1'='1"},
        )
        assert tricky.result_rows == [(0,)]
        frame = client.query_df(
            "SELECT server_id, count() AS n FROM probe_results GROUP BY server_id ORDER BY server_id"
        )
        assert list(frame["server_id"]) == list(SERVERS)
        assert list(frame["n"]) == [PER_SERVER] * len(SERVERS)
        table = client.query_arrow("SELECT probe_id FROM probe_results WHERE server_id = 'srv-b'")
        assert table.num_rows == PER_SERVER
        assert "probe_results" in client.command("SHOW TABLES")
        assert client.query("DESCRIBE TABLE probe_results").result_rows
        assert client.query("SELECT * FROM probe_results LIMIT 0").column_names[0] == "server_id"
    finally:
        client.close()
    form_client = analyst_client(sink, form_encode_query_params=True)
    try:
        rows = form_client.query(
            "SELECT count() FROM probe_results WHERE server_id = {s:String}", parameters={"s": "srv-b"}
        )
        assert rows.result_rows == [(PER_SERVER,)]
    finally:
        form_client.close()


def test_the_http_interface_looks_like_clickhouse(sink: SinkService) -> None:
    assert http(sink, path="/ping", auth=None)[::2] == (200, "Ok.\n")
    assert http(sink, auth=None)[::2] == (200, "Ok.\n")
    status, headers, text = http(
        sink,
        "SELECT server_id FROM probe_results WHERE server_id = {s:String} LIMIT 2",
        default_format="JSONEachRow",
        param_s="srv-a",
        query_id="analyst-q-1",
    )
    assert status == 200
    assert text == '{"server_id":"srv-a"}\n' * 2
    assert headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert headers["X-ClickHouse-Query-Id"] == "analyst-q-1"
    assert headers["X-ClickHouse-Timezone"]
    assert headers["X-ClickHouse-Server-Display-Name"]
    assert headers["Content-Type"].startswith("application/json")
    assert '"result_rows":"2"' in headers["X-ClickHouse-Summary"]
    status, headers, text = http(sink, body=b"SELECT count() FROM probe_results FORMAT CSV")
    assert (status, text, headers["X-ClickHouse-Format"]) == (200, f"{len(SERVERS) * PER_SERVER}\n", "CSV")
    # X-ClickHouse-User/Key sign-in, and another database
    status, _, text = http(
        sink,
        "SELECT currentDatabase()",
        auth=None,
        headers={"X-ClickHouse-User": "analyst", "X-ClickHouse-Key": PASSWORD},
        database="information_schema",
    )
    assert (status, text) == (200, "information_schema\n")
    status, headers, text = http(sink, "SELECT * FROM no_such_table")
    assert status == 404
    assert text.startswith("Code: 60. DB::Exception: ")
    assert headers["X-ClickHouse-Exception-Code"] == "60"


def test_sign_in_is_required(sink: SinkService) -> None:
    with pytest.raises(DatabaseError) as caught:
        analyst_client(sink, password="wrong")
    assert "516" in str(caught.value)
    status, headers, text = http(sink, "SELECT 1", auth=("analyst", "wrong"))
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "516")
    assert "Authentication failed" in text
    status, headers, _ = http(sink, "SELECT 1", auth=("root", PASSWORD))
    assert status == 403
    status, headers, _ = http(sink, "SELECT 1", auth=None)
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (401, "194")


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO probe_results (server_id, probe_id) VALUES ('evil', 'evil')",
        "ALTER TABLE probe_results DELETE WHERE 1",
        "DROP TABLE probe_results",
        "CREATE TABLE evil (a UInt8) ENGINE = Memory",
        "TRUNCATE TABLE probe_results",
        "SYSTEM DROP MARK CACHE",
        "KILL QUERY WHERE 1",
        "SET max_execution_time = 1000",
    ],
)
def test_writes_and_ddl_are_refused(sink: SinkService, statement: str) -> None:
    client = analyst_client(sink)
    try:
        with pytest.raises(DatabaseError) as caught:
            client.command(statement)
        assert "164" in str(caught.value)
        assert client.command("SELECT count() FROM probe_results") == len(SERVERS) * PER_SERVER
        assert client.command("EXISTS TABLE evil") == 0
    finally:
        client.close()
    status, headers, text = http(sink, body=statement.encode())
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "164")
    assert text.startswith("Code: 164. DB::Exception: ")


@pytest.mark.parametrize("compress", [True, False])
def test_client_inserts_are_refused(sink: SinkService, compress: bool) -> None:
    client = analyst_client(sink, compress=compress)
    try:
        with pytest.raises(DatabaseError) as caught:
            client.insert("probe_results", [["evil", "evil"]], column_names=["server_id", "probe_id"])
        assert "164" in str(caught.value)
        assert client.command("SELECT count() FROM probe_results") == len(SERVERS) * PER_SERVER
    finally:
        client.close()


def test_escapes_and_limits_are_refused(sink: SinkService, tmp_path: Path) -> None:
    outfile = tmp_path / "out.csv"
    cases = [
        ("SELECT 1; DROP TABLE probe_results", 400, "62"),
        ("SELECT 1 FORMAT TSV; KILL QUERY WHERE 1", 400, "62"),
        ("SELECT file('/etc/hostname')", 403, "497"),
        ("SELECT `file`('/etc/hostname')", 403, "497"),
        ("DESCRIBE file('/etc/hostname', 'CSVWithNames')", 403, "497"),
        ("SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')", 403, "497"),
        (f"SELECT 1 INTO OUTFILE '{outfile}'", 403, "497"),
        ("SELECT 1 SETTINGS readonly = 0", 403, "164"),
        ("SELECT 1 SETTINGS max_execution_time = 1000", 403, "164"),
        ("SELECT count() FROM system.numbers", 408, "159"),  # analysts_max_execution_s
        ("SELECT groupArray(number) FROM numbers(50000000)", 500, "241"),  # analysts_max_memory_bytes
        ("SELECT number FROM numbers(1000000)", 500, "396"),  # analysts_max_result_bytes
    ]
    for statement, status, code in cases:
        got, headers, text = http(sink, body=statement.encode())
        assert (got, headers.get("X-ClickHouse-Exception-Code")) == (status, code), (statement, text)
        assert text.startswith(f"Code: {code}. DB::Exception: "), text
        assert "formatQuerySingleLine" not in text
    assert not outfile.exists()
    # a failed query leaves nothing behind for the next one
    assert http(sink, body=b"SELECT 42")[::2] == (200, "42\n")


def test_the_server_is_not_revealed(sink: SinkService) -> None:
    """The outside review's findings, each now a ClickHouse-style 4xx."""
    cases = [
        ("SELECT getServerSetting('path')", 403, "497"),
        ("SELECT * FROM system.disks", 403, "497"),
        ("SELECT name, data_path FROM system.databases", 403, "497"),
        ("SELECT count() FROM system.stack_trace", 403, "497"),
        ('SELECT * FROM "SYSTEM"."DISKS"', 403, "497"),
        ("SELECT * FROM merge('system', '^disks$')", 403, "497"),
        ("SELECT * FROM clusterAllReplicas('default', system.disks)", 403, "497"),
        ("WITH d AS (SELECT * FROM system.processes) SELECT * FROM d", 403, "497"),
        ("SELECT 1 -- \nDROP TABLE x", 400, "62"),
    ]
    for statement, status, code in cases:
        got, headers, text = http(sink, body=statement.encode())
        assert (got, headers.get("X-ClickHouse-Exception-Code")) == (status, code), (statement, text)
        assert text.startswith(f"Code: {code}. DB::Exception: "), text
        assert "/" not in text.split("(version")[0] or "path" not in text  # no data path in the answer
    got, headers, text = http(sink, "SELECT * FROM disks", database="system")
    assert (got, headers["X-ClickHouse-Exception-Code"]) == (403, "497"), text
    client = analyst_client(sink)  # what clickhouse-connect needs at connect time still answers
    try:
        tables = client.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = currentDatabase() "
            "AND table_name = 'probe_results'"
        )
        assert tables.result_rows == [("probe_results",)]
        columns = client.query(
            "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'probe_results' "
            "AND name = 'server_id'"
        )
        assert columns.result_rows == [("server_id",)]
    finally:
        client.close()


def from_address(service: SinkService, source: str, sql: str, password: str) -> tuple[int, dict[str, str]]:
    """POST `sql` from the loopback address `source`: (status, headers)."""
    assert service.analysts_url is not None
    url = urllib.parse.urlsplit(service.analysts_url)
    conn = HTTPConnection(url.hostname or "", url.port, timeout=30, source_address=(source, 0))
    token = base64.b64encode(f"analyst:{password}".encode()).decode()
    try:
        conn.request("POST", "/", body=sql.encode(), headers={"Authorization": f"Basic {token}"})
        response = conn.getresponse()
        response.read()
        return response.status, dict(response.headers)
    finally:
        conn.close()


def test_wrong_passwords_are_throttled(sink: SinkService) -> None:
    statuses = [from_address(sink, "127.0.0.1", "SELECT 1", f"guess-{n}")[0] for n in range(300)]
    assert statuses.count(403) <= 6
    assert statuses[-1] == 429
    status, headers = from_address(sink, "127.0.0.1", "SELECT 1", PASSWORD)
    assert status == 429
    assert int(headers["Retry-After"]) >= 1
    # an address that has not failed signs in meanwhile
    assert from_address(sink, "127.0.0.2", "SELECT 1", PASSWORD)[0] == 200


def test_one_analyst_cannot_hold_every_slot(sink: SinkService) -> None:
    slots = sink.settings.analysts_query_slots
    done: list[str] = []
    lock = threading.Lock()

    def slow(n: int) -> None:
        # system.numbers never ends: each query runs to analysts_max_execution_s (408)
        status, _ = from_address(sink, "127.0.0.1", "SELECT count() FROM system.numbers", PASSWORD)
        with lock:
            done.append(f"slow-{n}:{status}")

    threads = [threading.Thread(target=slow, args=(n,)) for n in range(slots)]
    for thread in threads:
        thread.start()
    try:
        server = sink.analysts
        assert server is not None
        hog = "analyst@127.0.0.1"
        share = sink.settings.analysts_query_slots_per_user
        wait_for(
            lambda: server.slots.running(hog) == share and server.slots.waiting(hog) == slots - share,
            30,
            "the hog's share running, its other queries queued",
        )
        status, _ = from_address(sink, "127.0.0.2", "SELECT 1", PASSWORD)
        with lock:
            assert status == 200
            assert done == [], done  # answered while every one of the hog's queries was still open
    finally:
        for thread in threads:
            thread.join(timeout=60)
    assert len(done) == slots
