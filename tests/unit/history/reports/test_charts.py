"""Charts: one per report, rendered and read back: marks per series, full labels, axis titles with units, a
legend; standalone SVG (no script, nothing fetched) with escaped text."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from history.charts import render
from history.queries import InvalidQuery
from history.reports import REPORTS, build, report_query
from tests.unit.history.reports.golden import MONTH, POLICIES

SVG = "{http://www.w3.org/2000/svg}"


class Drawn:
    """What a chart draws, read from its SVG."""

    def __init__(self, svg: str) -> None:
        self.root = ET.fromstring(svg)
        assert self.root.tag == f"{SVG}svg"

    def groups(self, cls: str) -> list[ET.Element]:
        return [g for g in self.root.iter(f"{SVG}g") if cls in (g.get("class") or "").split()]

    @property
    def legend(self) -> list[str]:
        return [t.text or "" for g in self.groups("legend") for t in g.iter(f"{SVG}text")]

    def marks(self) -> dict[str, int]:
        """Drawn points (dots) and bars per series, by legend name."""
        counts = dict.fromkeys(self.legend, 0)
        names = self.legend
        for group in self.groups("series"):
            index = next(int(c[6:]) for c in (group.get("class") or "").split() if c.startswith("serie-"))
            dots = [c for c in group.iter(f"{SVG}circle") if "dot" in (c.get("class") or "").split()]
            bars = [r for g in group.iter(f"{SVG}g") if g.get("class") == "bar" for r in g.iter(f"{SVG}rect")]
            counts[names[index]] += len(dots) + len(bars)
        return counts

    @property
    def axis_titles(self) -> list[str]:
        return [t.text or "" for g in self.groups("titles") for t in g.iter(f"{SVG}text")][1:]

    @property
    def labels(self) -> list[str]:
        return [t.text or "" for g in self.groups("axis") for t in g.iter(f"{SVG}text")]

    @property
    def tooltips(self) -> list[str]:
        return [
            t.text or "" for g in self.root.iter(f"{SVG}g") if g.get("class") in ("dots", "bar")
            for t in g.findall(f"{SVG}title")
        ]  # fmt: skip

    @property
    def texts(self) -> list[str]:
        return [t.text or "" for t in self.root.iter(f"{SVG}text")]


def drawn(client: Client, name: str, **filters: str) -> Drawn:
    return Drawn(render(build(client, name, report_query(MONTH, **filters), POLICIES, 200)))


def test_uptime_chart_a_row_per_customer_and_server_with_full_status_labels(golden: Client) -> None:
    chart = drawn(golden, "uptime")
    # nine rows (four customers, five servers); five have a target in the plan (acme, beta and theirs)
    assert chart.marks() == {"plan's target": 5, "lower bound": 9, "upper bound": 9, "estimate": 9}
    assert "uptime (% of the measured time)" in chart.axis_titles
    labels = chart.labels
    assert "gamma edge-1: no target, 100.00 %" in labels  # not cut ("no targ")
    assert "acme db-1: uncertain, 97.22 % (target 97 %)" in labels
    assert "beta, all servers: breached, 79.80 % (target 99.9 %)" in labels
    assert labels.index("acme, all servers: uncertain, 97.51 % (target 97 %)") < labels.index(
        "gamma edge-1: no target, 100.00 %"
    )  # the table's order, top down
    assert "lower bound, acme db-1: uncertain, 97.22 % (target 97 %): 95.8333 %" in chart.tooltips


def test_capacity_chart_shows_a_series_of_one_day_as_a_point(golden: Client) -> None:
    chart = drawn(golden, "capacity")
    # days with a p95: api-1 Nov 5..9, db-1 Nov 2 and its last probe at Nov 3 00:00, the others one day each
    assert chart.marks() == {
        "server api-1": 5,
        "server app-1": 1,
        "server db-1": 2,
        "server edge-1": 1,
        "server web-1": 1,
        "forecast threshold 200 ms": 0,  # a dashed line, no points
    }
    assert chart.axis_titles == ["day (UTC)", "p95 latency (ms)"]
    assert {"2026-11-02", "2026-11-09"} <= set(chart.labels)
    assert "server api-1, 2026-11-09: 162 ms" in chart.tooltips  # 100 + 10 * 4 + nearest-rank p95 hour 22


def test_capacity_chart_of_a_months_first_day_is_not_blank() -> None:
    report = {
        "report": "capacity",
        "month": "2026-12",
        "rows": [
            {
                "level": "customer",
                "customer_id": "acme",
                "server_id": None,
                "day": "2026-12-01",
                "p95_ms": 90,
            },
            {
                "level": "server",
                "customer_id": "acme",
                "server_id": "new-1",
                "day": "2026-12-01",
                "p95_ms": 90,
            },
        ],
    }
    assert Drawn(render(report)).marks() == {"server new-1": 1}
    customers = {**report, "rows": report["rows"][:1]}
    assert Drawn(render(customers)).marks() == {"customer acme": 1}


def test_sla_chart_bars_only_where_the_customer_had_such_cases(golden: Client) -> None:
    chart = drawn(golden, "sla")
    # acme: Sev1 1 of 2 in time, updates 2 of 3, Sev2/3 1 of 2; beta: Sev1 1 of 1, no update due, no Sev2/3
    assert chart.marks() == {
        "Sev1 worked in time": 2,
        "hourly updates on time": 1,
        "Sev2/Sev3 first response met": 1,
    }
    assert "met in time (% of the customer's cases or updates due)" in chart.axis_titles
    assert {"50 %", "66.7 %", "100 %"} <= set(chart.texts)  # values printed on the bars
    assert {"acme", "beta"} <= set(chart.labels)


def test_cases_chart_stacks_states_per_dimension(golden: Client) -> None:
    chart = drawn(golden, "cases")
    # 11 rows; every row but source monitor has an open case; resolved and closed: total, sev1, monitor, none
    assert chart.marks() == {"open": 10, "resolved": 4, "closed": 4}
    assert "cases opened in the month (count)" in chart.axis_titles
    assert {"total: all", "severity: sev1", "source: monitor", "partner: isp-1", "partner: none"} <= set(
        chart.labels
    )


def test_every_chart_is_standalone_and_says_so_when_empty(golden: Client) -> None:
    for name in REPORTS:
        svg = render(build(golden, name, report_query(MONTH), POLICIES, 200))
        root = ET.fromstring(svg)
        assert not list(root.iter(f"{SVG}script")), name  # no script: offline, the portal's CSP
        links = [v for e in root.iter() for k, v in e.attrib.items() if k.endswith("href")]
        assert not [v for v in links if "://" in v], name  # nothing fetched from elsewhere
        assert root.find(f"{SVG}title") is not None
        assert MONTH in (root.find(f"{SVG}title").text or "")  # type: ignore[union-attr]
        empty = Drawn(render(build(golden, name, report_query("2025-01"), POLICIES, 200)))
        assert "no data for this month" in empty.texts, name


def test_labels_are_escaped() -> None:
    report: dict[str, Any] = {
        "report": "cases",
        "month": "2026-11",
        "rows": [
            {"dimension": "partner", "value": "<x&y>", "opened": 1, "open": 1, "resolved": 0, "closed": 0}
        ],
    }
    svg = render(report)
    assert "<x&y>" not in svg
    assert "partner: <x&y>" in Drawn(svg).labels


def test_unknown_report_has_no_chart() -> None:
    with pytest.raises(InvalidQuery):
        render({"report": "nope"})
