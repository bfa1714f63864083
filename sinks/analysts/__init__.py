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

Modules: `statements` (pure: error codes, lexer, classify, requests), `access` (pure: the tree check),
`engine` (chdb), `slots` (fair query slots); this one is the HTTP server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import uuid

from aiohttp import web

from fleetcore.clock import Clock, SystemClock
from fleetcore.errors import ConfigError, FleetwatchError
from fleetcore.settings import Settings
from fleetcore.throttle import SignInThrottle, client_key
from history.store import is_embedded, redact
from sinks.analysts.engine import Answer, ReadOnlyEngine
from sinks.analysts.slots import QuerySlots, SlotsBusy
from sinks.analysts.statements import (
    AUTHENTICATION_FAILED,
    MAX_QUERY_BYTES,
    QUERY_IS_TOO_LARGE,
    QUOTA_EXCEEDED,
    READONLY,
    REQUIRED_PASSWORD,
    TOO_MANY_SIMULTANEOUS_QUERIES,
    QueryRefused,
    Request,
    Statement,
    classify,
    content_type,
    escape_param,
    leading_keyword,
    parse_error,
    parse_request,
    tokenize,
    without_format,
)

__all__ = [
    "MAX_QUERY_BYTES",
    "AnalystsServer",
    "Answer",
    "QueryRefused",
    "ReadOnlyEngine",
    "Statement",
    "classify",
    "content_type",
    "credentials",
    "escape_param",
    "leading_keyword",
    "parse_error",
    "parse_request",
    "start_analysts",
    "tokenize",
    "without_format",
]

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1024 * 1024
"""Largest request body read."""
DISPLAY_NAME = "fleetwatch-analysts"
"""X-ClickHouse-Server-Display-Name (not the host's name: hostName() is refused too)."""

# -- HTTP ----------------------------------------------------------------------------------------------


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

    def __init__(
        self,
        settings: Settings,
        engine: ReadOnlyEngine,
        clock: Clock | None = None,
        throttle: SignInThrottle | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.url: str | None = None
        """Base URL once listening."""
        self.display_name = DISPLAY_NAME
        self.clock: Clock = clock or SystemClock()
        """Wall time for the sign-in throttle (tests give their own)."""
        self.throttle = throttle or SignInThrottle()
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

    async def _check_sign_in(self, request: web.Request) -> str:
        """Who signs in: "user@address" (raises QueryRefused: no or wrong sign-in, or throttled)."""
        given = credentials(request)
        if given is None:
            raise QueryRefused(REQUIRED_PASSWORD, "REQUIRED_PASSWORD", "Sign in with a user and password")
        user, client = given[0] or "default", client_key(request.remote or "unknown")
        now = self.clock.now()
        wait = self.throttle.retry_after(user, client, now)
        if wait:  # the password is not even checked
            raise QueryRefused(
                QUOTA_EXCEEDED,
                "QUOTA_EXCEEDED",
                f"{user}: too many failed sign-ins from {client}; try again in {wait} s",
                retry_after=wait,
            )
        delay = self.throttle.slowdown(user, now)
        if delay:  # the user is under attack: every sign-in waits, so a guesser holds a connection per guess
            await asyncio.sleep(delay)
            now = self.clock.now()
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
            who = await self._check_sign_in(request)
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
