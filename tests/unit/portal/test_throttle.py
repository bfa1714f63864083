"""The failed sign-in throttle as a pure policy (time passed in): counters, the verdict for one attempt,
who a client is, and bounded memory."""

from __future__ import annotations

from portal.web.throttle import LoginThrottle, SignInGuard, Verdict, client_key


def test_throttle_blocks_after_the_limit_and_forgets_after_the_window() -> None:
    throttle = LoginThrottle(limit=3, window_s=60)
    for at in (0.0, 1.0):
        throttle.fail(["user:tom"], at)
    assert not throttle.blocked(["user:tom"], 2.0)
    throttle.fail(["user:tom"], 2.0)
    assert throttle.blocked(["user:tom"], 3.0)
    assert throttle.retry_after("user:tom", 3.0) == 57.0, "until the first failure leaves the window"
    assert throttle.blocked(["user:nadia", "user:tom"], 3.0), "any key blocked blocks"
    assert not throttle.blocked(["user:nadia"], 3.0)
    assert throttle.retry_after("user:nadia", 3.0) == 0.0
    assert not throttle.blocked(["user:tom"], 60.5), "the first failure left the window"
    throttle.fail(["user:tom"], 60.6)
    assert throttle.blocked(["user:tom"], 60.7)
    assert throttle.retry_after("user:tom", 60.7) == 61.0 - 60.7, "now the second failure must go"
    throttle.clear("user:tom")
    assert not throttle.blocked(["user:tom"], 60.7)


def test_throttle_memory_is_bounded() -> None:
    throttle = LoginThrottle(limit=2, window_s=60, max_keys=10)
    for n in range(100):
        throttle.fail([f"user:guess{n}"], float(n) / 10)
    assert len(throttle) <= 10
    assert throttle.blocked(["user:guess99"], 10.0) is False
    throttle.fail(["user:guess99"], 10.0)
    assert throttle.blocked(["user:guess99"], 10.0)


def test_a_pair_is_refused_not_the_user() -> None:
    guard = SignInGuard(pair_limit=3, client_limit=10, slow_after=100, window_s=60)
    for at in (0.0, 1.0, 2.0):
        assert guard.check("nadia", "203.0.113.7", at) == Verdict()
        guard.failed("nadia", "203.0.113.7", at)
    assert guard.check("nadia", "203.0.113.7", 3.0) == Verdict(refused=True, retry_after_s=57.0)
    assert guard.check("nadia", "198.51.100.1", 3.0) == Verdict(), "another client"
    assert guard.check("tom", "203.0.113.7", 3.0) == Verdict(), "another user from the same client"
    assert guard.check("nadia", "203.0.113.7", 60.0) == Verdict()


def test_a_client_is_refused_after_failing_for_many_users() -> None:
    guard = SignInGuard(pair_limit=3, client_limit=4, slow_after=100, window_s=60)
    for n in range(4):
        guard.failed(f"user{n}", "203.0.113.7", float(n))
    assert guard.check("nadia", "203.0.113.7", 4.0) == Verdict(refused=True, retry_after_s=56.0)
    assert guard.check("nadia", "198.51.100.1", 4.0) == Verdict()


def test_a_user_under_attack_waits_more_with_each_failure_up_to_the_cap() -> None:
    guard = SignInGuard(pair_limit=3, slow_after=4, window_s=60, base_delay_s=0.5, max_delay_s=8)
    delays = []
    for n in range(12):
        delays.append(guard.check("nadia", f"10.0.0.{n}", 1.0).delay_s)
        guard.failed("nadia", f"10.0.0.{n}", 1.0)
    assert delays == [0, 0, 0, 0, 0.5, 1, 2, 4, 8, 8, 8, 8]
    verdict = guard.check("nadia", "192.0.2.1", 2.0)
    assert not verdict.refused, "a client that has not failed is never refused"
    assert verdict.delay_s == 8
    assert guard.check("tom", "192.0.2.1", 2.0).delay_s == 0
    guard.succeeded("nadia", "192.0.2.1")
    assert guard.check("nadia", "192.0.2.1", 2.0).delay_s == 8, "one success does not end the attack"
    assert guard.check("nadia", "192.0.2.1", 61.0).delay_s == 0, "the failures left the window"


def test_success_forgets_the_clients_failures_for_that_user() -> None:
    guard = SignInGuard(pair_limit=3, window_s=60)
    for at in (0.0, 1.0):
        guard.failed("nadia", "203.0.113.7", at)
    guard.succeeded("nadia", "203.0.113.7")
    guard.failed("nadia", "203.0.113.7", 2.0)
    guard.failed("nadia", "203.0.113.7", 3.0)
    assert not guard.check("nadia", "203.0.113.7", 4.0).refused, "two failures since the sign-in"


def test_the_guards_memory_is_bounded() -> None:
    guard = SignInGuard(max_keys=50)
    for n in range(10_000):
        guard.failed(f"guess{n}", f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", float(n))
    assert len(guard) <= 150


def test_who_a_client_is() -> None:
    assert client_key("203.0.113.7") == "203.0.113.7"
    assert client_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64", "IPv6 by its /64"
    assert client_key("2001:db8:1:2:bbbb::9") == client_key("2001:db8:1:2:aaaa::1")
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key(None) == "-"
    assert client_key("") == "-"
    assert client_key("unix-socket") == "unix-socket"
