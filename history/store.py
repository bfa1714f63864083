"""Opening the history store: one code path for embedded chdb (`chdb:///abs/path`) and a ClickHouse server.

Embedded chdb allows one data path per process, and a path is locked to one process at a time. Several
clients on the same path in one process share the engine (each thread may have its own client); the
process that owns the store (the sink) therefore serves every query of it.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from fleetcore.errors import ConfigError, StoreError

DATABASE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
"""Database names we accept: plain identifiers, so they can be quoted into DDL safely."""


def redact(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def is_embedded(dsn: str) -> bool:
    """True for a chdb DSN (the in-process engine)."""
    return dsn.startswith("chdb:")


def _check_dsn(dsn: str) -> None:
    scheme = urlsplit(dsn).scheme
    if scheme not in ("chdb", "http", "https"):
        raise ConfigError(
            f"unsupported ClickHouse DSN {redact(dsn)!r}: use chdb:///abs/path or http://host:8123"
        )
    if scheme == "chdb":
        parts = urlsplit(dsn)
        if parts.netloc not in ("", "memory"):
            raise ConfigError(f"embedded store DSN must be chdb:///absolute/path (got {dsn!r})")
        if parts.netloc == "" and not parts.path.startswith("/"):
            raise ConfigError(f"embedded store DSN must be chdb:///absolute/path (got {dsn!r})")


def connect(dsn: str, database: str) -> Client:
    """A client on `database` of the store at `dsn` (created if missing). Raises StoreError if unreachable."""
    _check_dsn(dsn)
    if not DATABASE_PATTERN.match(database):
        raise ConfigError(f"invalid ClickHouse database name {database!r}: letters, digits and _ only")
    if is_embedded(dsn):
        path = urlsplit(dsn).path
        if path:
            try:
                Path(path).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the embedded store directory {path}: {exc}") from exc
    try:
        client = clickhouse_connect.get_client(dsn=dsn)
    except Exception as exc:
        raise StoreError(f"cannot open the history store {redact(dsn)}: {exc}") from exc
    try:
        client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        client.database = database
    except Exception as exc:
        client.close()
        raise StoreError(f"cannot create or use database {database!r} in {redact(dsn)}: {exc}") from exc
    return client
