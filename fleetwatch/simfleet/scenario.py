"""What each simulated server does when: a seeded script of rules, pure (time is passed in, no IO).

A scenario is YAML, a list of rules (or a mapping with a `rules:` list)::

    - {at: 60s, for: 10m, what: customer-down, customer: cust-0007}
    - {at: 2m, for: 5m, what: site-down, site: site-3}
    - {what: flap, servers: 0.001, period: 90s}          # 0.1 % of the fleet, forever
    - {at: 1m, for: 10m, what: "503", servers: 25}       # 25 servers picked by the seed
    - {what: slow, servers: [sim-0000004, 9], delay: 1s}

`what` is one of ``down`` (http: the connection is reset at once, a shared port cannot refuse one server;
tcp: connection refused), ``503`` (http 503; tcp refused), ``hang`` (http: no answer until long past the
probe timeout; tcp refused), ``slow`` (answers after `delay`, within the timeout: not a failure), ``flap``
(fails as `mode`, default down, for `duty` (default 0.5) of every `period`, each server at its own phase),
``customer-down`` and ``site-down`` (down for every server of the customers or sites named).
`at` (default 0) and `for` (default forever) are seconds since the fleet started (``90``, ``90s``, ``10m``,
``2h``). Whom a rule hits: `servers` (a fraction < 1 of the fleet, a count, ``all``, or a list of ids or
indices), `customer` or `site` (an id, an index, a list, or a fraction of them). Fractions and counts are
drawn from the scenario's seed, so the same seed, fleet and script always hit the same servers. When rules
overlap, the later one in the script wins. `Scenario.outages(start, end)` is the ground truth.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import yaml

from fleetwatch.simfleet.layout import FleetLayout, SimFleetError

FOREVER = math.inf


class Mode(StrEnum):
    """What a simulated server does when probed."""

    UP = "up"
    DOWN = "down"
    STATUS_503 = "503"
    HANG = "hang"
    SLOW = "slow"


WHATS = ("down", "503", "hang", "slow", "flap", "customer-down", "site-down")

DEFAULT_SCENARIO = """\
# The default scenario of `fleetwatch sim` and `fleetwatch up --fleet sim:N` (times since the fleet started).
- {at: 30s, for: 10m, what: customer-down, customer: 0.0001}   # one customer in 10,000 (at least one)
- {at: 2m, for: 5m, what: site-down, site: site-1}
- {at: 1m, for: 15m, what: "503", servers: 0.0005}
- {at: 3m, for: 5m, what: hang, servers: 0.0002}
- {what: flap, servers: 0.001, period: 90s}
- {what: slow, servers: 0.001}
"""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any, field: str) -> float:
    """Seconds of `90`, `90s`, `1.5m`, `2h`, `forever`."""
    if isinstance(value, bool):
        raise SimFleetError(f"{field}: not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip() in ("forever", "inf"):
        return FOREVER
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise SimFleetError(f"{field}: not a duration (e.g. 90s, 10m, 2h): {value!r}")
        seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if seconds < 0 or math.isnan(seconds):
        raise SimFleetError(f"{field}: must not be negative: {value!r}")
    return seconds


def _mix(i: int, salt: int) -> float:
    """A fixed pseudo-random number in [0, 1) for server `i` under `salt` (a flapping server's phase)."""
    x = (i * 0x9E3779B1 + salt) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    x ^= x >> 13
    return x / 2**32


def _sorted_array(values: Iterable[int]) -> array[int]:
    return array("q", sorted(set(values)))


def _contains(values: array[int], x: int) -> bool:
    k = bisect_left(values, x)
    return k < len(values) and values[k] == x


@dataclass(frozen=True, eq=False)
class Rule:
    """One line of a scenario, resolved against a fleet: whom it hits, when, and how."""

    number: int
    what: str
    mode: Mode
    start_s: float
    end_s: float
    servers: array[int] | None = None
    """Server indices hit (sorted), or None when the rule hits by customer or site."""
    customers: array[int] | None = None
    sites: frozenset[int] | None = None
    period_s: float = 0.0
    duty: float = 0.5
    delay_s: float | None = None
    salt: int = 0

    def selects(self, layout: FleetLayout, i: int) -> bool:
        if self.servers is not None:
            return _contains(self.servers, i)
        if self.customers is not None:
            return _contains(self.customers, layout.customer_of(i))
        return self.sites is not None and layout.site_of(i) in self.sites

    def members(self, layout: FleetLayout) -> Iterator[int]:
        if self.servers is not None:
            yield from self.servers
        elif self.customers is not None:
            for c in self.customers:
                yield from layout.customer_range(c)
        elif self.sites is not None:
            for c in range(layout.customers):
                if layout.site_of_customer(c) in self.sites:
                    yield from layout.customer_range(c)

    def _phase(self, i: int) -> float:
        return _mix(i, self.salt) * self.period_s

    def failing_at(self, i: int, t: float) -> bool:
        """Whether the rule holds server `i` (already selected) at `t`."""
        if not self.start_s <= t < self.end_s:
            return False
        if self.period_s <= 0:
            return True
        return (t - self.start_s + self._phase(i)) % self.period_s < self.duty * self.period_s

    def edges(self, i: int, start_s: float, end_s: float) -> list[float]:
        """The moments in [start_s, end_s) when this rule may change what server `i` does."""
        lo, hi = max(start_s, self.start_s), min(end_s, self.end_s)
        if lo >= hi:
            return []
        out = [lo, hi]
        if self.period_s > 0:
            base = self.start_s - self._phase(i)  # cycle k fails from base + k*period for duty*period
            k = math.floor((lo - base) / self.period_s)
            while (t := base + k * self.period_s) < hi:
                out += [t, t + self.duty * self.period_s]
                k += 1
        return [t for t in out if lo <= t <= hi]


@dataclass(frozen=True)
class Outage:
    """Ground truth: server `index` did `mode` (not up) from `start_s` to `end_s` (fleet seconds)."""

    index: int
    server_id: str
    customer_id: str
    site: str
    kind: str
    mode: Mode
    start_s: float
    end_s: float

    @property
    def failing(self) -> bool:
        """Whether a probe fails in this interval (a slow server still answers within its timeout)."""
        return self.mode is not Mode.SLOW


class Scenario:
    """A resolved script: `mode_at(i, t)` for the simulator, `outages(start, end)` for a checker."""

    def __init__(self, layout: FleetLayout, rules: Iterable[Rule] = ()) -> None:
        self.layout = layout
        self.rules = tuple(rules)

    @classmethod
    def from_yaml(cls, text: str, layout: FleetLayout, seed: int = 0, source: str = "scenario") -> Scenario:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SimFleetError(f"{source}: not valid YAML: {exc}") from exc
        if isinstance(data, dict) and set(data) == {"rules"}:
            data = data["rules"]
        if data is None:
            data = []
        if not isinstance(data, list):
            raise SimFleetError(f"{source}: expected a list of rules (or a mapping with `rules:`)")
        rules = []
        for number, entry in enumerate(data):
            try:
                rules.append(_rule(number, entry, layout, seed))
            except SimFleetError as exc:
                raise SimFleetError(f"{source}: rule {number + 1}: {exc}") from exc
        return cls(layout, rules)

    def rule_at(self, i: int, t: float) -> Rule | None:
        """The rule that decides what server `i` does at `t` (the last one holding it), or None (up)."""
        layout = self.layout
        for rule in reversed(self.rules):
            if rule.start_s <= t < rule.end_s and rule.selects(layout, i) and rule.failing_at(i, t):
                return rule
        return None

    def mode_at(self, i: int, t: float) -> Mode:
        rule = self.rule_at(i, t)
        return Mode.UP if rule is None else rule.mode

    def outages(self, start_s: float, end_s: float) -> list[Outage]:
        """Every interval in [start_s, end_s) in which a server was not up, by server then time."""
        layout = self.layout
        live = [r for r in self.rules if r.start_s < end_s and r.end_s > start_s]
        candidates: set[int] = set()
        for rule in live:
            candidates.update(rule.members(layout))
        out: list[Outage] = []
        for i in sorted(candidates):
            touching = [r for r in live if r.selects(layout, i)]
            edges = {start_s, end_s}
            for rule in touching:
                edges.update(rule.edges(i, start_s, end_s))
            points = sorted(t for t in edges if start_s <= t <= end_s)
            current: tuple[Mode, float] | None = None
            for a, b in itertools.pairwise(points):
                if b <= a:
                    continue
                mid = (a + b) / 2
                mode = next((r.mode for r in reversed(touching) if r.failing_at(i, mid)), Mode.UP)
                if current is not None and current[0] is not mode:
                    out.append(self._outage(i, current[0], current[1], a))
                    current = None
                if current is None and mode is not Mode.UP:
                    current = (mode, a)
            if current is not None:
                out.append(self._outage(i, current[0], current[1], points[-1]))
        return out

    def _outage(self, i: int, mode: Mode, start_s: float, end_s: float) -> Outage:
        layout = self.layout
        c = layout.customer_of(i)
        return Outage(
            index=i,
            server_id=layout.server_id(i),
            customer_id=layout.customer_id(c),
            site=layout.site_id(layout.site_of_customer(c)),
            kind="tcp" if layout.is_tcp(i) else "http",
            mode=mode,
            start_s=start_s,
            end_s=end_s,
        )


# -- parsing one rule --------------------------------------------------------------------------------------
_KEYS = {"at", "for", "what", "servers", "customer", "site", "period", "duty", "mode", "delay"}


def _rule(number: int, entry: Any, layout: FleetLayout, seed: int) -> Rule:
    if not isinstance(entry, dict):
        raise SimFleetError("must be a mapping like {at: 60s, for: 10m, what: down, servers: 0.01}")
    unknown = set(map(str, entry)) - _KEYS
    if unknown:
        raise SimFleetError(f"unknown keys {sorted(unknown)} (known: {sorted(_KEYS)})")
    what = str(entry.get("what", ""))
    if what not in WHATS:
        raise SimFleetError(f"what must be one of {', '.join(WHATS)}, not {entry.get('what')!r}")
    start = parse_duration(entry.get("at", 0), "at")
    length = parse_duration(entry.get("for", "forever"), "for")
    rng = random.Random(f"{seed}:{number}")
    selectors = [k for k in ("servers", "customer", "site") if k in entry]
    if len(selectors) != 1:
        raise SimFleetError("name whom it hits with exactly one of servers, customer, site")
    selector = selectors[0]
    if what == "customer-down" and selector != "customer":
        raise SimFleetError("customer-down needs `customer`")
    if what == "site-down" and selector != "site":
        raise SimFleetError("site-down needs `site`")
    value = entry[selector]
    servers = customers = None
    sites = None
    if selector == "servers":
        servers = _sorted_array(_pick(value, layout.servers, layout.index_of, rng))
    elif selector == "customer":
        customers = _sorted_array(_pick(value, layout.customers, layout.customer_index, rng))
    else:
        sites = frozenset(_pick(value, layout.sites, layout.site_index, rng))
    mode = Mode.DOWN
    period = 0.0
    duty = 0.5
    if what in ("503", "hang", "slow", "down"):
        mode = Mode(what)
    elif what == "flap":
        if "period" not in entry:
            raise SimFleetError("flap needs a `period` (e.g. 90s)")
        period = parse_duration(entry["period"], "period")
        if not 0 < period < FOREVER:
            raise SimFleetError("period must be a positive, finite duration")
        duty = float(entry.get("duty", 0.5))
        if not 0 < duty < 1:
            raise SimFleetError(f"duty must be between 0 and 1 (exclusive), not {duty}")
        try:
            mode = Mode(str(entry.get("mode", "down")))
        except ValueError:
            raise SimFleetError(f"mode must be down, 503, hang or slow, not {entry['mode']!r}") from None
        if mode is Mode.UP:
            raise SimFleetError("a flap's mode is what it does when failing: down, 503, hang or slow")
    delay = parse_duration(entry["delay"], "delay") if "delay" in entry else None
    return Rule(
        number=number,
        what=what,
        mode=mode,
        start_s=start,
        end_s=start + length,
        servers=servers,
        customers=customers,
        sites=sites,
        period_s=period,
        duty=duty,
        delay_s=delay,
        salt=rng.getrandbits(32),
    )


def _pick(value: Any, count: int, parse: Any, rng: random.Random) -> list[int]:
    """Indices out of `count`: a fraction (< 1), a count, `all`, one id or index, or a list of them."""
    if value == "all":
        return list(range(count))
    if isinstance(value, float):
        if not 0 < value <= 1:
            raise SimFleetError(f"a fraction must be in (0, 1], not {value}")
        return rng.sample(range(count), min(count, max(1, round(value * count))))
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise SimFleetError(f"a count must be at least 1, not {value}")
        return rng.sample(range(count), min(count, value))
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise SimFleetError(f"not an id or index: {item!r}")
        out.append(parse(item))
    return out
