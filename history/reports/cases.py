"""Cases opened in the month counted by severity, source and partner, with their state at the month's end.

A case counts under its latest severity known by the month's end (`none` before triage) and its partner
(`none` without one). At the month's end it is `open` (new, triaged, working, waiting), `resolved`
or `closed`.
"""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client

from history.ddl import COUNTED_EVENTS
from history.reports.common import FILTERS, PERIOD, ReportQuery, run

CASES_SQL = f"""
SELECT case_id, any(source) AS source,
    argMaxIf(severity, seq, severity > 0 AND at < fromUnixTimestamp64Milli({{end_ms:Int64}}, 'UTC')) AS sev,
    argMaxIf(partner_id, seq, partner_id IS NOT NULL) AS partner,
    argMaxIf(state, seq, at < fromUnixTimestamp64Milli({{end_ms:Int64}}, 'UTC')) AS state_at_end
FROM (SELECT * FROM case_events FINAL WHERE {COUNTED_EVENTS} ORDER BY event_id LIMIT 1 BY event_id)
WHERE case_id IN (
    SELECT case_id FROM case_events
    WHERE type = 'case.opened' AND {COUNTED_EVENTS} AND {PERIOD.format(column="at")} AND {FILTERS}
)
GROUP BY case_id
ORDER BY case_id
"""  # noqa: S608 (constant fragments; values are bound)

_DONE = {"resolved", "closed"}


def count_cases(cases: list[tuple[str, str, int, str | None, str]]) -> list[dict[str, Any]]:
    """Rows (dimension, value, opened, open, resolved, closed) from (case, source, severity, partner,
    state) tuples (pure)."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for _case, source, severity, partner, state in cases:
        status = state if state in _DONE else "open"
        for dimension, value in (
            ("total", "all"),
            ("severity", f"sev{severity}" if severity else "none"),
            ("source", source),
            ("partner", partner or "none"),
        ):
            row = counts.setdefault((dimension, value), {"opened": 0, "open": 0, "resolved": 0, "closed": 0})
            row["opened"] += 1
            row[status] += 1
    order = {"total": 0, "severity": 1, "source": 2, "partner": 3}
    return [
        {"dimension": d, "value": v, **n}
        for (d, v), n in sorted(counts.items(), key=lambda kv: (order[kv[0][0]], kv[0][1]))
    ]


def cases_report(client: Client, query: ReportQuery) -> dict[str, Any]:
    """Counts of the month's cases by severity, source and partner."""
    rows = run(client, CASES_SQL, query.params(), "cases")
    cases = [(str(c), str(s), int(sev), p, str(st)) for c, s, sev, p, st in rows]
    return {**query.header("cases"), "rows": count_cases(cases)}
