"""Analysts' statements and requests, pure: ClickHouse's error codes and statuses, the lexer, the kind and
FORMAT of a statement (`classify`), engine errors (`parse_error`), and the query request (`parse_request`)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from fleetcore.errors import FleetwatchError
from history.store import DATABASE_PATTERN

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
DEFAULT_FORMAT = "TabSeparated"

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


# -- requests ------------------------------------------------------------------------------------------


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
