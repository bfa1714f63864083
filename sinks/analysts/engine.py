"""The analysts' engine: read-only access to the embedded store, a fresh limited connection per query."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import chdb

from fleetcore.errors import StoreError
from fleetcore.settings import Settings
from history.store import redact
from sinks.analysts import access
from sinks.analysts.statements import (
    ACCESS_DENIED,
    TOO_MANY_ROWS_OR_BYTES,
    QueryRefused,
    Statement,
    classify,
    escape_param,
    parse_error,
    tokenize,
    without_format,
)

_FORMATTER = "SELECT formatQuerySingleLine({q:String})"
"""The engine's parser as a function: one statement's canonical text, or the parser's error."""


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
