"""SVG charts of the reports, drawn with pygal: one `render(report)` per report dict.

- uptime: one row per customer and server, dots on a percent axis: the plan's target, the lower bound, the
  estimate and the upper bound; the row's label says the status ("acme web-1: uncertain").
- sla: per customer, bars of the share of Sev1 cases worked in time, hourly updates on time and Sev2/Sev3
  first responses met (percent; a customer without such cases has no bar, not a zero).
- capacity: daily p95 latency per server (or per customer when the report has no server rows), a line with
  a dot per day, so a series of one day (a month's first day, a new server) still shows; the forecast's
  threshold as a dashed line when the report has one.
- cases: cases opened in the month per severity, source and partner, stacked by their state at its end.

Every chart has a title with the month, axis titles with units, full (untruncated) labels and a legend.
The SVG is standalone and works offline: pygal's script (a CDN link) is left out, its styles are inline,
so it passes the portal's Content-Security-Policy; each point or bar carries an SVG <title>, the
browser's own tooltip. pygal escapes the text.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pygal  # type: ignore[import-untyped]  # no type information
from pygal.style import Style  # type: ignore[import-untyped]

# pygal appends a legacy import hook for its map plugins (unused here) that has no find_spec, so every later
# failed import anywhere in the process warns (ImportWarning; an error under -W error): take it out again,
# before importing anything else (history.queries -> clickhouse_connect tries an optional import).
sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, pygal.PluginImportFixer)]

from history.queries import InvalidQuery  # noqa: E402

WIDTH = 900
STYLE = Style(
    font_family="DejaVu Sans, Arial, sans-serif",
    background="white",
    plot_background="white",
    title_font_size=17,
    label_font_size=13,
    major_label_font_size=13,
    legend_font_size=13,
    value_font_size=12,
    tooltip_font_size=13,
    stroke_width="2.5",
    colors=("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"),
)
UPTIME_COLOURS = ("#222222", "#d62728", "#2ca02c", "#1f77b4")
"""target, lower bound, upper bound, estimate"""
STATE_COLOURS = ("#ff7f0e", "#2ca02c", "#7f7f7f")
"""open, resolved, closed"""
SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
THRESHOLD_COLOUR = "#d62728"
"""capacity: a colour per server (none red), the forecast threshold red"""


def _config(title: str, rows: int = 0, **extra: Any) -> dict[str, Any]:
    """What every chart shares: no script (offline, no CDN), full labels, a legend below, the white style."""
    return {
        "title": title,
        "js": [],
        "disable_xml_declaration": True,
        "style": STYLE,
        "width": WIDTH,
        "height": max(420, 170 + 34 * rows),
        "truncate_label": -1,
        "truncate_legend": -1,
        "legend_at_bottom": True,
        "legend_at_bottom_columns": 2,
        "no_data_text": "no data for this month",
        "explicit_size": True,
        **extra,
    }


def _svg(chart: Any, unit: str, rings: frozenset[int] = frozenset()) -> str:
    """The SVG of a pygal chart: a <title> on every point and bar ("series, label: value unit"); pygal's
    inline configuration script and the empty bars of a stacked chart left out; the dots of the series
    numbered in `rings` drawn as rings, so a dot under one stays visible."""
    names = [str(config["title"]) for _, config in chart.raw_series]
    root = chart.render_tree()  # plain tag names; the svg element carries xmlns as an attribute
    for parent in list(root.iter()):
        for script in parent.findall("script"):
            parent.remove(script)
        for bar in parent.findall("g[@class='bar']"):  # a stacked chart's empty part: nothing to point at
            if any(
                float(r.get("width") or 0) == 0 or float(r.get("height") or 0) == 0 for r in bar.iter("rect")
            ):
                parent.remove(bar)
    for group in root.iter("g"):
        classes = (group.get("class") or "").split()
        index = next((int(c[6:]) for c in classes if c.startswith("serie-") and c[6:].isdigit()), None)
        if "series" not in classes or index is None or index >= len(names):
            continue
        if index in rings:
            for dot in group.iter("circle"):
                dot.set("style", f"fill:none;stroke:{chart.style.colors[index]};stroke-width:3")
        for mark in group.iter("g"):
            if not {"dots", "bar"} & set((mark.get("class") or "").split()):
                continue
            descs = {d.get("class"): d.text for d in mark.findall("desc")}
            value, label = descs.get("value"), descs.get("x_label")
            if value is not None:
                title = ET.SubElement(mark, "title")
                title.text = f"{names[index]}{', ' + label if label else ''}: {value}{unit}"
    return ET.tostring(root, encoding="unicode")


def _percent(value: float) -> str:
    return f"{value:g} %"


def uptime_svg(report: dict[str, Any]) -> str:
    rows = [r for r in report["rows"] if r.get("uptime_percent") is not None]
    lows = [r["uptime_lower_percent"] for r in rows] + [r["target_percent"] or 100.0 for r in rows]
    low = max(0.0, float(int(min([*lows, 99.0]))) - 1)
    chart = pygal.HorizontalLine(
        **_config(
            f"Uptime {report['month']}: planned maintenance excluded",
            len(rows),
            stroke=False,
            dots_size=6,
            range=(low, 100.0),
            x_title="uptime (% of the measured time)",
            value_formatter=_percent,
            legend_at_bottom_columns=4,
            width=WIDTH + 150,
            max_scale=8,
        )
    )
    chart.style = Style(**{**STYLE.to_dict(), "colors": UPTIME_COLOURS})
    chart.x_labels = [_uptime_label(r) for r in rows]  # the table's order, top down
    chart.add("plan's target", [r["target_percent"] for r in rows], dots_size=8)
    chart.add("lower bound", [r["uptime_lower_percent"] for r in rows])
    chart.add("upper bound", [r["uptime_upper_percent"] for r in rows])
    chart.add("estimate", [r["uptime_percent"] for r in rows], dots_size=4)
    return _svg(chart, "", rings=frozenset({0}))


def _uptime_label(row: dict[str, Any]) -> str:
    """ "acme web-1: met, 98.24 % (target 97 %)"; a customer's row is "acme, all servers: ..."."""
    server = row["server_id"] if row["level"] == "server" else None
    who = f"{row['customer_id']} {server}" if server else f"{row['customer_id']}, all servers"
    target = "" if row["target_percent"] is None else f" (target {row['target_percent']:g} %)"
    return f"{who}: {row['status']}, {row['uptime_percent']:.2f} %{target}"


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(100.0 * part / whole, 1)


def sla_svg(report: dict[str, Any]) -> str:
    rows = list(reversed(report["rows"]))  # a horizontal bar chart lists its first label at the bottom
    chart = pygal.HorizontalBar(
        **_config(
            f"Support SLA compliance {report['month']} (no bar: no such case)",
            3 * len(rows),
            range=(0, 100),
            x_title="met in time (% of the customer's cases or updates due)",
            print_values=True,
            value_formatter=_percent,
            legend_at_bottom_columns=3,
        )
    )
    chart.x_labels = [r["customer_id"] for r in rows]
    chart.add("Sev1 worked in time", [_share(r["sev1_worked_in_time"], r["sev1_cases"]) for r in rows])
    chart.add("hourly updates on time", [_share(r["updates_on_time"], r["updates_due"]) for r in rows])
    chart.add(
        "Sev2/Sev3 first response met",
        [
            _share(
                r["sev2_first_response_met"] + r["sev3_first_response_met"], r["sev2_cases"] + r["sev3_cases"]
            )
            for r in rows
        ],
    )
    return _svg(chart, "")


def cases_svg(report: dict[str, Any]) -> str:
    rows = list(reversed(report["rows"]))
    chart = pygal.HorizontalStackedBar(
        **_config(
            f"Cases opened in {report['month']}, by their state at the month's end",
            len(rows),
            x_title="cases opened in the month (count)",
            print_values=True,
            legend_at_bottom_columns=3,
            value_formatter=lambda v: f"{v:g}" if v else "",
        )
    )
    chart.style = Style(**{**STYLE.to_dict(), "colors": STATE_COLOURS})
    chart.x_labels = [f"{r['dimension']}: {r['value']}" for r in rows]
    for state in ("open", "resolved", "closed"):
        chart.add(state, [r[state] or None for r in rows])
    return _svg(chart, " cases")


def capacity_svg(report: dict[str, Any]) -> str:
    level = "server" if any(r["level"] == "server" for r in report["rows"]) else "customer"
    series: dict[str, dict[str, float]] = {}
    for r in report["rows"]:
        if r["level"] == level and r["p95_ms"] is not None:
            key = r["server_id"] if level == "server" else r["customer_id"]
            series.setdefault(str(key), {})[r["day"]] = float(r["p95_ms"])
    days = sorted({d for points in series.values() for d in points})
    thresholds = sorted({f["threshold_ms"] for f in report.get("forecast", [])})
    chart = pygal.Line(
        **_config(
            f"Daily p95 latency per {level} {report['month']} (successful probes outside maintenance)",
            0,
            height=480 + 20 * ((len(series) + 1) // 2),
            x_title="day (UTC)",
            y_title="p95 latency (ms)",
            dots_size=4,
            allow_interruptions=True,
            include_x_axis=True,
            x_label_rotation=40 if len(days) > 8 else 0,
            value_formatter=lambda v: f"{v:g} ms",
            legend_at_bottom_columns=2,
            margin_right=40,
        )
    )
    palette = [SERIES_COLOURS[i % len(SERIES_COLOURS)] for i in range(len(series))]
    chart.style = Style(**{**STYLE.to_dict(), "colors": (*palette, *[THRESHOLD_COLOUR] * len(thresholds))})
    chart.x_labels = days
    for key, points in sorted(series.items()):
        chart.add(f"{level} {key}", [points.get(d) for d in days])
    for threshold in thresholds:
        chart.add(
            f"forecast threshold {threshold:g} ms",
            [threshold] * len(days),
            show_dots=False,
            stroke_style={"width": 3, "dasharray": "10, 6"},
        )
    return _svg(chart, "")


CHARTS: dict[str, Callable[[dict[str, Any]], str]] = {
    "uptime": uptime_svg,
    "sla": sla_svg,
    "capacity": capacity_svg,
    "cases": cases_svg,
}


def render(report: dict[str, Any]) -> str:
    """The SVG chart of a report dict (as `history.reports.build` returns it)."""
    chart = CHARTS.get(str(report.get("report")))
    if chart is None:
        raise InvalidQuery(f"no chart for report {report.get('report')!r}")
    return chart(report)
