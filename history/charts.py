"""SVG charts of the reports, written by hand (no plotting dependency): one `render(report)` per report dict.

- uptime: a bar per customer and server spanning the lower..upper bound, the point estimate marked, the
  plan's target as a tick (red when breached, amber when uncertain).
- sla: per customer, the share of Sev1 cases worked in time, hourly updates on time and Sev2/Sev3 first
  responses met.
- capacity: daily p95 latency per server (or per customer when no server is chosen), one line each.
- cases: opened cases by severity, source and partner, split into open / resolved / closed.
Text is XML-escaped; the output is a standalone SVG document.
"""

from __future__ import annotations

from html import escape
from typing import Any

from history.queries import InvalidQuery

WIDTH = 760
ROW = 26
LEFT = 200
PLOT = WIDTH - LEFT - 40
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
STATUS = {"met": "#2ca02c", "breached": "#d62728", "uncertain": "#ff9f1c"}


def _doc(height: int, title: str, body: list[str]) -> str:
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
            f"<title>{escape(title)}</title>",
            '<rect width="100%" height="100%" fill="white"/>',
            f'<text x="10" y="20" font-size="15" font-weight="bold">{escape(title)}</text>',
            *body,
            "</svg>",
        ]
    )


def _x(percent: float, low: float) -> float:
    return LEFT + PLOT * (max(percent, low) - low) / (100.0 - low)


def uptime_svg(report: dict[str, Any]) -> str:
    rows = [r for r in report["rows"] if r.get("uptime_lower_percent") is not None]
    low = min([r["uptime_lower_percent"] for r in rows] + [r["target_percent"] or 100 for r in rows] + [99.0])
    low = max(0.0, float(int(low) - 1))
    body = [
        f'<text x="{LEFT}" y="42" fill="#555">{low:g} %</text>',
        f'<text x="{LEFT + PLOT - 30}" y="42" fill="#555">100 %</text>',
    ]
    for i, r in enumerate(rows):
        y = 55 + i * ROW
        label = r["customer_id"] if r["level"] == "customer" else f"  {r['server_id']}"
        colour = STATUS.get(r["status"], "#1f77b4")
        x0, x1 = _x(r["uptime_lower_percent"], low), _x(r["uptime_upper_percent"], low)
        point = _x(r["uptime_percent"], low)
        body.append(f'<text x="10" y="{y + 14}">{escape(label)}</text>')
        body.append(
            f'<rect x="{x0:.1f}" y="{y + 4}" width="{max(x1 - x0, 2):.1f}" height="12" fill="{colour}" '
            f'opacity="0.45"><title>{r["uptime_lower_percent"]}..{r["uptime_upper_percent"]} %</title></rect>'
        )
        body.append(
            f'<line x1="{point:.1f}" x2="{point:.1f}" y1="{y + 2}" y2="{y + 18}" stroke="{colour}" '
            'stroke-width="3"/>'
        )
        if r.get("target_percent") is not None:
            tx = _x(r["target_percent"], low)
            body.append(
                f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{y}" y2="{y + 20}" stroke="black" '
                'stroke-dasharray="3,2"/>'
            )
        body.append(f'<text x="{WIDTH - 35}" y="{y + 14}" font-size="10">{escape(r["status"])}</text>')
    height = 75 + len(rows) * ROW
    return _doc(height, f"Uptime {report['month']} (bar: bounds, mark: estimate, dashes: target)", body)


def _bars(
    title: str, groups: list[tuple[str, list[tuple[str, float | None]]]], unit: str, top: float | None
) -> str:
    series = [name for name, _ in groups[0][1]] if groups else []
    scale = top or max([v or 0 for _, values in groups for _, v in values] + [1])
    body = [
        f'<rect x="{LEFT + i * 150}" y="32" width="10" height="10" fill="{COLOURS[i % len(COLOURS)]}"/>'
        f'<text x="{LEFT + i * 150 + 14}" y="41">{escape(name)}</text>'
        for i, name in enumerate(series)
    ]
    y = 55
    for label, values in groups:
        body.append(f'<text x="10" y="{y + 12}">{escape(label)}</text>')
        for j, (name, value) in enumerate(values):
            width = 0.0 if value is None else PLOT * value / scale
            shown = "n/a" if value is None else f"{value:g}{unit}"
            body.append(
                f'<rect x="{LEFT}" y="{y}" width="{width:.1f}" height="14" '
                f'fill="{COLOURS[j % len(COLOURS)]}"><title>{escape(name)}: {shown}</title></rect>'
                f'<text x="{LEFT + width + 4:.1f}" y="{y + 11}" font-size="10">{shown}</text>'
            )
            y += 16
        y += 10
    return _doc(y + 10, title, body)


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(100.0 * part / whole, 1)


def sla_svg(report: dict[str, Any]) -> str:
    groups = [
        (
            r["customer_id"],
            [
                ("Sev1 worked in time", _share(r["sev1_worked_in_time"], r["sev1_cases"])),
                ("updates on time", _share(r["updates_on_time"], r["updates_due"])),
                (
                    "Sev2/3 first response met",
                    _share(
                        r["sev2_first_response_met"] + r["sev3_first_response_met"],
                        r["sev2_cases"] + r["sev3_cases"],
                    ),
                ),
            ],
        )
        for r in report["rows"]
    ]
    return _bars(f"Support SLA compliance {report['month']}", groups, " %", 100.0)


def cases_svg(report: dict[str, Any]) -> str:
    groups: list[tuple[str, list[tuple[str, float | None]]]] = [
        (
            f"{r['dimension']}: {r['value']}",
            [("open", float(r["open"])), ("resolved", float(r["resolved"])), ("closed", float(r["closed"]))],
        )
        for r in report["rows"]
    ]
    return _bars(f"Cases opened {report['month']} and their state at its end", groups, "", None)


def capacity_svg(report: dict[str, Any]) -> str:
    level = "server" if any(r["level"] == "server" for r in report["rows"]) else "customer"
    series: dict[str, list[tuple[str, int]]] = {}
    for r in report["rows"]:
        if r["level"] == level and r["p95_ms"] is not None:
            key = r["server_id"] if level == "server" else r["customer_id"]
            series.setdefault(str(key), []).append((r["day"], int(r["p95_ms"])))
    days = sorted({d for points in series.values() for d, _ in points})
    top = max([v for points in series.values() for _, v in points] + [1])
    height, base = 320, 280
    body = [
        f'<line x1="{LEFT}" x2="{LEFT + PLOT}" y1="{base}" y2="{base}" stroke="#999"/>',
        f'<text x="{LEFT - 60}" y="60">{top} ms</text>',
        f'<text x="{LEFT - 30}" y="{base}">0</text>',
    ]
    if days:
        body.append(f'<text x="{LEFT}" y="{base + 16}">{escape(days[0])}</text>')
        body.append(f'<text x="{LEFT + PLOT - 70}" y="{base + 16}">{escape(days[-1])}</text>')
    step = PLOT / max(len(days) - 1, 1)
    for i, (key, points) in enumerate(sorted(series.items())):
        colour = COLOURS[i % len(COLOURS)]
        coords = " ".join(
            f"{LEFT + step * days.index(d):.1f},{base - (base - 60) * v / top:.1f}" for d, v in points
        )
        body.append(
            f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2">'
            f"<title>{escape(key)}</title></polyline>"
        )
        body.append(f'<text x="10" y="{60 + i * 16}" fill="{colour}">{escape(key)}</text>')
    return _doc(height, f"Daily p95 latency per {level} {report['month']}", body)


CHARTS = {"uptime": uptime_svg, "sla": sla_svg, "capacity": capacity_svg, "cases": cases_svg}


def render(report: dict[str, Any]) -> str:
    """The SVG chart of a report dict (as `history.reports.build` returns it)."""
    chart = CHARTS.get(str(report.get("report")))
    if chart is None:
        raise InvalidQuery(f"no chart for report {report.get('report')!r}")
    return chart(report)
