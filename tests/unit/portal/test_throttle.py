"""The portal's sign-in throttle as a pure policy (time passed in): the per-client window against password
spraying, and the verdict for one attempt over the project's throttle (fleetcore.throttle, tested on its
own in tests/unit/fleetcore/test_throttle.py)."""

from __future__ import annotations

from fleetcore.throttle import ThrottlePolicy
from portal.web.throttle import LoginThrottle, SignInGuard, Verdict

POLICY = ThrottlePolicy(
    free_failures=3,
    base_delay_s=60,
    max_delay_s=240,
    account_failures=10,
    account_window_s=600,
    account_delay_s=2,
    max_entries=50,
)


def test_window_blocks_after_the_limit_and_forgets_after_the_window() -> None:
    throttle = LoginThrottle(limit=3, window_s=60)
    for at in (0.0, 1.0):
        throttle.fail("10.0.0.1", at)
    assert not throttle.blocked("10.0.0.1", 2.0)
    throttle.fail("10.0.0.1", 2.0)
    assert throttle.blocked("10.0.0.1", 3.0)
    assert throttle.retry_after("10.0.0.1", 3.0) == 57.0, "until the first failure leaves the window"
    assert not throttle.blocked("10.0.0.2", 3.0)
    assert throttle.retry_after("10.0.0.2", 3.0) == 0.0
    assert not throttle.blocked("10.0.0.1", 60.5), "the first failure left the window"
    throttle.fail("10.0.0.1", 60.6)
    assert throttle.blocked("10.0.0.1", 60.7)
    assert throttle.retry_after("10.0.0.1", 60.7) == 61.0 - 60.7, "now the second failure must go"


def test_window_memory_is_bounded() -> None:
    throttle = LoginThrottle(limit=2, window_s=60, max_keys=10)
    for n in range(100):
        throttle.fail(f"10.0.0.{n}", float(n) / 10)
    assert len(throttle) <= 10
    assert throttle.blocked("10.0.0.99", 10.0) is False
    throttle.fail("10.0.0.99", 10.0)
    assert throttle.blocked("10.0.0.99", 10.0)


def test_a_pair_is_refused_not_the_user() -> None:
    guard = SignInGuard(POLICY)
    for at in (0.0, 1.0, 2.0, 3.0):
        assert guard.check("nadia", "203.0.113.7", at) == Verdict()
        guard.failed("nadia", "203.0.113.7", at)
    assert guard.check("nadia", "203.0.113.7", 4.0) == Verdict(refused=True, retry_after_s=59.0)
    assert guard.check("nadia", "198.51.100.1", 4.0) == Verdict(), "another client"
    assert guard.check("tom", "203.0.113.7", 4.0) == Verdict(), "another user from the same client"
    assert guard.check("nadia", "203.0.113.7", 63.0) == Verdict(), "the block ran out"


def test_a_client_spraying_many_users_is_refused_for_all() -> None:
    guard = SignInGuard(POLICY, client_limit=4, client_window_s=60)
    for n in range(4):
        assert not guard.check(f"user{n}", "203.0.113.7", float(n)).refused
        guard.failed(f"user{n}", "203.0.113.7", float(n))
    assert guard.check("nadia", "203.0.113.7", 4.0) == Verdict(refused=True, retry_after_s=56.0)
    assert guard.check("nadia", "198.51.100.1", 4.0) == Verdict()
    assert guard.check("nadia", "203.0.113.7", 60.0) == Verdict()


def test_a_user_under_attack_is_slowed_for_everyone_and_never_refused_to_a_clean_client() -> None:
    guard = SignInGuard(POLICY)
    for n in range(10):
        assert guard.check("nadia", f"10.0.0.{n}", 1.0) == Verdict(), "one failure each: not yet an attack"
        guard.failed("nadia", f"10.0.0.{n}", 1.0)
    assert guard.check("nadia", "192.0.2.1", 2.0) == Verdict(delay_s=2), "a clean client: slowed, not refused"
    assert guard.check("tom", "192.0.2.1", 2.0) == Verdict()
    guard.failed("nadia", "192.0.2.2", 2.0)
    assert guard.check("nadia", "192.0.2.2", 3.0).refused, "under attack, a failing client is refused at once"
    guard.succeeded("nadia", "192.0.2.1")
    assert guard.check("nadia", "192.0.2.1", 3.0).delay_s == 2, "one success does not end the attack"
    assert guard.check("nadia", "192.0.2.1", 700.0) == Verdict(), "the failures left the window"


def test_success_forgets_the_clients_failures_for_that_user() -> None:
    guard = SignInGuard(POLICY)
    for at in (0.0, 1.0, 2.0):
        guard.failed("nadia", "203.0.113.7", at)
    guard.succeeded("nadia", "203.0.113.7")
    guard.failed("nadia", "203.0.113.7", 3.0)
    assert not guard.check("nadia", "203.0.113.7", 4.0).refused, "one failure since the sign-in"


def test_the_guards_memory_is_bounded() -> None:
    guard = SignInGuard(POLICY)
    for n in range(10_000):
        guard.failed(f"guess{n}", f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", float(n))
    assert len(guard) <= 2 * POLICY.max_entries
