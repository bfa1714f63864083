"""Capacity: daily latency percentiles per server and customer, health metrics, fleet growth, a forecast.

Latency percentiles are nearest-rank (the ceil(p * n)-th smallest value) over the day's successful probes
outside planned maintenance (a failure's latency is its timeout, not the service's speed); computed with
integer ranks so they are exact. Health figures are averages and maxima of what servers reported (None when
none did). Fleet growth counts distinct servers probed per day. The forecast fits a least-squares line to
the daily p95 of each server and customer and says in how many days from the last day it crosses the
caller's threshold (0: already above; None: flat or falling, or too few days).
"""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client

from history.queries import InvalidQuery
from history.reports.common import FILTERS, PERIOD, ReportQuery, run

_DAILY = """
SELECT {key} AS key_id, customer_id, toDate(started_at, 'UTC') AS day, count() AS probes,
    arraySort(groupArrayIf(latency_ms, ok AND maintenance_id IS NULL)) AS lat,
    length(lat) AS samples,
    if(samples = 0, NULL, arrayElement(lat, intDiv(samples * 50 + 99, 100))) AS p50,
    if(samples = 0, NULL, arrayElement(lat, intDiv(samples * 95 + 99, 100))) AS p95,
    if(samples = 0, NULL, arrayElement(lat, intDiv(samples * 99 + 99, 100))) AS p99,
    avg(health_load1) AS load1_avg, max(health_load1) AS load1_max,
    avg(health_connections) AS connections_avg, max(health_connections) AS connections_max
FROM (
    SELECT * FROM probe_results
    WHERE {period} AND {filters}
    ORDER BY probe_id
    LIMIT 1 BY probe_id
)
GROUP BY key_id, customer_id, day
ORDER BY key_id, day
"""

SERVER_DAILY_SQL = _DAILY.format(key="server_id", period=PERIOD.format(column="started_at"), filters=FILTERS)
CUSTOMER_DAILY_SQL = _DAILY.format(key="''", period=PERIOD.format(column="started_at"), filters=FILTERS)
FLEET_SQL = f"""
SELECT toDate(started_at, 'UTC') AS day, uniqExact(server_id) AS servers
FROM probe_results
WHERE {PERIOD.format(column="started_at")} AND {FILTERS}
GROUP BY day ORDER BY day
"""  # noqa: S608 (constant fragments; values are bound)

MAX_THRESHOLD_MS = 3_600_000


def linear_fit(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares (slope, intercept) of y over x; None for fewer than two distinct x."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return slope, my - slope * mx


def days_until(points: list[tuple[float, float]], threshold: float) -> float | None:
    """Days after the last point until the fitted line exceeds `threshold` (0 if the last value already
    does); None when the line is flat or falling, or cannot be fitted."""
    if points and points[-1][1] > threshold:
        return 0.0
    fit = linear_fit(points)
    if fit is None or fit[0] <= 0:
        return None
    slope, intercept = fit
    last = points[-1][0]
    return round(max(0.0, (threshold - intercept) / slope - last), 2)


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


def _daily(rows: list[tuple[Any, ...]], level: str) -> list[dict[str, Any]]:
    out = []
    for key, customer, day, probes, _lat, samples, p50, p95, p99, l_avg, l_max, c_avg, c_max in rows:
        out.append(
            {
                "level": level,
                "customer_id": customer,
                "server_id": key if level == "server" else None,
                "day": day.isoformat(),
                "probes": int(probes),
                "latency_samples": int(samples),
                "p50_ms": p50,
                "p95_ms": p95,
                "p99_ms": p99,
                "load1_avg": _round(l_avg),
                "load1_max": _round(l_max),
                "connections_avg": _round(c_avg),
                "connections_max": None if c_max is None else int(c_max),
            }
        )
    return out


def _forecasts(rows: list[dict[str, Any]], threshold_ms: float) -> list[dict[str, Any]]:
    series: dict[tuple[str, str | None], list[tuple[float, float]]] = {}
    first_day: dict[tuple[str, str | None], int] = {}
    from datetime import date

    for row in rows:
        if row["p95_ms"] is None:
            continue
        key = (row["customer_id"], row["server_id"])
        ordinal = date.fromisoformat(row["day"]).toordinal()
        start = first_day.setdefault(key, ordinal)
        series.setdefault(key, []).append((float(ordinal - start), float(row["p95_ms"])))
    out = []
    for (customer, server), points in sorted(series.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        fit = linear_fit(points)
        out.append(
            {
                "level": "customer" if server is None else "server",
                "customer_id": customer,
                "server_id": server,
                "metric": "p95_ms",
                "threshold_ms": threshold_ms,
                "days": len(points),
                "slope_ms_per_day": None if fit is None else round(fit[0], 4),
                "days_until_threshold": days_until(points, threshold_ms),
            }
        )
    return out


def capacity_report(client: Client, query: ReportQuery, threshold_ms: float | None = None) -> dict[str, Any]:
    """Daily rows per server and customer, fleet size per day, and forecasts when a threshold is given."""
    if threshold_ms is not None and not 0 < threshold_ms <= MAX_THRESHOLD_MS:
        raise InvalidQuery(f"threshold must be a latency in ms from 1 to {MAX_THRESHOLD_MS}")
    params = query.params()
    rows = _daily(run(client, CUSTOMER_DAILY_SQL, params, "capacity"), "customer")
    rows += _daily(run(client, SERVER_DAILY_SQL, params, "capacity"), "server")
    fleet = [
        {"day": day.isoformat(), "servers": int(n)} for day, n in run(client, FLEET_SQL, params, "fleet")
    ]
    out: dict[str, Any] = {**query.header("capacity"), "rows": rows, "fleet": fleet}
    if threshold_ms is not None:
        out["forecast"] = _forecasts(rows, threshold_ms)
    return out
