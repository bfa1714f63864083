"""The checked-in Grafana dashboard: valid JSON for the ClickHouse plugin, the expected panels, and SQL that
runs on the real schema once Grafana's macros and variables are filled in."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from history.store import connect
from tests.unit.history.reports.golden import load

DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "fleetwatch.json"
PLUGIN = "grafana-clickhouse-datasource"


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _fill(sql: str) -> str:
    """Grafana's part: the plugin's macros and the dashboard variables, as it would expand them."""
    sql = re.sub(
        r"\$__timeFilter\((\w+)\)",
        r"\1 >= toDateTime64('2026-11-01 00:00:00', 3, 'UTC')"
        r" AND \1 < toDateTime64('2026-12-01 00:00:00', 3, 'UTC')",
        sql,
    )
    sql = re.sub(r"\$__timeInterval\((\w+)\)", r"toStartOfInterval(\1, INTERVAL 1 HOUR)", sql)
    sql = sql.replace("${customer:singlequote}", "'acme','beta','delta'")
    sql = sql.replace("${server:singlequote}", "'web-1','db-1','app-1','api-1'")
    assert "$" not in sql, sql
    return sql


def test_dashboard_uses_the_clickhouse_plugin_with_expected_panels() -> None:
    board = _dashboard()
    titles = [p["title"] for p in board["panels"]]
    for wanted in ("Uptime per server", "Latency p50 / p95 / p99", "Load (1 min) per server", "Fleet size"):
        assert any(t.startswith(wanted) for t in titles), wanted
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["query"] == PLUGIN
    for panel in board["panels"]:
        assert panel["datasource"]["type"] == PLUGIN
        for target in panel["targets"]:
            assert target["datasource"]["type"] == PLUGIN
            assert target["editorType"] == "sql"
            assert target["format"] in (0, 1)
            assert "probe_results" in target["rawSql"]
    uptime = next(p for p in board["panels"] if p["title"] == "Uptime per server")
    assert "maintenance_id IS NULL" in uptime["targets"][0]["rawSql"]  # planned maintenance excluded


def test_panel_and_variable_sql_runs_on_the_schema(tmp_path: Path) -> None:
    board = _dashboard()
    queries = [t["rawSql"] for p in board["panels"] for t in p["targets"]]
    queries += [v["query"]["rawSql"] for v in board["templating"]["list"] if v["type"] == "query"]
    client = connect(f"chdb://{tmp_path / 'clickhouse'}", "fleetwatch")
    try:
        load(client)
        for sql in queries:
            rows = client.query(_fill(sql)).result_rows
            assert rows, sql
    finally:
        client.close()
