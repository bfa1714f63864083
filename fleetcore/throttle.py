"""Sign-in throttling, pure: a backoff per (account, client) after failed sign-ins, tighter under attack.

Following OWASP's Authentication Cheat Sheet, failures slow the guesser down without locking the account
out for its owner:

- per (account, client address): the first `free_failures` failures cost nothing; each further failure
  blocks that pair for `base_delay_s`, doubling per failure up to `max_delay_s`. A success clears the pair.
  A pair quiet for `forget_after_s` starts afresh.
- per account, from every client: when `account_failures` failures land within `account_window_s`
  (a guesser spreads over many addresses), the account is under attack: every failing client is blocked
  from its first failure, and every sign-in of the account is slowed down by `account_delay_s` before its
  password is checked (a tarpit: a guesser holds a connection per guess). A client that has not failed is
  never refused: the owner signs in from their usual address while the attack goes on, only later.

The caller asks `retry_after` before checking the password (and answers "429, retry in N s" without
checking it when N > 0), waits `slowdown` seconds, then reports the outcome with `failed` or `succeeded`.
Clients are named by `client_key` (an IPv6 client by its /64 network, the block one subscriber holds).
Time is passed in; memory is bounded by `max_entries` pairs and accounts (least recently seen forgotten
first, blocked pairs last). Not thread-safe: one event loop or one lock around it.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar


@dataclass(frozen=True)
class ThrottlePolicy:
    """How hard failed sign-ins are slowed down."""

    free_failures: int = 5
    """Failures of one (account, client) pair before the backoff starts."""
    base_delay_s: float = 1.0
    """The first block; it doubles with each further failure."""
    max_delay_s: float = 900.0
    """The longest block."""
    forget_after_s: float = 900.0
    """A pair without a failure for this long starts afresh."""
    account_failures: int = 50
    """Failures of one account, from any clients, within `account_window_s` that mean it is under attack."""
    account_window_s: float = 600.0
    account_delay_s: float = 1.0
    """The wait before each password of an account under attack is checked."""
    max_entries: int = 10_000
    """Pairs (and, separately, accounts) remembered at most."""


@dataclass
class _Pair:
    failures: int
    last_failure: datetime
    blocked_until: datetime


Key = tuple[str, str]
K = TypeVar("K")
V = TypeVar("V")


class SignInThrottle:
    """Failed sign-ins of (account, client) pairs and of accounts, with the blocks they earn."""

    def __init__(self, policy: ThrottlePolicy | None = None) -> None:
        self.policy = policy or ThrottlePolicy()
        self._pairs: OrderedDict[Key, _Pair] = OrderedDict()
        self._accounts: OrderedDict[str, deque[datetime]] = OrderedDict()

    def retry_after(self, account: str, client: str, now: datetime) -> int:
        """Whole seconds until this pair may try again (0: it may try now)."""
        pair = self._pairs.get((account, client))
        if pair is None or pair.blocked_until <= now:
            return 0
        return max(1, math.ceil((pair.blocked_until - now).total_seconds()))

    def under_attack(self, account: str, now: datetime) -> bool:
        """Whether `account` failed `account_failures` times within the window before `now`."""
        recent = self._accounts.get(account)
        if recent is None or len(recent) < self.policy.account_failures:
            return False
        return recent[0] > now - timedelta(seconds=self.policy.account_window_s)

    def slowdown(self, account: str, now: datetime) -> float:
        """Seconds to wait before checking a password of `account` (0 unless it is under attack)."""
        return self.policy.account_delay_s if self.under_attack(account, now) else 0.0

    def failed(self, account: str, client: str, now: datetime) -> int:
        """Record a failed sign-in; return the whole seconds the pair is now blocked for (0: none)."""
        policy = self.policy
        recent = self._accounts.pop(account, None) or deque(maxlen=policy.account_failures)
        recent.append(now)
        self._accounts[account] = recent
        self._trim(self._accounts, lambda _: False)
        key = (account, client)
        pair = self._pairs.pop(key, None)
        if pair is None or now - pair.last_failure > timedelta(seconds=policy.forget_after_s):
            pair = _Pair(0, now, now)
        pair.failures += 1
        pair.last_failure = now
        free = 0 if self.under_attack(account, now) else policy.free_failures
        over = pair.failures - free
        if over > 0:
            delay = min(policy.max_delay_s, policy.base_delay_s * 2.0 ** min(over - 1, 60))
            pair.blocked_until = max(pair.blocked_until, now + timedelta(seconds=delay))
        self._pairs[key] = pair
        self._trim(self._pairs, lambda p: p.blocked_until > now)
        return self.retry_after(account, client, now)

    def succeeded(self, account: str, client: str) -> None:
        """Record a successful sign-in: the pair starts afresh."""
        self._pairs.pop((account, client), None)

    def __len__(self) -> int:
        """Pairs remembered."""
        return len(self._pairs)

    def _trim(self, entries: OrderedDict[K, V], keep: Callable[[V], bool]) -> None:
        """Forget the least recently seen entries beyond max_entries, those `keep` says so last."""
        excess = len(entries) - self.policy.max_entries
        if excess <= 0:
            return
        doomed: list[K] = []
        for k, v in entries.items():
            if len(doomed) == excess:
                break
            if not keep(v):
                doomed.append(k)
        for k in doomed:
            del entries[k]
        while len(entries) > self.policy.max_entries:
            entries.popitem(last=False)


def client_key(address: str) -> str:
    """The client a peer address stands for: an IPv4 address itself, an IPv6 address its /64 network."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
