"""Prometheus metrics of one notifier (own registry, so tests can run several in one process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

SEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class NotifierMetrics:
    """The notifier's counters and gauges."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.notifications = Counter(
            "fleetwatch_notify_notifications", "Notifications read and decoded.", registry=r
        )
        self.outcomes = Counter(
            "fleetwatch_notify_outcomes",
            "Delivery outcomes (sent, retrying, failed), by channel.",
            ["channel", "outcome"],
            registry=r,
        )
        self.skipped = Counter(
            "fleetwatch_notify_skipped", "Deliveries skipped because the ledger has them.", registry=r
        )
        self.dead_letters = Counter(
            "fleetwatch_notify_dead_letters", "Messages sent to the dead-letter topic.", registry=r
        )
        self.in_flight = Gauge("fleetwatch_notify_in_flight", "Notifications being handled now.", registry=r)
        self.send_seconds = Histogram(
            "fleetwatch_notify_send_seconds",
            "Time of one send attempt, by channel.",
            ["channel"],
            buckets=SEND_BUCKETS,
            registry=r,
        )

    def serve(self, port: int, addr: str = "127.0.0.1") -> Any:
        """Serve /metrics on `port`; returns the server (call `.shutdown()` to stop it)."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server
