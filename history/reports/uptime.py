"""Monthly uptime per server and customer, planned maintenance excluded, with bounds for coarse cadences.

Between two consecutive probes of a server the time counts as up (ok -> ok), down (fail -> fail) or unknown
(one of each: the change happened somewhere in between). The lower bound takes unknown as down, the upper
as up, the point estimate as half up. An interval that starts or ends at a probe inside a planned
maintenance window (a row with maintenance_id) is planned: excluded from the measured time. Intervals do
not cross the month boundary. Failures are counted apart: `unplanned_failures` (outside any window: they
count against uptime) and `planned_failures` (inside one); `failures` is their sum. The customer's plan
(PolicyBook `uptime_target_percent`) gives the target: `met` when even the lower bound reaches it,
`breached` when even the upper bound misses it, else `uncertain`.
"""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client

from history.ddl import PROBE_DAY, PROBE_HOUR
from history.reports.common import FILTERS, PERIOD, ReportQuery, iso, percent, run
from policy.sla import PolicyBook

UPTIME_SQL = f"""
WITH probes AS (
    SELECT customer_id, server_id, probe_id, any(started_at) AS t, any(ok) AS ok,
        any(maintenance_id) IS NOT NULL AS planned
    FROM probe_results
    WHERE {PERIOD.format(column="started_at")} AND {FILTERS}
    GROUP BY customer_id, server_id, probe_id
),
pairs AS (
    SELECT customer_id, server_id, t, ok, planned,
        row_number() OVER w AS rn,
        toUnixTimestamp64Milli(t) - toUnixTimestamp64Milli(lagInFrame(t) OVER w) AS dt,
        lagInFrame(ok) OVER w AS prev_ok,
        lagInFrame(planned) OVER w AS prev_planned
    FROM probes
    WINDOW w AS (PARTITION BY customer_id, server_id ORDER BY t ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
)
SELECT customer_id, server_id, count() AS probes, countIf(NOT ok) AS failures,
    countIf(planned) AS planned_probes, countIf(NOT ok AND NOT planned) AS unplanned_failures,
    countIf(NOT ok AND planned) AS planned_failures,
    sumIf(dt, rn > 1 AND NOT planned AND NOT prev_planned AND ok AND prev_ok) AS up_ms,
    sumIf(dt, rn > 1 AND NOT planned AND NOT prev_planned AND NOT ok AND NOT prev_ok) AS down_ms,
    sumIf(dt, rn > 1 AND NOT planned AND NOT prev_planned AND ok != prev_ok) AS unknown_ms,
    sumIf(dt, rn > 1 AND (planned OR prev_planned)) AS planned_ms,
    toUnixTimestamp64Milli(min(t)) AS first_ms, toUnixTimestamp64Milli(max(t)) AS last_ms
FROM pairs
GROUP BY customer_id, server_id
ORDER BY customer_id, server_id
"""  # noqa: S608 (constant fragments; values are bound)

BUCKET_PERIOD = """bucket >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
    AND bucket < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')"""


def _buckets(table: str, within: str, twice: str) -> str:
    """Per bucket of `table`: counts, first (a) and last (b) probe time, class (1 ok, 0 failed, 2 planned;
    -1 mixed; -2 `twice`: a row possibly stored twice); `within`: an extra condition."""
    return f"""
    SELECT customer_id, server_id, bucket, sum(probes) AS n, sum(failures) AS f, sum(planned) AS p,
        sum(planned_failures) AS pf, min(first_at) AS a, max(last_at) AS b,
        multiIf({twice}, -2, p = n, 2, p = 0 AND f = 0, 1, p = 0 AND f = n, 0, -1) AS cls
    FROM {table}
    WHERE {BUCKET_PERIOD} AND {FILTERS} AND {within}
    GROUP BY customer_id, server_id, bucket
"""  # noqa: S608 (constant fragments; values are bound)


ROLLUP_UPTIME_SQL = f"""
WITH days AS ({_buckets(PROBE_DAY, "1", "groupBitmapMerge(distinct_at) != n")}),
hours AS ({
    _buckets(
        PROBE_HOUR,
        "(customer_id, server_id, toStartOfDay(bucket)) "
        "IN (SELECT customer_id, server_id, bucket FROM days WHERE cls = -1)",
        "0",
    )
}),
mixed AS (
    SELECT customer_id, server_id, probe_id, any(started_at) AS t, any(ok) AS ok,
        any(maintenance_id) IS NOT NULL AS planned, if(planned, 2, if(ok, 1, 0)) AS cls
    FROM probe_results
    WHERE {PERIOD.format(column="started_at")} AND {FILTERS}
        AND ((customer_id, server_id, toStartOfHour(started_at))
                IN (SELECT customer_id, server_id, bucket FROM hours WHERE cls = -1)
            OR (customer_id, server_id, toStartOfDay(started_at))
                IN (SELECT customer_id, server_id, bucket FROM days WHERE cls = -2))
    GROUP BY customer_id, server_id, probe_id
),
segments AS (
    SELECT customer_id, server_id, a, b, cls, n, f, p, pf FROM days WHERE cls >= 0
    UNION ALL
    SELECT customer_id, server_id, a, b, cls, n, f, p, pf FROM hours WHERE cls >= 0
    UNION ALL
    SELECT customer_id, server_id, t AS a, t AS b, cls, toUInt64(1) AS n, toUInt64(NOT ok) AS f,
        toUInt64(planned) AS p, toUInt64(NOT ok AND planned) AS pf
    FROM mixed
),
pairs AS (
    SELECT customer_id, server_id, cls, n, f, p, pf, a, b,
        toUnixTimestamp64Milli(b) - toUnixTimestamp64Milli(a) AS span_ms,
        row_number() OVER w AS rn, lagInFrame(cls) OVER w AS prev,
        toUnixTimestamp64Milli(a) - toUnixTimestamp64Milli(lagInFrame(b) OVER w) AS gap
    FROM segments
    WINDOW w AS (PARTITION BY customer_id, server_id ORDER BY a ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
)
SELECT customer_id, server_id, sum(n) AS probes, sum(f) AS failures, sum(p) AS planned_probes,
        sum(f) - sum(pf) AS unplanned_failures, sum(pf) AS planned_failures,
        sumIf(span_ms, cls = 1) + sumIf(gap, rn > 1 AND cls = 1 AND prev = 1) AS up_ms,
        sumIf(span_ms, cls = 0) + sumIf(gap, rn > 1 AND cls = 0 AND prev = 0) AS down_ms,
        sumIf(gap, rn > 1 AND cls + prev = 1) AS unknown_ms,
        sumIf(span_ms, cls = 2) + sumIf(gap, rn > 1 AND (cls = 2 OR prev = 2)) AS planned_ms,
        toUnixTimestamp64Milli(min(a)) AS first_ms, toUnixTimestamp64Milli(max(b)) AS last_ms
    FROM pairs
    GROUP BY customer_id, server_id
    ORDER BY customer_id, server_id
"""  # noqa: S608 (constant fragments; values are bound)
"""The same figures from the rollups: a day bucket whose probes share one class (ok, failed, planned; see
history.ddl v5) is one segment from its first to its last probe; a day of mixed classes is read from its hour
buckets the same way, and an hour of mixed classes from its raw probes, one segment per probe. A day whose
distinct start seconds are fewer than its probes (a row possibly stored twice) is read from its raw probes
whole, so the hours read hold no row twice. Consecutive segments of a server are stitched as consecutive
probes are in UPTIME_SQL, so every number equals the raw path's."""

SOURCES = {"rollup": ROLLUP_UPTIME_SQL, "raw": UPTIME_SQL}

_SUMS = (
    "probes",
    "failures",
    "planned_probes",
    "unplanned_failures",
    "planned_failures",
    "up_ms",
    "down_ms",
    "unknown_ms",
    "planned_ms",
)


def figures(up_ms: int, down_ms: int, unknown_ms: int, target: float | None) -> dict[str, Any]:
    """Percentages (lower, point, upper) and the verdict against `target` (None: the plan sets none)."""
    measured = up_ms + down_ms + unknown_ms
    lower = percent(up_ms, measured)
    upper = percent(up_ms + unknown_ms, measured)
    point = percent(up_ms + unknown_ms / 2, measured)
    status = "no target"
    if target is not None:
        status = "no data"
        if lower is not None and upper is not None:
            status = "met" if lower >= target else "breached" if upper < target else "uncertain"
    return {
        "measured_ms": measured,
        "uptime_lower_percent": lower,
        "uptime_percent": point,
        "uptime_upper_percent": upper,
        "target_percent": target,
        "status": status,
        "breach": status == "breached",
    }


def uptime_report(
    client: Client, query: ReportQuery, policies: PolicyBook, source: str = "rollup"
) -> dict[str, Any]:
    """Servers and customers of the month: probe counts, up/down/unknown/planned time, uptime bounds.
    `source`: "rollup" (probe_day, probe_hour, the default) or "raw" (probe_results: the reference)."""
    rows = run(client, SOURCES[source], query.params(), "uptime")
    servers: list[dict[str, Any]] = []
    totals: dict[str, dict[str, int]] = {}
    for customer, server, *sums, first_ms, last_ms in rows:
        counted = dict(zip(_SUMS, (int(x) for x in sums), strict=True))
        target = policies.for_customer(customer).uptime_target_percent
        servers.append(
            {
                "level": "server",
                "customer_id": customer,
                "server_id": server,
                **counted,
                "first_probe": iso(first_ms),
                "last_probe": iso(last_ms),
                **figures(counted["up_ms"], counted["down_ms"], counted["unknown_ms"], target),
            }
        )
        total = totals.setdefault(customer, dict.fromkeys(_SUMS, 0) | {"servers": 0})
        total["servers"] += 1
        for key in _SUMS:
            total[key] += counted[key]
    customers = [
        {
            "level": "customer",
            "customer_id": customer,
            "server_id": None,
            **total,
            **figures(
                total["up_ms"],
                total["down_ms"],
                total["unknown_ms"],
                policies.for_customer(customer).uptime_target_percent,
            ),
        }
        for customer, total in sorted(totals.items())
    ]
    return {**query.header("uptime"), "rows": customers + servers}
