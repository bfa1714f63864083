"""`fleetwatch history SERVER`: fetch a server's history and render it for a terminal.

With the embedded store (chdb) the data path is locked to the sink process, so the history comes from the
sink's HTTP API; with an http(s):// DSN the ClickHouse server is queried directly.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from fleetcore.errors import FleetwatchError, StoreError
from fleetcore.settings import Settings
from history.queries import check_limit, check_server_id, server_history
from history.store import connect

HTTP_TIMEOUT_S = 15.0


def sink_get(settings: Settings, path_and_query: str, what: str, timeout_s: float = HTTP_TIMEOUT_S) -> Any:
    """GET a JSON answer of the sink's API (which serves the embedded store); clear errors when it refuses
    (`what` names the request in them) or is not running."""
    base = settings.sink_url()
    try:
        with urllib.request.urlopen(f"{base}{path_and_query}", timeout=timeout_s) as resp:  # noqa: S310
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except (ValueError, AttributeError):
            message = exc.reason
        raise FleetwatchError(f"the sink at {base} refused the {what} ({exc.code}): {message}") from exc
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FleetwatchError(
            f"the history store is embedded and served by the sink, which is not reachable at {base} "
            f"({reason}): start `fleetwatch sink` or `fleetwatch up`"
        ) from exc


def _from_sink(settings: Settings, server_id: str, limit: int) -> dict[str, Any]:
    path = f"/api/history/{urllib.parse.quote(server_id, safe='')}?limit={limit}"
    data: dict[str, Any] = sink_get(settings, path, "history query")
    return data


def fetch_history(settings: Settings, server_id: str, limit: int = 20) -> dict[str, Any]:
    """A server's recent probes (newest first) and case events, from the sink API or ClickHouse."""
    check_server_id(server_id)
    check_limit(limit)
    if settings.embedded_store():
        return _from_sink(settings, server_id, limit)
    client = connect(settings.store_dsn(), settings.clickhouse_database)
    try:
        return server_history(client, server_id, limit)
    except StoreError as exc:
        raise StoreError(f"{exc} (has `fleetwatch sink` created the history tables yet?)") from exc
    finally:
        client.close()


def _time(iso: str) -> str:
    return iso.replace("T", " ").removesuffix("Z")


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    out = [line, "  ".join("-" * w for w in widths)]
    out.extend("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    return out


def _outcome(probe: dict[str, Any]) -> str:
    parts = []
    if probe.get("status_code") is not None:
        parts.append(str(probe["status_code"]))
    if probe.get("error_class"):
        parts.append(str(probe["error_class"]))
    if probe.get("error_message"):
        message = str(probe["error_message"]).replace("\n", " ")
        parts.append(message if len(message) <= 60 else message[:57] + "...")
    return " ".join(parts) or "-"


def _result(probe: dict[str, Any]) -> str:
    if probe.get("ok"):
        return "ok"
    return "planned" if probe.get("maintenance_id") else "FAIL"


def _severity(case: dict[str, Any]) -> str:
    return f"Sev{case['severity']}" if case.get("severity") else "-"


def render_history(data: dict[str, Any]) -> str:
    """A readable terminal rendering: recent probes, then case events.

    A failure inside a maintenance window shows as `planned`, with the window's id.
    """
    server_id = data.get("server_id", "?")
    probes: list[dict[str, Any]] = data.get("probes", [])
    cases: list[dict[str, Any]] = data.get("cases", [])
    lines = [f"server {server_id}", ""]
    if probes:
        failed = sum(1 for p in probes if not p.get("ok"))
        planned = sum(1 for p in probes if not p.get("ok") and p.get("maintenance_id"))
        note = f" ({planned} planned)" if planned else ""
        lines.append(f"last {len(probes)} probes (newest first), {failed} failed{note}:")
        lines.extend(
            _table(
                ("time (UTC)", "result", "latency", "status / error", "maintenance"),
                [
                    (
                        _time(str(p["started_at"])),
                        _result(p),
                        f"{p.get('latency_ms', 0)} ms",
                        _outcome(p),
                        str(p.get("maintenance_id") or ""),
                    )
                    for p in probes
                ],
            )
        )
    else:
        lines.append("no probes stored for this server")
    lines.append("")
    if cases:
        lines.append(f"case events ({len(cases)}, newest first):")
        lines.extend(
            _table(
                ("time (UTC)", "type", "severity", "state", "ticket", "case id"),
                [
                    (
                        _time(str(c["at"])),
                        str(c["type"]),
                        _severity(c),
                        str(c.get("state") or "-"),
                        str(c.get("ticket") or "-"),
                        str(c["case_id"]),
                    )
                    for c in cases
                ],
            )
        )
    else:
        lines.append("no case events for this server")
    return "\n".join(lines)
