"""`fleetwatch stream`: run the Faust worker (the detector and the case engine) until SIGINT/SIGTERM."""

from __future__ import annotations

import logging

from fleetcore.kafka_admin import cluster_replication, ensure_topics_of
from fleetcore.logs import setup_logging
from fleetcore.settings import Settings
from policy.maintenance_feed import MaintenanceFeed
from schemas.topics import Topics
from streams.app import create_app

log = logging.getLogger(__name__)

MAINTENANCE_WAIT_S = 30.0
"""How long the worker waits at start for the maintenance topic before it judges results regardless."""


def run(settings: Settings) -> None:
    """Run one stream worker process (blocking)."""
    import faust
    from prometheus_client import start_http_server

    setup_logging(settings.log_level)
    if settings.create_topics:
        ensure_topics_of(settings, Topics(settings.topic_prefix))
    # Faust declares its changelog and repartition topics itself: with the cluster's replication factor
    factor, _ = cluster_replication(settings.kafka_bootstrap, settings.topic_replication_factor)
    settings = settings.model_copy(update={"topic_replication_factor": factor})
    if settings.stream_metrics_port:
        start_http_server(settings.stream_metrics_port, addr=settings.metrics_host)
    stream = create_app(settings)
    feed = MaintenanceFeed(
        settings.kafka_bootstrap, Topics(settings.topic_prefix).maintenance, "stream-maintenance"
    )
    feed.start(MAINTENANCE_WAIT_S)  # read the windows before the first result is judged
    stream.extras["planned"] = feed.planned
    level = settings.log_level.upper()
    worker = faust.Worker(
        stream.app,
        loglevel="warn" if level == "WARNING" else level.lower(),
        quiet=True,
        redirect_stdouts=False,
    )

    @stream.app.task  # type: ignore[untyped-decorator]
    async def _reset_root_logger() -> None:
        # faust.Worker lowers the root logger to DEBUG for its spinner whatever loglevel it is given;
        # building and dropping those records costs ~12% of the detector's time.
        setup_logging(settings.log_level)

    try:
        worker.execute_from_commandline()
    finally:
        feed.stop()
