"""`up`'s port plan: taken defaults move to free ports, taken explicit ports fail naming their setting."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from fleetcore.settings import Settings
from fleetwatch.kafka_local import free_port
from fleetwatch.ports import (
    PortTakenError,
    explicit_settings,
    plan_ports,
    port_taken,
    taken_ports,
)
from fleetwatch.stack import listening_ports, plan_listening_ports

WANTED = {"portal_port": 8080, "intake_port": 2526, "analysts_port": 8123, "stream_web_port": 0}


def test_nothing_taken_keeps_every_port() -> None:
    plan = plan_ports(WANTED, explicit=set(), taken=set(), spare=iter([40000]))
    assert plan.ports == WANTED
    assert plan.moved == {}


def test_a_taken_default_moves_to_a_spare_port_skipping_taken_and_given_ones() -> None:
    plan = plan_ports(WANTED, explicit=set(), taken={8080, 40000}, spare=iter([40000, 8123, 40001]))
    assert plan.ports["portal_port"] == 40001  # 40000 is taken, 8123 belongs to analysts_port
    assert plan.moved == {"portal_port": (8080, 40001)}
    assert plan.ports["analysts_port"] == 8123


def test_a_taken_explicit_port_fails_naming_its_env_setting_and_port() -> None:
    with pytest.raises(PortTakenError) as err:
        plan_ports(WANTED, explicit={"portal_port"}, taken={8080}, spare=iter([40000]))
    assert "FLEETWATCH_PORTAL_PORT=8080" in str(err.value)
    assert err.value.setting == "portal_port"


def test_port_zero_is_left_to_the_listener() -> None:
    plan = plan_ports({"stream_web_port": 0}, explicit={"stream_web_port"}, taken={0}, spare=iter([]))
    assert plan.ports == {"stream_web_port": 0}


def test_two_settings_on_one_port_the_explicit_one_keeps_it() -> None:
    wanted = {"mail_catcher_port": 2526, "intake_port": 2526}
    plan = plan_ports(wanted, explicit={"mail_catcher_port"}, taken=set(), spare=iter([40000]))
    assert plan.ports == {"mail_catcher_port": 2526, "intake_port": 40000}
    with pytest.raises(PortTakenError, match="also set for FLEETWATCH_"):
        plan_ports(wanted, explicit=set(wanted), taken=set(), spare=iter([40000]))


def test_explicit_settings_are_the_ones_the_environment_sets() -> None:
    env = {"FLEETWATCH_PORTAL_PORT": "8080", "FLEETWATCH_LOG_LEVEL": "INFO"}
    assert explicit_settings(WANTED, env) == {"portal_port"}


@pytest.fixture
def listener() -> Iterator[int]:
    """A real socket listening on a loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_the_probe_finds_a_listening_socket_and_a_free_port(listener: int) -> None:
    assert port_taken("127.0.0.1", listener)
    assert not port_taken("127.0.0.1", free_port())
    assert taken_ports({}, {"a": listener, "b": 0}, port_taken) == {listener}


def test_up_moves_a_taken_default_portal_port_against_real_sockets(
    listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stack's plan over real sockets: the portal's default is taken, so it moves (and says so)."""
    monkeypatch.delenv("FLEETWATCH_PORTAL_PORT", raising=False)
    free = {name: free_port() for name in listening_ports(Settings(), {}, False)[0]}
    settings = Settings.model_validate({**free, "portal_port": listener})
    moved, overrides = plan_listening_ports(settings, {"analysts_port": listener}, external_kafka=False)
    assert moved.portal_port not in (0, listener)
    assert overrides["analysts_port"] not in (listener, moved.portal_port)  # the demo's override moves too
    assert moved.intake_port == settings.intake_port  # free ones stay


def test_up_fails_at_once_when_an_explicit_port_is_taken(
    listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEETWATCH_PORTAL_PORT", str(listener))
    settings = Settings()
    with pytest.raises(PortTakenError, match=f"FLEETWATCH_PORTAL_PORT={listener}"):
        plan_listening_ports(settings, {}, external_kafka=True)
