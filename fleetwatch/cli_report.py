"""`fleetwatch report uptime|sla|capacity|cases`: a report as a table, JSON or CSV, optionally an SVG chart.

    fleetwatch report uptime --month 2026-11 [--customer acme] [--server acme-web-1]
    fleetwatch report sla --month 2026-11 --customer acme
    fleetwatch report sla --case FW-100003     (drill-down: one case's timeline, by ticket or case id; without
                                               --month, in the month the case was opened)
    fleetwatch report capacity --month 2026-11 --threshold-ms 250 --svg capacity.svg
    fleetwatch report cases --format csv

With the embedded store the report comes from the sink's HTTP API (the sink owns the store); with an
http(s):// DSN ClickHouse is queried directly. Without --month, the current month of the runtime clock
(with --case, the month the case was opened).
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetcore.clock import clock_for
from fleetcore.errors import FleetwatchError, StoreError
from fleetcore.settings import Settings
from history.charts import render
from history.client import sink_get
from history.reports import REPORTS, ReportRequest, load_policies, parse, run_request, to_csv
from history.store import connect

HTTP_TIMEOUT_S = 60.0

SettingsOf = Callable[[argparse.Namespace], Settings]

COLUMNS: dict[str, tuple[str, ...]] = {
    "uptime": (
        "customer_id", "server_id", "probes", "unplanned_failures", "planned_failures", "planned_probes",
        "uptime_lower_percent",
        "uptime_percent", "uptime_upper_percent", "target_percent", "status",
    ),
    "sla": (
        "customer_id", "cases", "sev1_cases", "sev1_paged", "sev1_max_time_to_page_s", "sev1_worked_in_time",
        "vp_escalations", "updates_due", "updates_on_time", "sev2_cases", "sev2_first_response_met",
        "sev3_cases", "sev3_first_response_met", "compliant",
    ),
    "capacity": (
        "level", "customer_id", "server_id", "day", "probes", "p50_ms", "p95_ms", "p99_ms", "load1_avg",
        "connections_avg",
    ),
    "cases": ("dimension", "value", "opened", "open", "resolved", "closed"),
}  # fmt: skip
CASE_COLUMNS = (
    "ticket", "case_id", "severity", "source", "opened_at", "time_to_page_s", "time_to_work_s", "work_met",
    "vp_escalations", "updates_due", "updates_on_time", "first_response_met", "state",
)  # fmt: skip


def _from_sink(settings: Settings, request: ReportRequest) -> dict[str, Any]:
    params = {
        "month": request.query.month,
        "customer": request.query.customer,
        "server": request.query.server,
        "case": request.query.case,
    }
    if request.threshold_ms is not None:
        params["threshold_ms"] = str(request.threshold_ms)
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v})
    data: dict[str, Any] = sink_get(
        settings, f"/api/reports/{request.name}?{query}", "report", HTTP_TIMEOUT_S
    )
    return data


def fetch_report(settings: Settings, request: ReportRequest) -> dict[str, Any]:
    """The report from the sink API (embedded store) or straight from ClickHouse."""
    if settings.embedded_store():
        return _from_sink(settings, request)
    policies = load_policies(settings.sla_policy_file)
    client = connect(settings.store_dsn(), settings.clickhouse_database)
    try:
        return run_request(client, request, policies)
    except StoreError as exc:
        raise StoreError(f"{exc} (has `fleetwatch sink` created the history tables yet?)") from exc
    finally:
        client.close()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def table(headers: tuple[str, ...], rows: list[dict[str, Any]]) -> list[str]:
    """Aligned text columns."""
    cells = [tuple(_cell(r.get(h)) for h in headers) for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)
    return out


def find_case(data: dict[str, Any], ref: str) -> dict[str, Any]:
    """The SLA report's case whose id, else ticket (any letter case), is `ref`; FleetwatchError saying
    where the case is when it was not opened in the report's month (or scope)."""
    cases: list[dict[str, Any]] = data.get("cases", [])
    wanted = ref.strip().upper()
    case = next((c for c in cases if c["case_id"] == ref), None) or next(
        (c for c in cases if (c.get("ticket") or "").upper() == wanted), None
    )
    if case is not None:
        return case
    opened = data.get("case_opened_at")
    if opened and opened[:7] != data["month"]:
        raise FleetwatchError(f"case {ref} was opened in {opened[:7]} ({opened}): add --month {opened[:7]}")
    if opened:
        raise FleetwatchError(
            f"case {ref} (opened {opened}) is not in this report: check --customer/--server"
        )
    raise FleetwatchError(f"no case or ticket {ref!r} opened in {data['month']} in this report")


def render_table(data: dict[str, Any], case_id: str | None = None) -> str:
    """A terminal rendering of a report; for sla, the cases too, or one case's timeline."""
    name = str(data["report"])
    scope = ", ".join(f"{k} {data[k]}" for k in ("customer", "server") if data.get(k))
    lines = [f"{name} report, {data['month']}" + (f" ({scope})" if scope else ""), ""]
    if case_id is not None:
        case = find_case(data, case_id)
        lines.append(
            f"case {case['case_id']}" + (f" ({case['ticket']})" if case.get("ticket") else "") + " timeline:"
        )
        lines.extend(table(("seq", "at", "type", "state", "actor", "reason"), case["timeline"]))
        return "\n".join(lines)
    lines.extend(table(COLUMNS[name], data["rows"]) if data["rows"] else ["no data for this month"])
    if name == "sla" and data.get("cases"):
        lines += ["", "cases (drill down with --case TICKET or --case CASE_ID):"]
        lines.extend(table(CASE_COLUMNS, data["cases"]))
    if name == "capacity":
        lines += ["", "fleet: " + ", ".join(f"{f['day']} {f['servers']}" for f in data.get("fleet", []))]
        if data.get("forecast"):
            lines += ["", "forecast:"]
            lines.extend(
                table(
                    ("customer_id", "server_id", "threshold_ms", "slope_ms_per_day", "days_until_threshold"),
                    data["forecast"],
                )
            )
    return "\n".join(lines)


def _cmd_report(args: argparse.Namespace, settings_of: SettingsOf) -> int:
    settings = settings_of(args)
    month = args.month or clock_for(settings.clock_scale, settings.clock_origin_ms).now().strftime("%Y-%m")
    params = {"month": month, "customer": args.customer or "", "server": args.server or ""}
    if args.case:
        params["case"] = args.case
    if args.threshold_ms is not None:
        params["threshold_ms"] = str(args.threshold_ms)
    request = parse(args.report, params)
    data = fetch_report(settings, request)
    opened = data.get("case_opened_at")
    if not args.month and opened and opened[:7] != month:  # --case alone: the month the case was opened
        data = fetch_report(settings, parse(args.report, {**params, "month": opened[:7]}))
    if args.svg:
        try:
            Path(args.svg).write_text(render(data))
        except OSError as exc:
            raise FleetwatchError(f"cannot write the chart to {args.svg}: {exc}") from exc
    if args.format == "json":
        print(json.dumps(data, indent=2))
    elif args.format == "csv":
        print(to_csv(data["rows"]), end="")
    else:
        print(render_table(data, args.case))
    return 0


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None], settings_of: SettingsOf) -> None:
    """Add `report` to the `fleetwatch` subcommands (`sub`: its subparsers)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "report", help="uptime, SLA, capacity and case reports", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    common(p)
    p.add_argument("report", choices=REPORTS)
    p.add_argument("--month", help="YYYY-MM (UTC; default: the current month)")
    p.add_argument("--customer", help="only this customer")
    p.add_argument("--server", help="only this server")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--svg", metavar="FILE", help="also write the report's chart (SVG) to FILE")
    p.add_argument("--threshold-ms", type=float, help="capacity: forecast days until p95 exceeds this")
    p.add_argument("--case", help="sla: show this case's timeline (drill-down): its ticket or case id")
    p.set_defaults(handler=lambda args: _cmd_report(args, settings_of))
