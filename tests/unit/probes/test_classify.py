"""classify(): every outcome from raw facts, without IO."""

from __future__ import annotations

import errno
import socket
import ssl
from datetime import UTC, datetime

import orjson
import pytest

from probes.classify import ErrorClass, classify, error_class_of, parse_health, probe_id_for
from schemas.inventory import ProbeKind, Server, ServerRole
from schemas.probes import HealthMetrics, ProbeResult

T0 = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
HTTP = Server(server_id="acme-web-1", customer_id="acme", target="http://127.0.0.1:1/status", timeout_s=2.0)
TCP = Server(
    server_id="acme-db-1", customer_id="acme", probe=ProbeKind.TCP, target="127.0.0.1:5432", timeout_s=2.0
)


def run(
    server: Server = HTTP,
    latency_ms: float = 12.4,
    status: int | None = 200,
    body: bytes | None = None,
    error: BaseException | None = None,
) -> ProbeResult:
    return classify(server, T0, latency_ms, status, body, error, "w1")


def test_http_expected_status_is_ok() -> None:
    result = run()
    assert result.ok
    assert result.status_code == 200
    assert result.error_class is None
    assert result.error_message is None
    assert result.latency_ms == 12
    assert result.worker_id == "w1"
    assert result.customer_id == "acme"
    assert result.started_at == T0


def test_a_secondary_result_names_its_primary() -> None:
    secondary = HTTP.model_copy(
        update={"server_id": "acme-web-2", "role": ServerRole.SECONDARY, "backup_of": "acme-web-1"}
    )
    assert run(secondary).backup_of == "acme-web-1"
    assert run(secondary, error=TimeoutError()).backup_of == "acme-web-1"
    assert run().backup_of is None


def test_a_result_names_the_partner_the_inventory_names() -> None:
    supported = HTTP.model_copy(update={"partner_id": "northwind-partners"})
    assert run(supported).partner_id == "northwind-partners"
    assert run(supported, error=TimeoutError()).partner_id == "northwind-partners"
    assert run().partner_id is None


def test_probe_id_is_server_at_epoch_ms() -> None:
    assert run().probe_id == "acme-web-1@1772366400123"
    assert probe_id_for("x", T0) == "x@1772366400123"


@pytest.mark.parametrize("status", [201, 204, 301, 404, 500, 503])
def test_other_status_is_unexpected(status: int) -> None:
    result = run(status=status)
    assert not result.ok
    assert result.status_code == status
    assert result.error_class == "unexpected_status"
    assert result.error_message == f"expected HTTP 200, got {status}"


def test_custom_expected_status() -> None:
    server = HTTP.model_copy(update={"expected_status": 204})
    assert run(server, status=204).ok
    assert run(server, status=200).error_class == "unexpected_status"


def test_answer_after_timeout_is_timeout_even_with_good_status() -> None:
    result = run(latency_ms=2000.5)
    assert not result.ok
    assert result.error_class == "timeout"
    assert result.status_code == 200
    assert result.latency_ms == 2000


def test_answer_exactly_at_timeout_passes() -> None:
    assert run(latency_ms=2000.0).ok


def test_no_status_without_error_is_an_error() -> None:
    result = run(status=None)
    assert not result.ok
    assert result.error_class == "error"


def test_out_of_range_status_is_dropped_and_unexpected() -> None:
    result = run(status=999)
    assert result.status_code is None
    assert result.error_class == "unexpected_status"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TimeoutError(), ErrorClass.TIMEOUT),
        (TimeoutError("no complete answer within 2 s"), ErrorClass.TIMEOUT),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), ErrorClass.REFUSED),
        (OSError(errno.ECONNREFUSED, "refused"), ErrorClass.REFUSED),
        (socket.gaierror(-2, "Name or service not known"), ErrorClass.DNS),
        (ConnectionResetError(errno.ECONNRESET, "reset by peer"), ErrorClass.RESET),
        (BrokenPipeError(), ErrorClass.RESET),
        (OSError(errno.ECONNRESET, "reset"), ErrorClass.RESET),
        (OSError(errno.ETIMEDOUT, "timed out"), ErrorClass.TIMEOUT),
        (ssl.SSLError(1, "handshake failure"), ErrorClass.TLS),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), ErrorClass.TLS),
        (ValueError("weird"), ErrorClass.ERROR),
        (OSError(errno.EHOSTUNREACH, "no route"), ErrorClass.ERROR),
    ],
)
def test_error_classes(error: BaseException, expected: ErrorClass) -> None:
    assert error_class_of(error) is expected
    result = run(status=None, error=error, latency_ms=5)
    assert not result.ok
    assert result.error_class == expected.value
    assert result.error_message
    assert type(error).__name__ in result.error_message


def test_error_class_follows_the_cause_chain() -> None:
    inner = ConnectionRefusedError(errno.ECONNREFUSED, "refused")
    outer = RuntimeError("client failed")
    outer.__cause__ = inner
    assert error_class_of(outer) is ErrorClass.REFUSED


def test_error_wins_over_a_received_status() -> None:
    result = run(status=200, error=ConnectionResetError("body cut short"))
    assert not result.ok
    assert result.error_class == "reset"
    assert result.status_code == 200


def test_long_error_message_is_cut() -> None:
    result = run(status=None, error=RuntimeError("x" * 5000))
    assert result.error_message is not None
    assert len(result.error_message) == 1000


def test_negative_latency_is_clamped() -> None:
    assert run(latency_ms=-3).latency_ms == 0


def test_tcp_connected_is_ok_and_carries_no_status() -> None:
    result = run(TCP, status=None)
    assert result.ok
    assert result.status_code is None
    assert result.health is None


def test_tcp_refused_and_timeout() -> None:
    assert run(TCP, status=None, error=ConnectionRefusedError()).error_class == "refused"
    assert run(TCP, status=None, latency_ms=2500).error_class == "timeout"


def test_tcp_ignores_status_and_body() -> None:
    result = run(TCP, status=503, body=b'{"load1": 1}')
    assert result.ok
    assert result.status_code is None
    assert result.health is None


# -- health metrics ----------------------------------------------------------------------------------------
FULL = {
    "load1": 0.7,
    "connections": 42,
    "users": 17,
    "cpu_percent": 35.5,
    "memory_percent": 61,
    "disk_percent": 80,
}


def test_full_metrics_body() -> None:
    result = run(body=orjson.dumps(FULL))
    assert result.health == HealthMetrics(**FULL)


def test_metrics_with_extra_fields() -> None:
    body = orjson.dumps({"status": "ok", "version": "4.2", "load1": 1.5, "users": 3})
    assert run(body=body).health == HealthMetrics(load1=1.5, users=3)


@pytest.mark.parametrize("key", ["metrics", "health"])
def test_nested_metrics(key: str) -> None:
    body = orjson.dumps({"status": "ok", key: {"connections": 9}})
    assert run(body=body).health == HealthMetrics(connections=9)


def test_invalid_fields_are_dropped_and_valid_ones_kept() -> None:
    body = orjson.dumps(
        {"load1": -1, "cpu_percent": 250, "users": "many", "connections": 5, "disk_percent": True}
    )
    assert run(body=body).health == HealthMetrics(connections=5)


@pytest.mark.parametrize(
    "body",
    [
        None,
        b"",
        b"OK",
        b"<html>fine</html>",
        b"{not json",
        b'{"load1": 1',
        b"[1, 2, 3]",
        b'"just a string"',
        b'{"status": "ok"}',
        b'{"metrics": [1]}',
        b'{"load1": "high", "cpu_percent": -5}',
        b"\xff\xfe garbage",
    ],
)
def test_bad_or_empty_body_gives_no_metrics_and_stays_ok(body: bytes | None) -> None:
    result = run(body=body)
    assert result.ok
    assert result.health is None


def test_metrics_are_kept_on_a_failed_status() -> None:
    result = run(status=503, body=orjson.dumps({"load1": 9.5}))
    assert not result.ok
    assert result.health == HealthMetrics(load1=9.5)


def test_parse_health_tolerates_leading_whitespace() -> None:
    assert parse_health(b'  \n{"users": 2}') == HealthMetrics(users=2)


def test_result_round_trips_as_json() -> None:
    result = run(body=orjson.dumps(FULL))
    assert type(result).model_validate_json(result.model_dump_json()) == result
