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


def uptime_report(client: Client, query: ReportQuery, policies: PolicyBook) -> dict[str, Any]:
    """Servers and customers of the month: probe counts, up/down/unknown/planned time, uptime bounds."""
    rows = run(client, UPTIME_SQL, query.params(), "uptime")
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
