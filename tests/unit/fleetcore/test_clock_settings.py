"""The runtime clock and the settings every worker reads."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from fleetcore.clock import ScaledClock, SystemClock, from_epoch_ms, to_epoch_ms
from fleetcore.errors import BrokerError, FleetwatchError, InvalidMessage, StoreError
from fleetcore.settings import Settings


def test_system_clock_is_aware_utc() -> None:
    now = SystemClock().now()
    assert now.tzinfo is UTC


def test_scaled_clock_starts_at_origin_and_runs_faster() -> None:
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    clock = ScaledClock(3600.0, origin)
    first = clock.now()
    assert first >= origin
    assert clock.scale() == 3600.0
    later = clock.now()
    assert later >= first
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(0)


def test_epoch_ms_round_trip() -> None:
    moment = datetime(2026, 11, 26, 12, 0, 0, 123000, tzinfo=UTC)
    assert from_epoch_ms(to_epoch_ms(moment)) == moment


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLEETWATCH_KAFKA_BOOTSTRAP", "10.0.0.1:9092")
    monkeypatch.setenv("FLEETWATCH_FAILURE_THRESHOLD", "12")
    monkeypatch.setenv("FLEETWATCH_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.kafka_bootstrap == "10.0.0.1:9092"
    assert settings.failure_threshold == 12
    assert settings.store_dsn() == f"chdb://{tmp_path.resolve()}/clickhouse"
    assert settings.embedded_store()


def test_policy_defaults() -> None:
    settings = Settings(data_dir=Path("/tmp/x"))
    assert settings.probe_interval_s == 900  # the policy's 15 minutes
    assert settings.probe_retry_interval_s == 60
    assert settings.failure_threshold == 10
    assert not Settings(clickhouse_dsn="http://ch:8123").embedded_store()


@pytest.mark.parametrize(
    ("field", "value"),
    [("failure_threshold", 0), ("probe_interval_s", -1), ("kafka_bootstrap", "  "), ("probe_jitter", 0.9)],
)
def test_invalid_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Settings.model_validate({field: value})


def test_error_tree() -> None:
    assert issubclass(InvalidMessage, FleetwatchError)
    assert StoreError.retriable
    assert BrokerError.retriable
    assert not InvalidMessage.retriable
