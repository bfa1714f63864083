"""The failed sign-in throttle: pure policy, time (monotonic seconds) is passed in.

Guessing is limited where it comes from, never by locking the account (OWASP, "Authentication" and
"Blocking Brute Force Attacks"):

* per (user, client): after `pair_limit` failures in `window_s`, that client gets 429 for that user until
  the oldest failure leaves the window. Other clients, the user's own included, are not affected;
* per client, across users: after `client_limit` failures in the window (password spraying), 429 for every
  user from that client;
* per user, from every client: after `slow_after` failures in the window, each sign-in attempt for the user
  waits before its password is checked (a tarpit), from `base_delay_s` doubling per further failure up to
  `max_delay_s`. Nobody is refused for this: a client that has not failed gets in with the right password,
  only later. It makes a distributed guesser hold a connection for every guess.

A client is its peer address (the portal trusts no forwarding header); IPv6 addresses count by their /64
network, the block one subscriber usually holds. Memory is bounded: each counter keeps at most `max_keys`
keys (the oldest go first).
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass


class LoginThrottle:
    """At most `limit` failed sign-ins per key within `window_s` seconds (a sliding window per key)."""

    def __init__(self, limit: int = 5, window_s: float = 900.0, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def count(self, key: str, now: float) -> int:
        """Failures of `key` within the window."""
        return len(self._recent(key, now))

    def blocked(self, keys: list[str], now: float) -> bool:
        """Whether any of the keys has used up its failures in the window."""
        return any(self.count(key, now) >= self.limit for key in keys)

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until `key` may try again (0 when it may now)."""
        times = self._recent(key, now)
        if len(times) < self.limit:
            return 0.0
        return times[len(times) - self.limit] + self.window_s - now

    def fail(self, keys: list[str], now: float) -> None:
        """Count one failed sign-in against every key (memory stays bounded: `max_keys` keys at most)."""
        if len(self._failures) >= self.max_keys:
            for key in list(self._failures):
                self._recent(key, now)
            while len(self._failures) >= self.max_keys:
                del self._failures[next(iter(self._failures))]
        for key in keys:
            self._recent(key, now)
            self._failures.setdefault(key, deque()).append(now)

    def __len__(self) -> int:
        return len(self._failures)

    def clear(self, key: str) -> None:
        """Forget a key's failures."""
        self._failures.pop(key, None)


@dataclass(frozen=True)
class Verdict:
    """What to do with one sign-in attempt before its password is checked."""

    refused: bool = False
    """True: answer 429 without checking the password."""
    retry_after_s: float = 0.0
    """When refused: seconds until this client may try this user again."""
    delay_s: float = 0.0
    """When not refused: how long to wait before checking the password (the user is under attack)."""


def client_key(remote: str | None) -> str:
    """The client a peer address stands for: the IPv4 address, or the IPv6 /64 network."""
    if not remote:
        return "-"
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote[:100]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class SignInGuard:
    """The three counters above and the decision for one attempt (`check`), then its outcome."""

    def __init__(
        self,
        *,
        pair_limit: int = 5,
        client_limit: int = 20,
        slow_after: int = 10,
        window_s: float = 900.0,
        base_delay_s: float = 0.5,
        max_delay_s: float = 10.0,
        max_keys: int = 100_000,
    ) -> None:
        self.pairs = LoginThrottle(pair_limit, window_s, max_keys)
        self.clients = LoginThrottle(client_limit, window_s, max_keys)
        self.users = LoginThrottle(slow_after, window_s, max_keys)
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s

    @staticmethod
    def _keys(user: str, client: str) -> tuple[str, str, str]:
        return f"pair:{user}|{client}", f"client:{client}", f"user:{user}"

    def check(self, user: str, client: str, now: float) -> Verdict:
        """Refuse a client that used up its tries; otherwise how long this user's attempts wait now."""
        pair, by_client, _ = self._keys(user, client)
        if self.pairs.blocked([pair], now) or self.clients.blocked([by_client], now):
            wait = max(self.pairs.retry_after(pair, now), self.clients.retry_after(by_client, now))
            return Verdict(refused=True, retry_after_s=wait)
        return Verdict(delay_s=self.delay(user, now))

    def delay(self, user: str, now: float) -> float:
        """The tarpit of `user`: 0 below `slow_after` failures, then doubling up to `max_delay_s`."""
        failures = self.users.count(f"user:{user}", now)
        extra = failures - self.users.limit
        if extra < 0:
            return 0.0
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** min(extra, 64))

    def failed(self, user: str, client: str, now: float) -> None:
        """Count a wrong user name or password."""
        pair, by_client, by_user = self._keys(user, client)
        self.pairs.fail([pair], now)
        self.clients.fail([by_client], now)
        self.users.fail([by_user], now)

    def succeeded(self, user: str, client: str) -> None:
        """The client proved itself for this user: forget its failures for the user (not the user's total,
        which an attacker elsewhere may still be adding to)."""
        self.pairs.clear(self._keys(user, client)[0])

    def __len__(self) -> int:
        """Keys held over all counters (bounded by 3 x max_keys)."""
        return len(self.pairs) + len(self.clients) + len(self.users)
