"""Charts: each report renders a well-formed SVG that shows its figures; labels are escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from clickhouse_connect.driver.client import Client

from history.charts import render
from history.queries import InvalidQuery
from history.reports import REPORTS, build, report_query
from tests.unit.history.reports.golden import MONTH, POLICIES

SVG = "{http://www.w3.org/2000/svg}"


def test_every_report_renders_valid_svg(golden: Client) -> None:
    for name in REPORTS:
        svg = render(build(golden, name, report_query(MONTH), POLICIES, 200))
        root = ET.fromstring(svg)
        assert root.tag == f"{SVG}svg"
        assert root.find(f"{SVG}title") is not None
        assert len(root) > 4, name


def test_uptime_chart_marks_status_and_server(golden: Client) -> None:
    svg = render(build(golden, "uptime", report_query(MONTH), POLICIES))
    assert "db-1" in svg
    assert "uncertain" in svg
    assert "breached" in svg


def test_labels_are_escaped() -> None:
    report = {
        "report": "cases",
        "month": "2026-11",
        "rows": [
            {"dimension": "partner", "value": "<x&y>", "opened": 1, "open": 1, "resolved": 0, "closed": 0}
        ],
    }
    svg = render(report)
    assert "<x&y>" not in svg
    assert "&lt;x&amp;y&gt;" in svg
    ET.fromstring(svg)


def test_unknown_report_has_no_chart() -> None:
    with pytest.raises(InvalidQuery):
        render({"report": "nope"})
