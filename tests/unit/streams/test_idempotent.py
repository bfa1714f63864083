"""The stream app's Faust producer is idempotent with acks=all (faust-streaming has no switch for it)."""

from __future__ import annotations

from pathlib import Path

from fleetcore.settings import Settings
from streams.app import create_app
from streams.idempotent import Producer, Transport


def test_stream_app_producer_is_idempotent_with_acks_all(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1,127.0.0.1:2", data_dir=tmp_path)
    app = create_app(settings).app
    assert isinstance(app.transport, Transport)
    producer = app.producer
    assert isinstance(producer, Producer)
    config = {**producer._settings_default(), **producer._settings_extra()}
    assert config["enable_idempotence"] is True
    assert config["acks"] == "all"
    assert config["bootstrap_servers"] == ["127.0.0.1:1", "127.0.0.1:2"]
