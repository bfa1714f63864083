"""Which ports `fleetwatch up` listens on: defaults that are taken move to free ports, explicit ones fail.

`plan_ports` is the pure rule: given the port each setting wants, which settings the user set explicitly and
which ports are taken, it returns the port each setting gets (a default that is taken moves to a spare port)
or raises `PortTakenError` naming the explicit setting whose port is taken. `port_taken` is the thin probe
(can we bind it?) and `explicit_settings` tells which settings the environment sets.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from fleetcore.errors import FleetwatchError


def env_name(setting: str) -> str:
    """The environment variable of a setting."""
    return f"FLEETWATCH_{setting.upper()}"


class PortTakenError(FleetwatchError):
    """A port the user set explicitly is already in use."""

    def __init__(self, setting: str, port: int, other: str | None = None) -> None:
        self.setting, self.port = setting, port
        why = f"also set for {env_name(other)}" if other else "already in use on this machine"
        super().__init__(
            f"{env_name(setting)}={port}: that port is {why}; free it, set another port, or unset "
            f"{env_name(setting)} to let `up` pick a free one"
        )


@dataclass(frozen=True)
class PortPlan:
    """The port of each setting, and the ones moved off a taken default (setting → (default, chosen))."""

    ports: dict[str, int]
    moved: dict[str, tuple[int, int]] = field(default_factory=dict)


def plan_ports(
    wanted: Mapping[str, int],
    explicit: Collection[str],
    taken: Collection[int],
    spare: Iterable[int],
) -> PortPlan:
    """The port each setting listens on.

    `wanted`: setting → port (0: any free port, chosen by the listener itself, left as is). `explicit`: the
    settings the user set. `taken`: ports in use now. `spare`: candidate free ports for defaults that are
    taken (one that is taken or that any setting wants is skipped). Explicit settings keep their port or fail;
    two settings wanting one port: an explicit one keeps it, a default moves (two explicit ones fail).
    """
    spares = iter(spare)
    given: dict[int, str] = {}
    claimed = set(wanted.values())  # no spare is a port any setting wants, a later one's included
    ports: dict[str, int] = {}
    moved: dict[str, tuple[int, int]] = {}
    # explicit settings first: they hold their ports, defaults move out of their way
    order = sorted(wanted, key=lambda name: name not in explicit)
    for name in order:
        port = wanted[name]
        if port == 0:
            ports[name] = 0
            continue
        clash = port in taken or port in given
        if name in explicit:
            if clash:
                raise PortTakenError(name, port, given.get(port))
        elif clash:
            chosen = next((p for p in spares if p and p not in taken and p not in claimed), None)
            if chosen is None:
                raise FleetwatchError(f"no free port for {env_name(name)} (default {port} is taken)")
            moved[name] = (port, chosen)
            port = chosen
        ports[name] = port
        given[port] = name
        claimed.add(port)
    return PortPlan({name: ports[name] for name in wanted}, moved)


def port_taken(host: str, port: int) -> bool:
    """Whether `port` on `host` cannot be bound (something listens there), as a server would bind it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp/asyncio servers do
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def taken_ports(
    hosts: Mapping[str, str], wanted: Mapping[str, int], probe: Callable[[str, int], bool]
) -> set[int]:
    """The wanted ports (other than 0) that `probe(host, port)` finds taken, each on its setting's host."""
    return {port for name, port in wanted.items() if port and probe(hosts.get(name, "127.0.0.1"), port)}


def explicit_settings(names: Iterable[str], environ: Mapping[str, str] | None = None) -> set[str]:
    """The settings among `names` that the environment sets (FLEETWATCH_<NAME>)."""
    env = os.environ if environ is None else environ
    return {name for name in names if env_name(name) in env}
