"""The analysts' read-only endpoint: enough of ClickHouse's HTTP interface over the embedded store.

With a ClickHouse server analysts query it directly. The embedded store (chdb) is locked to the sink's
process, so the sink serves it to analysts' tools (clickhouse-connect's HTTP client, curl, Grafana...) on
its own port (settings.analysts_*), at the root of host:port as those tools expect:

  GET /ping, GET /replicas_status, GET / without a query   "Ok.\\n", no sign-in (health checks)
  GET|POST /   the SQL in `query` (URL or multipart form field) and/or the body; `database`, `default_format`
               (a FORMAT clause wins), `param_<name>` values bound by the engine to `{name:Type}`
               placeholders, `query_id`; every other parameter (the settings clients send) is ignored

Answers carry X-ClickHouse-Format, -Summary, -Timezone, -Query-Id and -Server-Display-Name; errors are
ClickHouse's: "Code: N. DB::Exception: ... (NAME) (version V)" with X-ClickHouse-Exception-Code and
ClickHouse's status for the code (refused writes and DDL: 403).

Security, in layers:
- sign-in: HTTP basic, X-ClickHouse-User/Key headers or user/password parameters, compared in constant
  time with settings.analysts_user / analysts_password (required when the port is on); failures are
  throttled per (user, client address), tighter when the user is under attack (fleetcore.throttle): a
  blocked client gets 429 (QUOTA_EXCEEDED) with Retry-After, its password not even checked;
- the statement's kind: the first keyword must be SELECT, WITH, SHOW, DESCRIBE, EXISTS or EXPLAIN;
- the engine's own parser: `formatQuerySingleLine` refuses multi-statements and gives the canonical text,
  which `classify` checks for the kind again, INTO OUTFILE and calls of `denied` functions; then the
  engine's tree of it (EXPLAIN AST, parameters bound) is checked by `access`: allowed statements, system
  tables and functions only (no paths, disks, stacks, processes, users, server settings; no table
  functions but generators), and the current database may not be `system`;
- the engine's limits: every query runs on a fresh connection opened with readonly=1 (no writes, no
  DDL, no setting may change, so the limits below hold), allow_introspection_functions=0,
  max_execution_time, max_memory_usage and max_result_bytes (result_overflow_mode=throw); the response
  body is capped too;
- query slots (`slots`): settings.analysts_query_slots at once, an analyst (user and address) at most
  analysts_query_slots_per_user of them; their further queries wait without holding a slot, or get 503.
The query runs as the analyst wrote it; parameter values are bound by the engine, never spliced into SQL.

A fresh connection per query also keeps one query's failure from leaking into the next: on a reused chdb
connection, a result-limit error leaves its partial output to the following query.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import chdb
from aiohttp import web

from fleetcore.clock import Clock, SystemClock
from fleetcore.errors import ConfigError, FleetwatchError, StoreError
from fleetcore.settings import Settings
from fleetcore.throttle import SignInThrottle
from history.store import DATABASE_PATTERN, is_embedded, redact
from sinks.analysts import access
from sinks.analysts.slots import QuerySlots, SlotsBusy

log = logging.getLogger(__name__)

# ClickHouse error codes this endpoint answers with itself (the engine's own errors pass through).
BAD_ARGUMENTS = 36
SYNTAX_ERROR = 62
UNKNOWN_FORMAT = 73
UNKNOWN_DATABASE = 81
READONLY = 164
REQUIRED_PASSWORD = 194
TOO_MANY_SIMULTANEOUS_QUERIES = 202
QUOTA_EXCEEDED = 201
QUERY_IS_TOO_LARGE = 393
TOO_MANY_ROWS_OR_BYTES = 396
ACCESS_DENIED = 497
AUTHENTICATION_FAILED = 516

_STATUS_GROUPS: tuple[tuple[int, str], ...] = (
    # ClickHouse's mapping (src/Server/HTTP/exceptionCodeToHTTPStatus.cpp) by error name, except that a
    # refused write or DDL (READONLY) answers 403 here rather than 500, and a bad parameter 400.
    (401, "REQUIRED_PASSWORD"),
    (403, "UNKNOWN_USER WRONG_PASSWORD AUTHENTICATION_FAILED ACCESS_DENIED READONLY"),
    (
        400,
        """BAD_ARGUMENTS CANNOT_COMPILE_REGEXP CANNOT_PARSE_TEXT CANNOT_PARSE_ESCAPE_SEQUENCE
        CANNOT_PARSE_QUOTED_STRING CANNOT_PARSE_DATE CANNOT_PARSE_DATETIME CANNOT_PARSE_NUMBER
        CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING CANNOT_PARSE_IPV4 CANNOT_PARSE_IPV6
        CANNOT_PARSE_INPUT_ASSERTION_FAILED CANNOT_PARSE_UUID DUPLICATE_COLUMN ILLEGAL_COLUMN
        UNKNOWN_ELEMENT_IN_AST UNKNOWN_TYPE_OF_AST_NODE THERE_IS_NO_COLUMN TOO_DEEP_AST TOO_BIG_AST
        UNEXPECTED_AST_STRUCTURE SYNTAX_ERROR INCORRECT_DATA TYPE_MISMATCH
        VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE BAD_QUERY_PARAMETER UNKNOWN_QUERY_PARAMETER""",
    ),
    (
        404,
        """UNKNOWN_TABLE UNKNOWN_FUNCTION UNKNOWN_IDENTIFIER UNKNOWN_TYPE UNKNOWN_STORAGE UNKNOWN_DATABASE
        UNKNOWN_SETTING UNKNOWN_DIRECTION_OF_SORTING UNKNOWN_AGGREGATE_FUNCTION UNKNOWN_FORMAT
        UNKNOWN_DATABASE_ENGINE UNKNOWN_TYPE_OF_QUERY UNKNOWN_ROLE""",
    ),
    (408, "TIMEOUT_EXCEEDED"),
    (429, "QUOTA_EXCEEDED"),
    (413, "QUERY_IS_TOO_LARGE"),
    (501, "NOT_IMPLEMENTED"),
    (503, "SOCKET_TIMEOUT TOO_MANY_SIMULTANEOUS_QUERIES"),
)
_STATUS_BY_NAME = {name: status for status, names in _STATUS_GROUPS for name in names.split()}
"""HTTP status by ClickHouse error name; any other error is a 500."""

READ_KINDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN"})
"""Statement kinds analysts may run; everything else is refused before it reaches the engine."""

MAX_QUERY_BYTES = 256 * 1024
"""Longest SQL text accepted (ClickHouse's default max_query_size)."""
MAX_REQUEST_BYTES = 1024 * 1024
"""Largest request body read."""
DEFAULT_FORMAT = "TabSeparated"
DISPLAY_NAME = "fleetwatch-analysts"
"""X-ClickHouse-Server-Display-Name (not the host's name: hostName() is refused too)."""

_LEXEME = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<comment>--[^\n]*|/\*.*?\*/)
    | (?P<string>'(?:[^'\\]|\\.|'')*')
    | (?P<quoted>`(?:[^`\\]|\\.|``)*`|"(?:[^"\\]|\\.|"")*")
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<number>[0-9][0-9A-Za-z_.]*)
    | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_FORMATTER = "SELECT formatQuerySingleLine({q:String})"
"""The engine's parser as a function: one statement's canonical text, or the parser's error."""
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUERY_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_FORMAT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_ERROR_HEAD = re.compile(r"Code: (\d+)\. DB::Exception: ")
_ERROR_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)")


class QueryRefused(FleetwatchError):
    """An analysts' request the endpoint (or the engine) will not run, as a ClickHouse error."""

    def __init__(self, code: int, name: str, message: str, retry_after: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.name = name
        self.message = message
        self.retry_after = retry_after
        """Seconds a client should wait before trying again (0: no Retry-After)."""

    @property
    def status(self) -> int:
        """The HTTP status ClickHouse gives this error."""
        return _STATUS_BY_NAME.get(self.name, 500)


# -- statements (pure) ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """One lexeme of SQL text: kind is word, quoted (an identifier in quotes), string, number or punct."""

    kind: str
    text: str

    def name(self) -> str | None:
        """The identifier this token spells (unquoted), or None."""
        if self.kind == "word":
            return self.text
        if self.kind == "quoted":
            quote, inner = self.text[0], self.text[1:-1]
            return _ESCAPED.sub(r"\1", inner.replace(quote * 2, quote))
        return None


def tokenize(sql: str) -> list[Token]:
    """The significant lexemes of `sql` (spaces and comments dropped)."""
    out: list[Token] = []
    for match in _LEXEME.finditer(sql):
        kind = match.lastgroup or "punct"
        if kind not in ("space", "comment"):
            out.append(Token(kind, match.group()))
    return out


def leading_keyword(sql: str) -> str:
    """The statement's first keyword, upper case ('' if none): what kind of statement this is."""
    for token in tokenize(sql):
        if token.kind == "punct" and token.text == "(":
            continue
        return token.text.upper() if token.kind == "word" else ""
    return ""


@dataclass(frozen=True)
class Statement:
    """What an accepted statement is: its kind and the output format its FORMAT clause names, if any."""

    kind: str
    output_format: str | None


def refuse_kind(kind: str) -> QueryRefused:
    """The error for a statement kind analysts may not run."""
    shown = kind or "this statement"
    return QueryRefused(
        READONLY,
        "READONLY",
        f"Cannot execute query in readonly mode: {shown} is refused; the analysts' endpoint runs "
        f"{', '.join(sorted(READ_KINDS - {'DESC'}))} only",
    )


def classify(sql: str, denied: frozenset[str]) -> Statement:
    """Check one statement (canonical text from the engine's formatter, or raw text) for reading only.

    Raises QueryRefused for an empty text, several statements, a kind other than READ_KINDS, INTO OUTFILE,
    or a call of a function named in `denied` (lower case; compared case-insensitively).
    """
    tokens = tokenize(sql)
    while tokens and tokens[-1].text == ";":
        tokens.pop()
    if not tokens:
        raise QueryRefused(SYNTAX_ERROR, "SYNTAX_ERROR", "Empty query")
    if any(t.kind == "punct" and t.text == ";" for t in tokens):
        raise QueryRefused(SYNTAX_ERROR, "SYNTAX_ERROR", "Multi-statements are not allowed")
    kind = leading_keyword(sql)
    if kind not in READ_KINDS:
        raise refuse_kind(kind)
    output_format: str | None = None
    depth = 0
    for i, token in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        name = token.name()
        if token.kind == "punct":
            depth += {"(": 1, ")": -1}.get(token.text, 0)
        elif name is not None and following is not None and following.text == "(" and name.lower() in denied:
            raise QueryRefused(
                ACCESS_DENIED,
                "ACCESS_DENIED",
                f"{name}() is not allowed on the analysts' endpoint",
            )
        if token.kind != "word" or following is None:
            continue
        upper = token.text.upper()
        if upper == "INTO" and following.text.upper() == "OUTFILE":
            raise QueryRefused(ACCESS_DENIED, "ACCESS_DENIED", "INTO OUTFILE is not allowed")
        if upper == "FORMAT" and depth == 0 and following.name() is not None:
            rest = tokens[i + 2 :]
            if not rest or rest[0].text.upper() == "SETTINGS":
                output_format = following.name()
    return Statement(kind, output_format)


def without_format(sql: str) -> str:
    """`sql` without its output FORMAT clause (the one `classify` finds), so that EXPLAIN AST of it
    answers in the format asked for."""
    lexemes = [m for m in _LEXEME.finditer(sql) if m.lastgroup not in ("space", "comment")]
    depth = 0
    for i, lexeme in enumerate(lexemes):
        text = lexeme.group()
        if lexeme.lastgroup == "punct":
            depth += {"(": 1, ")": -1}.get(text, 0)
        elif lexeme.lastgroup == "word" and text.upper() == "FORMAT" and depth == 0 and i + 1 < len(lexemes):
            name = lexemes[i + 1]
            rest = lexemes[i + 2 :]
            if name.lastgroup in ("word", "quoted") and (not rest or rest[0].group().upper() == "SETTINGS"):
                return sql[: lexeme.start()] + sql[name.end() :]
    return sql


def parse_error(text: str) -> QueryRefused:
    """An engine error message as (code, name, message), without chdb's repeated prefixes and trailers."""
    heads = list(_ERROR_HEAD.finditer(text))
    if not heads:
        return QueryRefused(1001, "STD_EXCEPTION", text.strip() or "query failed")
    last = heads[-1]
    rest = text[last.end() :]
    names = list(_ERROR_NAME.finditer(rest))
    if not names:
        return QueryRefused(int(last.group(1)), "", rest.strip())
    # the error's name closes the message: "... at position 19 (TABLE) ...: TABLE x. (SYNTAX_ERROR)"
    name = names[-1].group(1)
    message = rest[: rest.index(f"({name})")].strip()
    return QueryRefused(int(last.group(1)), name, message)


def escape_param(value: str) -> str:
    """`value` in the escaped text form the engine parses String parameters from."""
    return (
        value.replace("\\", "\\\\")
        .replace("\n", "\\n")
        .replace("\t", "\\t")
        .replace("\r", "\\r")
        .replace("\0", "\\0")
    )


def content_type(fmt: str) -> str:
    """The Content-Type ClickHouse gives an output format."""
    lower = fmt.lower()
    if lower.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if lower.startswith("csv"):
        return "text/csv; charset=UTF-8"
    if lower.startswith("json"):
        return "application/json; charset=UTF-8"
    if lower.startswith(("native", "rowbinary", "parquet", "arrow", "orc", "avro", "msgpack", "npy")):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


# -- the engine ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A query's output and what the headers say about it."""

    statement: Statement
    output_format: str
    body: bytes
    summary: dict[str, str]


def _connect(connection_string: str) -> Any:
    """A new chdb connection (chdb's connect is untyped)."""
    return chdb.connect(connection_string)  # type: ignore[no-untyped-call]


class ReadOnlyEngine:
    """Read-only access to the embedded store: a fresh limited connection per query (blocking calls)."""

    def __init__(self, path: str, settings: Settings) -> None:
        self.max_result_bytes = settings.analysts_max_result_bytes
        options = {
            "readonly": "1",
            "max_execution_time": f"{settings.analysts_max_execution_s:f}".rstrip("0").rstrip("."),
            "max_memory_usage": str(settings.analysts_max_memory_bytes),
            "max_result_bytes": str(settings.analysts_max_result_bytes),
            "result_overflow_mode": "throw",
            "allow_introspection_functions": "0",
        }
        self._connection_string = f"{path}?{urlencode(options)}"
        self.version = ""
        self.timezone = "UTC"
        self.denied: frozenset[str] = access.DENIED_FUNCTIONS

    @classmethod
    def open(cls, dsn: str, settings: Settings) -> ReadOnlyEngine:
        """The engine of the embedded store at `dsn`, checked to enforce readonly (raises StoreError)."""
        path = urlsplit(dsn).path
        engine = cls(os.path.realpath(path) if path else ":memory:", settings)
        try:
            conn = _connect(engine._connection_string)
        except Exception as exc:
            raise StoreError(f"analysts' endpoint cannot open the store {redact(dsn)}: {exc}") from exc
        try:
            facts = conn.query(
                "SELECT version(), timezone(), getSetting('readonly'), "
                "getSetting('allow_introspection_functions')",
                "TSVRaw",
            )
            version, timezone, readonly, introspection = facts.bytes().decode().rstrip("\n").split("\t")
            if (readonly, introspection) != ("1", "false"):
                raise StoreError(
                    "the embedded engine ignores readonly=1 or allow_introspection_functions=0 "
                    f"(got {readonly!r}, {introspection!r})"
                )
            aliases = conn.query("SELECT name, alias_to FROM system.functions WHERE alias_to != ''", "TSVRaw")
            table_functions = conn.query("SELECT name FROM system.table_functions", "TSVRaw")
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"analysts' endpoint cannot read the engine's facts: {exc}") from exc
        finally:
            conn.close()
        engine.version, engine.timezone = version, timezone
        pairs = [line.split("\t") for line in aliases.bytes().decode().splitlines()]
        engine.denied = access.denied_functions(
            [(p[0], p[1]) for p in pairs if len(p) == 2], table_functions.bytes().decode().split()
        )
        return engine

    def run(self, sql: str, database: str, fmt: str, params: Mapping[str, str]) -> Answer:
        """Check and run one analysts' statement. Raises QueryRefused (the engine's errors included)."""
        try:
            conn = _connect(self._connection_string)
        except Exception as exc:
            raise parse_error(str(exc)) from exc
        try:
            try:
                canonical = self._query(conn, _FORMATTER, "TSVRaw", {"q": escape_param(sql)})
            except QueryRefused as exc:
                # the formatter's errors are the statement's own (syntax, several statements)
                exc.message = exc.message.split(": In scope SELECT formatQuerySingleLine(")[0]
                raise
            text = canonical.bytes().decode().rstrip("\n")
            statement = classify(text, self.denied)
            try:
                access.check_database(database)
                access.check_show([t.text.upper() for t in tokenize(text)[:4]])
                # the engine's tree of the statement, its parameters bound
                tree = self._query(conn, f"EXPLAIN AST {without_format(text)}", "TSVRaw", dict(params))
                access.check_tree(bytes(tree.bytes() or b"").decode(), self.denied)
            except access.AccessDenied as exc:
                raise QueryRefused(ACCESS_DENIED, "ACCESS_DENIED", str(exc)) from exc
            self._query(conn, f"USE `{database}`", "TabSeparated", {})
            result = self._query(conn, sql, fmt, dict(params))
            body = bytes(result.bytes() or b"")
            if len(body) > self.max_result_bytes:
                raise QueryRefused(
                    TOO_MANY_ROWS_OR_BYTES,
                    "TOO_MANY_ROWS_OR_BYTES",
                    f"Limit for result exceeded, max bytes: {self.max_result_bytes}, "
                    f"current bytes: {len(body)}",
                )
            summary = {
                "read_rows": str(result.storage_rows_read()),
                "read_bytes": str(result.storage_bytes_read()),
                "written_rows": "0",
                "written_bytes": "0",
                "total_rows_to_read": "0",
                "result_rows": str(result.rows_read()),
                "result_bytes": str(result.bytes_read()),
                "elapsed_ns": str(int(result.elapsed() * 1e9)),
            }
            return Answer(statement, statement.output_format or fmt, body, summary)
        finally:
            conn.close()

    @staticmethod
    def _query(conn: Any, sql: str, fmt: str, params: dict[str, str]) -> Any:
        try:
            return conn.query(sql, fmt, params=params)
        except Exception as exc:
            raise parse_error(str(exc)) from exc


# -- HTTP ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """An analysts' query request, parsed from URL, form fields and body."""

    sql: str
    database: str
    default_format: str
    params: dict[str, str]
    query_id: str


def parse_request(values: Mapping[str, str], body: bytes, default_database: str) -> Request:
    """The query request in `values` (URL parameters and form fields) and `body`. Raises QueryRefused."""
    url_query = values.get("query", "")
    leading = url_query or body[:4096].decode("utf-8", "replace")
    kind = leading_keyword(leading)
    if kind and kind not in READ_KINDS:
        raise refuse_kind(kind)  # before reading an INSERT's data
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QueryRefused(BAD_ARGUMENTS, "BAD_ARGUMENTS", "the query is not UTF-8 text") from exc
    sql = f"{url_query}\n{text}" if url_query and text else url_query or text
    if len(sql.encode()) > MAX_QUERY_BYTES:
        raise QueryRefused(
            QUERY_IS_TOO_LARGE, "QUERY_IS_TOO_LARGE", f"Max query size exceeded ({MAX_QUERY_BYTES} bytes)"
        )
    database = values.get("database") or default_database
    if not DATABASE_PATTERN.match(database):
        raise QueryRefused(UNKNOWN_DATABASE, "UNKNOWN_DATABASE", f"Database {database!r} does not exist")
    fmt = values.get("default_format") or DEFAULT_FORMAT
    if not _FORMAT_NAME.match(fmt):
        raise QueryRefused(UNKNOWN_FORMAT, "UNKNOWN_FORMAT", f"Unknown format {fmt!r}")
    params: dict[str, str] = {}
    for key, value in values.items():
        if key.startswith("param_"):
            name = key[len("param_") :]
            if not _NAME.match(name):
                raise QueryRefused(BAD_ARGUMENTS, "BAD_ARGUMENTS", f"invalid parameter name {name!r}")
            params[name] = value
    query_id = values.get("query_id", "")
    if not _QUERY_ID.match(query_id):
        query_id = str(uuid.uuid4())
    return Request(sql, database, fmt, params, query_id)


def credentials(request: web.Request) -> tuple[str, str] | None:
    """The user and password a request signs in with, or None when it gives none."""
    user = request.headers.get("X-ClickHouse-User")
    if user is not None:
        return user, request.headers.get("X-ClickHouse-Key", "")
    auth = request.headers.get("Authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        name, _, password = decoded.partition(":")
        return name, password
    if "user" in request.query:
        return request.query["user"], request.query.get("password", "")
    return None


class AnalystsServer:
    """The analysts' endpoint: an aiohttp app on its own port, running queries on a ReadOnlyEngine."""

    def __init__(self, settings: Settings, engine: ReadOnlyEngine, clock: Clock | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.url: str | None = None
        """Base URL once listening."""
        self.display_name = DISPLAY_NAME
        self.clock: Clock = clock or SystemClock()
        """Wall time for the sign-in throttle (tests give their own)."""
        self.throttle = SignInThrottle()
        """Failed sign-ins per (user, client address), and their backoff."""
        self.slots = QuerySlots(settings.analysts_query_slots, settings.analysts_query_slots_per_user)
        """Query slots, a share of them per analyst (user and client address)."""
        self._user = settings.analysts_user.encode()
        self._password = settings.analysts_password.get_secret_value().encode()
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        """The HTTP app (routes at the root, as ClickHouse clients expect)."""
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_get("/ping", self._ok)
        app.router.add_get("/replicas_status", self._ok)
        app.router.add_get("/", self._query)
        app.router.add_post("/", self._query)
        return app

    async def start(self) -> str:
        """Listen on settings.analysts_host:analysts_port; return the base URL."""
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.analysts_host, self.settings.analysts_port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise FleetwatchError(
                f"analysts' endpoint cannot listen on {self.settings.analysts_host}:"
                f"{self.settings.analysts_port}: {exc}"
            ) from exc
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def close(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers --------------------------------------------------------------------------------------

    def _headers(self, query_id: str) -> dict[str, str]:
        return {
            "X-ClickHouse-Server-Display-Name": self.display_name,
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self.engine.timezone,
        }

    def _error(self, exc: QueryRefused, query_id: str) -> web.Response:
        name = f" ({exc.name})" if exc.name else ""
        text = f"Code: {exc.code}. DB::Exception: {exc.message}{name} (version {self.engine.version})\n"
        headers = self._headers(query_id)
        headers["X-ClickHouse-Exception-Code"] = str(exc.code)
        if exc.code == REQUIRED_PASSWORD:
            headers["WWW-Authenticate"] = 'Basic realm="fleetwatch analysts"'
        if exc.retry_after:
            headers["Retry-After"] = str(exc.retry_after)
        return web.Response(status=exc.status, text=text, headers=headers)

    async def _ok(self, request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    def _check_sign_in(self, request: web.Request) -> str:
        """Who signs in: "user@address" (raises QueryRefused: no or wrong sign-in, or throttled)."""
        given = credentials(request)
        if given is None:
            raise QueryRefused(REQUIRED_PASSWORD, "REQUIRED_PASSWORD", "Sign in with a user and password")
        user, client = given[0] or "default", request.remote or "unknown"
        now = self.clock.now()
        wait = self.throttle.retry_after(user, client, now)
        if wait:  # the password is not even checked
            raise QueryRefused(
                QUOTA_EXCEEDED,
                "QUOTA_EXCEEDED",
                f"{user}: too many failed sign-ins from {client}; try again in {wait} s",
                retry_after=wait,
            )
        user_ok = hmac.compare_digest(given[0].encode(), self._user)
        password_ok = hmac.compare_digest(given[1].encode(), self._password)
        if not (user_ok and password_ok):
            blocked = self.throttle.failed(user, client, now)
            log.warning("analysts: failed sign-in of %r from %s (blocked for %d s)", user, client, blocked)
            raise QueryRefused(
                AUTHENTICATION_FAILED,
                "AUTHENTICATION_FAILED",
                f"{user}: Authentication failed: password is incorrect, or there is no user with such name",
            )
        self.throttle.succeeded(user, client)
        return f"{user}@{client}"

    async def _read(self, request: web.Request) -> tuple[dict[str, str], bytes]:
        values = {key: request.query[key] for key in request.query}
        if request.method != "POST":
            return values, b""
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            # ClickHouse clients compress only data they upload (inserts, external tables)
            raise QueryRefused(
                READONLY,
                "READONLY",
                "Cannot execute query in readonly mode: compressed request bodies carry data to write",
            )
        try:
            if request.content_type == "multipart/form-data":  # curl -d sends urlencoded: a plain body
                form = await request.post()
                values.update({k: v for k, v in form.items() if isinstance(v, str)})
                return values, b""
            return values, await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise QueryRefused(
                QUERY_IS_TOO_LARGE, "QUERY_IS_TOO_LARGE", f"Request larger than {MAX_REQUEST_BYTES} bytes"
            ) from exc

    async def _query(self, request: web.Request) -> web.Response:
        query_id = str(uuid.uuid4())
        try:
            if request.method == "GET" and "query" not in request.query:
                return await self._ok(request)
            who = self._check_sign_in(request)
            values, body = await self._read(request)
            wanted = parse_request(values, body, self.settings.clickhouse_database)
            query_id = wanted.query_id
            answer = await self._run(wanted, who)
        except QueryRefused as exc:
            log.info("analysts: query %s refused: %s (code %d)", query_id, exc.message, exc.code)
            return self._error(exc, query_id)
        headers = self._headers(query_id)
        headers["X-ClickHouse-Format"] = answer.output_format
        headers["X-ClickHouse-Summary"] = json.dumps(answer.summary, separators=(",", ":"))
        headers["Content-Type"] = content_type(answer.output_format)
        log.debug("analysts: query %s (%s) answered", query_id, answer.statement.kind)
        return web.Response(body=answer.body, headers=headers)

    async def _run(self, wanted: Request, who: str) -> Answer:
        try:
            async with self.slots.slot(who, self.settings.analysts_max_execution_s):
                job = asyncio.ensure_future(
                    asyncio.to_thread(
                        self.engine.run, wanted.sql, wanted.database, wanted.default_format, wanted.params
                    )
                )
                try:
                    return await asyncio.shield(job)
                except asyncio.CancelledError:
                    # the client left: the query runs on in its thread (up to max_execution_time), and
                    # keeps its slot until it ends
                    await asyncio.wait({job})
                    raise
        except SlotsBusy as exc:
            raise QueryRefused(
                TOO_MANY_SIMULTANEOUS_QUERIES, "TOO_MANY_SIMULTANEOUS_QUERIES", str(exc), retry_after=1
            ) from exc


async def start_analysts(settings: Settings) -> AnalystsServer | None:
    """Serve the analysts' endpoint if settings.analysts_port is set and the store is embedded."""
    if not settings.analysts_port:
        return None
    dsn = settings.store_dsn()
    if not is_embedded(dsn):
        log.warning(
            "analysts: the store is a ClickHouse server (%s); analysts query it directly", redact(dsn)
        )
        return None
    if not settings.analysts_password.get_secret_value():
        raise ConfigError("analysts_password must be set when analysts_port is on")
    if settings.analysts_query_slots_per_user >= settings.analysts_query_slots:
        raise ConfigError(
            "analysts_query_slots_per_user must be less than analysts_query_slots "
            "(so that one analyst cannot hold every slot)"
        )
    engine = await asyncio.to_thread(ReadOnlyEngine.open, dsn, settings)
    server = AnalystsServer(settings, engine)
    url = await server.start()
    log.info("analysts: read-only ClickHouse HTTP endpoint on %s (user %s)", url, settings.analysts_user)
    return server
