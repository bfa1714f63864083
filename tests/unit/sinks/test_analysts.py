"""The analysts' endpoint without an engine: statement classifier, requests, errors, start-up checks."""

from __future__ import annotations

import asyncio
import base64

import pytest
from aiohttp.test_utils import make_mocked_request
from pydantic import SecretStr

from fleetcore.errors import ConfigError
from fleetcore.settings import Settings
from sinks.analysts import (
    MAX_QUERY_BYTES,
    QueryRefused,
    Statement,
    classify,
    content_type,
    credentials,
    escape_param,
    leading_keyword,
    parse_error,
    parse_request,
    start_analysts,
    tokenize,
)
from sinks.analysts.access import DENIED_FUNCTIONS

DENIED = DENIED_FUNCTIONS | {"url", "s3", "remote", "executable"}


def refusal(sql: str) -> QueryRefused:
    with pytest.raises(QueryRefused) as caught:
        classify(sql, DENIED)
    return caught.value


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("SELECT count() FROM probe_results", "SELECT"),
        ("select 1", "SELECT"),
        ("  -- a note\n/* and another */ SELECT 1", "SELECT"),
        ("WITH a AS (SELECT 1) SELECT * FROM a", "WITH"),
        ("(SELECT 1) UNION ALL (SELECT 2)", "SELECT"),
        ("SHOW TABLES", "SHOW"),
        ("DESCRIBE TABLE probe_results", "DESCRIBE"),
        ("DESC probe_results", "DESC"),
        ("EXISTS TABLE probe_results", "EXISTS"),
        ("EXPLAIN SELECT 1", "EXPLAIN"),
        ("SELECT 1;", "SELECT"),
        ("SELECT 1 ;; ", "SELECT"),
        ("SELECT ';' AS semicolon, 'file(' AS text", "SELECT"),
    ],
)
def test_reading_statements_pass(sql: str, kind: str) -> None:
    assert classify(sql, DENIED).kind == kind


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO probe_results VALUES ('x')",
        "ALTER TABLE probe_results DELETE WHERE 1",
        "DROP TABLE probe_results",
        "CREATE TABLE t (a UInt8) ENGINE = Memory",
        "TRUNCATE TABLE probe_results",
        "RENAME TABLE a TO b",
        "OPTIMIZE TABLE probe_results FINAL",
        "SYSTEM FLUSH LOGS",
        "KILL QUERY WHERE 1",
        "SET readonly = 0",
        "USE system",
        "GRANT ALL ON *.* TO analyst",
        "ATTACH TABLE t",
        "DETACH TABLE t",
        "/* SELECT */ DELETE FROM probe_results WHERE 1",
        "(INSERT INTO t VALUES (1))",
    ],
)
def test_writes_ddl_and_control_statements_are_refused_as_readonly(sql: str) -> None:
    refused = refusal(sql)
    assert (refused.code, refused.name, refused.status) == (164, "READONLY", 403)
    assert "readonly" in refused.message


@pytest.mark.parametrize(
    "sql", ["SELECT 1; SELECT 2", "SELECT 1; DROP TABLE t", "SELECT 1;\nKILL QUERY WHERE 1"]
)
def test_several_statements_are_refused(sql: str) -> None:
    refused = refusal(sql)
    assert (refused.code, refused.status) == (62, 400)
    assert "Multi-statements" in refused.message


@pytest.mark.parametrize("sql", ["", "   ", "-- nothing\n", ";"])
def test_an_empty_query_is_a_syntax_error(sql: str) -> None:
    assert refusal(sql).code == 62


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT file('/etc/passwd')",
        "SELECT `file`('/etc/passwd')",
        "SELECT \"file\"('/etc/passwd')",
        "SELECT `fi\\le`('/etc/passwd')",
        "SELECT FILE ('/etc/passwd')",
        "SELECT * FROM url('http://example.com', 'LineAsString')",
        "DESCRIBE TABLE s3('https://bucket/x.csv')",
        "SELECT * FROM (SELECT * FROM remote('h:9000', system.one))",
        "SELECT * FROM executable('x.sh', 'TSV', 'a String')",
        "SELECT * FROM eval('SELECT 1')",
        "SELECT * FROM Python(frame)",
    ],
)
def test_denied_functions_are_refused_in_any_spelling(sql: str) -> None:
    refused = refusal(sql)
    assert (refused.code, refused.name, refused.status) == (497, "ACCESS_DENIED", 403)


def test_denied_names_are_fine_when_they_are_not_calls() -> None:
    assert classify("SELECT file, url FROM downloads WHERE url = 'file(x)'", DENIED).kind == "SELECT"
    assert classify("SELECT format('{} {}', 1, 2)", DENIED).kind == "SELECT"


def test_into_outfile_is_refused() -> None:
    refused = refusal("SELECT 1 INTO OUTFILE '/tmp/out.csv' FORMAT CSV")
    assert (refused.code, refused.status) == (497, 403)


@pytest.mark.parametrize(
    ("sql", "fmt"),
    [
        ("SELECT 1", None),
        ("SELECT 1 FORMAT JSON", "JSON"),
        ("SELECT 1 format JSONEachRow;", "JSONEachRow"),
        ("SELECT 1 FORMAT Native SETTINGS max_threads = 1", "Native"),
        ("SELECT 1 SETTINGS max_threads = 1 FORMAT CSV", "CSV"),
        ("SELECT format FROM t", None),
        ("SELECT 1 AS format", None),
        ("SELECT 1 AS format FORMAT TSV", "TSV"),
        ("SELECT * FROM (SELECT 1 FORMAT JSON)", None),
    ],
)
def test_the_format_clause_is_found(sql: str, fmt: str | None) -> None:
    assert classify(sql, DENIED) == Statement("SELECT", fmt)


def test_tokens_skip_comments_and_keep_strings_whole() -> None:
    texts = [t.text for t in tokenize("SELECT 'a;b' /* ; */ -- ;\n, `x``y`, \"q\"")]
    assert texts == ["SELECT", "'a;b'", ",", "`x``y`", ",", '"q"']
    assert leading_keyword("((select 1))") == "SELECT"
    assert leading_keyword("'text'") == ""


def test_engine_errors_lose_chdb_repetitions() -> None:
    nested = (
        "Code: 73. DB::Exception: Code: 73. DB::Exception: Unknown format Nope. (UNKNOWN_FORMAT) "
        "(version 26.9.2.1). (UNKNOWN_FORMAT)"
    )
    error = parse_error(nested)
    assert (error.code, error.name, error.message, error.status) == (
        73,
        "UNKNOWN_FORMAT",
        "Unknown format Nope.",
        404,
    )
    timeout = parse_error("Code: 159. DB::Exception: Timeout exceeded: elapsed 5000 ms. (TIMEOUT_EXCEEDED)")
    assert (timeout.code, timeout.status) == (159, 408)
    assert parse_error("boom").status == 500


def test_status_follows_clickhouse() -> None:
    def status(name: str) -> int:
        return QueryRefused(0, name, "x").status

    assert status("AUTHENTICATION_FAILED") == 403
    assert status("REQUIRED_PASSWORD") == 401
    assert status("SYNTAX_ERROR") == 400
    assert status("UNKNOWN_TABLE") == 404
    assert status("MEMORY_LIMIT_EXCEEDED") == 500


def test_escape_param_keeps_the_text_exact() -> None:
    assert escape_param("a\\b\n\tc\r\0'") == "a\\\\b\\n\\tc\\r\\0'"


def test_request_from_url_and_body() -> None:
    wanted = parse_request(
        {"query": "SELECT {n:UInt8}", "param_n": "7", "database": "other", "default_format": "JSON"},
        b"",
        "fleetwatch",
    )
    assert (wanted.sql, wanted.database, wanted.default_format, wanted.params) == (
        "SELECT {n:UInt8}",
        "other",
        "JSON",
        {"n": "7"},
    )
    assert wanted.query_id  # generated
    both = parse_request({"query": "SELECT 1", "query_id": "q-1"}, b"FORMAT JSON", "fleetwatch")
    assert (both.sql, both.database, both.default_format, both.query_id) == (
        "SELECT 1\nFORMAT JSON",
        "fleetwatch",
        "TabSeparated",
        "q-1",
    )
    assert parse_request({}, b"SELECT 2", "fleetwatch").sql == "SELECT 2"
    odd = parse_request({"query": "SELECT 1", "query_id": "a\r\nX-Evil: 1"}, b"", "fleetwatch")
    assert odd.query_id != "a\r\nX-Evil: 1"  # header-safe ids only; others get a fresh one


def test_an_insert_is_refused_before_its_data_is_read() -> None:
    with pytest.raises(QueryRefused) as caught:
        parse_request({"query": "INSERT INTO probe_results FORMAT Native"}, b"\xff\xfe binary", "fleetwatch")
    assert caught.value.status == 403
    with pytest.raises(QueryRefused) as caught:
        parse_request({}, b"INSERT INTO probe_results FORMAT Native\n\xff\xfe", "fleetwatch")
    assert caught.value.status == 403


@pytest.mark.parametrize(
    ("values", "body", "code"),
    [
        ({"query": "SELECT 1", "database": "x; DROP"}, b"", 81),
        ({"query": "SELECT 1", "default_format": "JSON; x"}, b"", 73),
        ({"query": "SELECT 1", "param_a-b": "1"}, b"", 36),
        ({}, b"SELECT '\xff'", 36),
        ({"query": "SELECT '" + "x" * MAX_QUERY_BYTES + "'"}, b"", 393),
    ],
)
def test_bad_requests_are_clickhouse_errors(values: dict[str, str], body: bytes, code: int) -> None:
    with pytest.raises(QueryRefused) as caught:
        parse_request(values, body, "fleetwatch")
    assert caught.value.code == code
    assert 400 <= caught.value.status < 500


def test_content_types() -> None:
    assert content_type("TabSeparated").startswith("text/tab-separated-values")
    assert content_type("JSONEachRow").startswith("application/json")
    assert content_type("Native") == "application/octet-stream"
    assert content_type("CSVWithNames").startswith("text/csv")
    assert content_type("Pretty").startswith("text/plain")


def test_start_needs_a_port_an_embedded_store_and_a_password() -> None:
    assert asyncio.run(start_analysts(Settings(analysts_port=0))) is None
    server = Settings(analysts_port=18123, clickhouse_dsn="http://ch:8123", analysts_password=SecretStr("x"))
    assert asyncio.run(start_analysts(server)) is None
    with pytest.raises(ConfigError, match="analysts_password"):
        asyncio.run(start_analysts(Settings(analysts_port=18123, clickhouse_dsn="chdb:///tmp/x")))


def test_credentials_come_from_headers_basic_auth_or_parameters() -> None:
    def given(path: str = "/", **headers: str) -> tuple[str, str] | None:
        return credentials(make_mocked_request("GET", path, headers=headers))

    basic = base64.b64encode(b"analyst:pa:ss").decode()
    assert given(Authorization=f"Basic {basic}") == ("analyst", "pa:ss")
    assert given(**{"X-ClickHouse-User": "analyst", "X-ClickHouse-Key": "k"}) == ("analyst", "k")
    assert given("/?user=analyst&password=p") == ("analyst", "p")
    assert given(Authorization="Basic not-base64!") == ("", "")
    assert given(Authorization="Bearer token") is None
    assert given() is None
