"""Prometheus metrics of one probe worker (own registry, so several workers can share a process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ProbeMetrics:
    """The probe worker's counters and gauges."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.probes = Counter(
            "fleetwatch_probes", "Probes run, by outcome (ok or the error class).", ["outcome"], registry=r
        )
        self.latency = Histogram(
            "fleetwatch_probe_latency_seconds",
            "Probe latency (to the answer or the failure).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.servers = Gauge("fleetwatch_probe_share_servers", "Servers in this worker's share.", registry=r)
        self.in_flight = Gauge("fleetwatch_probe_in_flight", "Probes running now.", registry=r)
        self.batches_sent = Counter(
            "fleetwatch_probe_batches_sent", "ProbeBatch messages acknowledged by Kafka.", registry=r
        )
        self.results_sent = Counter(
            "fleetwatch_probe_results_sent", "Probe results acknowledged by Kafka.", registry=r
        )
        self.send_errors = Counter(
            "fleetwatch_probe_send_errors", "Failed ProbeBatch sends (each is retried).", registry=r
        )

    def serve(self, port: int, addr: str = "0.0.0.0") -> Any:  # noqa: S104 - metrics are meant to be scraped
        """Serve /metrics on `port`; returns the server (call `.shutdown()` to stop it)."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server
