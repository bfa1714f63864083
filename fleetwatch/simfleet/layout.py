"""Who simulated server `i` is: pure arithmetic on its index, no per-server objects.

Servers come in customers of `per_customer` consecutive indices (customer `c` owns
``[c * per_customer, (c + 1) * per_customer)``); customer `c` sits at site ``c % sites`` and is supported by
partner ``c % partners`` (partner 0 means none). In each customer the second server backs up the first.
Every `tcp_every`-th server (the last of each stride) is a tcp server; the others are http servers.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from fleetcore.errors import ConfigError

MAX_SERVERS = 1_000_000
MAX_TCP = 2_000
"""Tcp servers at most: each listening one holds a socket (file descriptor) in the simulator."""
TCP_NET = (127 << 24) | (1 << 16)
"""Tcp server `k` listens on the loopback address 127.1.0.0 + k + 1 (all of 127/8 is loopback on Linux)."""


class SimFleetError(ConfigError):
    """A simulated fleet or its scenario is not usable as given."""


@dataclass(frozen=True)
class FleetLayout:
    """The shape of a simulated fleet of `servers` servers."""

    servers: int
    per_customer: int = 8
    sites: int = 16
    partners: int = 4
    tcp_fraction: float = 0.01

    def __post_init__(self) -> None:
        if not 1 <= self.servers <= MAX_SERVERS:
            raise SimFleetError(f"a simulated fleet has 1 to {MAX_SERVERS:,} servers, not {self.servers}")
        if self.per_customer < 1 or self.sites < 1 or self.partners < 1:
            raise SimFleetError("per_customer, sites and partners must be at least 1")
        if not 0.0 <= self.tcp_fraction <= 1.0:
            raise SimFleetError(f"tcp_fraction must be between 0 and 1, not {self.tcp_fraction}")

    # -- counts and widths -----------------------------------------------------------------------------
    @property
    def customers(self) -> int:
        return -(-self.servers // self.per_customer)

    @property
    def tcp_every(self) -> int:
        """The stride of tcp servers (0: none): at least 1/tcp_fraction, and few enough for MAX_TCP."""
        if self.tcp_fraction <= 0:
            return 0
        return max(1, math.ceil(1 / self.tcp_fraction), math.ceil(self.servers / MAX_TCP))

    @property
    def tcp_count(self) -> int:
        every = self.tcp_every
        return self.servers // every if every else 0

    def _width(self, count: int, least: int) -> int:
        return max(least, len(str(max(count - 1, 0))))

    # -- one server ------------------------------------------------------------------------------------
    def server_id(self, i: int) -> str:
        return f"sim-{i:0{self._width(self.servers, 7)}d}"

    def customer_of(self, i: int) -> int:
        return i // self.per_customer

    def customer_id(self, c: int) -> str:
        return f"cust-{c:0{self._width(self.customers, 4)}d}"

    def site_of_customer(self, c: int) -> int:
        return c % self.sites

    def site_id(self, s: int) -> str:
        return f"site-{s}"

    def site_of(self, i: int) -> int:
        return self.site_of_customer(self.customer_of(i))

    def partner_id(self, c: int) -> str | None:
        p = c % self.partners
        return f"partner-{p}" if p else None

    def backup_of(self, i: int) -> int | None:
        """The index of the server `i` backs up (the customer's first), or None for a primary."""
        return i - 1 if i % self.per_customer == 1 else None

    def is_tcp(self, i: int) -> bool:
        every = self.tcp_every
        return bool(every) and i % every == every - 1 and i // every < self.tcp_count

    def tcp_ordinal(self, i: int) -> int:
        return i // self.tcp_every

    def tcp_host(self, i: int) -> str:
        """The loopback address tcp server `i` listens on."""
        a = TCP_NET + self.tcp_ordinal(i) + 1
        return f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"

    def tcp_servers(self) -> range:
        every = self.tcp_every
        return range(every - 1, every * self.tcp_count, every) if every else range(0)

    # -- ids back to numbers ---------------------------------------------------------------------------
    def index_of(self, server_id: str) -> int:
        """The index of a server id (`sim-0000042` or `42`); SimFleetError when not in this fleet."""
        return self._number(server_id, "sim-", self.servers, "server")

    def customer_index(self, customer_id: str) -> int:
        return self._number(customer_id, "cust-", self.customers, "customer")

    def site_index(self, site: str) -> int:
        return self._number(site, "site-", self.sites, "site")

    @staticmethod
    def _number(text: str | int, prefix: str, count: int, what: str) -> int:
        raw = str(text).removeprefix(prefix)
        if not raw.isdigit() or int(raw) >= count:
            raise SimFleetError(f"no {what} {text!r} in this simulated fleet ({count:,} {what}s)")
        return int(raw)

    def customer_range(self, c: int) -> range:
        return range(c * self.per_customer, min((c + 1) * self.per_customer, self.servers))


def parse_fleet(value: str) -> int | None:
    """`--fleet`: ``demo`` (None) or ``sim:N`` (N servers, 1k/1m suffixes allowed)."""
    if value == "demo":
        return None
    kind, _, count = value.partition(":")
    text = count.strip().lower()
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1) if text else 1
    digits = text[:-1] if factor > 1 else text
    if kind != "sim" or not digits.isdigit() or int(digits) * factor < 1:
        raise argparse.ArgumentTypeError(f"expected demo or sim:N (e.g. sim:100000, sim:1m), not {value!r}")
    return int(digits) * factor
