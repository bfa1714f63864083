"""The portal's failed sign-in throttle: pure policy, time (monotonic seconds) is passed in.

Guessing is slowed where it comes from, never by locking the account (OWASP Authentication Cheat Sheet):

* per (user, client) and per user under attack: the project's sign-in throttle (`fleetcore.throttle`, shared
  with the analysts' endpoint): a client's first failures for a user are free, then it is refused (429,
  Retry-After) for a doubling time; when a user fails many times from many clients, every failing client is
  refused from its first failure and every attempt on the user waits before its password is checked (a
  tarpit). A client that has not failed is never refused: the owner signs in during an attack, only later;
* per client across users (password spraying: one password tried on many accounts): after `client_limit`
  failures within `client_window_s`, that client is refused for every user until the oldest failure leaves
  the window. Only the failing client is refused.

A client is its peer address (the portal trusts no forwarding header; `fleetcore.throttle.client_key`:
IPv6 by its /64 network). Memory is bounded: at most `max_entries` pairs and users, `max_entries` clients.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fleetcore.throttle import SignInThrottle, ThrottlePolicy

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LoginThrottle:
    """At most `limit` failures per key within `window_s` seconds (a sliding window per key)."""

    def __init__(self, limit: int = 20, window_s: float = 900.0, max_keys: int = 100_000) -> None:
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

    def blocked(self, key: str, now: float) -> bool:
        """Whether the key has used up its failures in the window."""
        return len(self._recent(key, now)) >= self.limit

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until `key` may try again (0 when it may now)."""
        times = self._recent(key, now)
        if len(times) < self.limit:
            return 0.0
        return times[len(times) - self.limit] + self.window_s - now

    def fail(self, key: str, now: float) -> None:
        """Count one failure (memory stays bounded: `max_keys` keys at most, the oldest go first)."""
        if len(self._failures) >= self.max_keys:
            for known in list(self._failures):
                self._recent(known, now)
            while len(self._failures) >= self.max_keys:
                del self._failures[next(iter(self._failures))]
        self._recent(key, now)
        self._failures.setdefault(key, deque()).append(now)

    def __len__(self) -> int:
        return len(self._failures)


@dataclass(frozen=True)
class Verdict:
    """What to do with one sign-in attempt before its password is checked."""

    refused: bool = False
    """True: answer 429 without checking the password."""
    retry_after_s: float = 0.0
    """When refused: seconds until this client may try this user again."""
    delay_s: float = 0.0
    """When not refused: how long to wait before checking the password (the user is under attack)."""


class SignInGuard:
    """The decision for one attempt (`check`), then its outcome (`failed` / `succeeded`)."""

    def __init__(
        self,
        policy: ThrottlePolicy | None = None,
        *,
        client_limit: int = 20,
        client_window_s: float = 900.0,
    ) -> None:
        self.policy = policy or ThrottlePolicy()
        self.pairs = SignInThrottle(self.policy)
        self.clients = LoginThrottle(client_limit, client_window_s, max_keys=self.policy.max_entries)

    @staticmethod
    def at(now: float) -> datetime:
        """Monotonic seconds as the datetime `fleetcore.throttle` counts in (only differences matter)."""
        return _EPOCH + timedelta(seconds=now)

    def check(self, user: str, client: str, now: float) -> Verdict:
        """Refuse a client that failed too often; otherwise how long an attempt on this user waits now."""
        when = self.at(now)
        wait = max(float(self.pairs.retry_after(user, client, when)), self.clients.retry_after(client, now))
        if wait > 0:
            return Verdict(refused=True, retry_after_s=wait)
        return Verdict(delay_s=self.pairs.slowdown(user, when))

    def failed(self, user: str, client: str, now: float) -> None:
        """Count a wrong user name or password."""
        self.pairs.failed(user, client, self.at(now))
        self.clients.fail(client, now)

    def succeeded(self, user: str, client: str) -> None:
        """The client proved itself for this user: its failures for the user are forgotten."""
        self.pairs.succeeded(user, client)

    def __len__(self) -> int:
        """Pairs and clients remembered (each bounded by the policy's `max_entries`)."""
        return len(self.pairs) + len(self.clients)
