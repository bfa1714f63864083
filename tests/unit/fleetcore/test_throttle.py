"""The sign-in throttle: backoff per (account, client), tighter under attack, bounded; time passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleetcore.throttle import SignInThrottle, ThrottlePolicy, client_key

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_free_failures_then_a_doubling_block() -> None:
    throttle = SignInThrottle(ThrottlePolicy(free_failures=3, base_delay_s=1, max_delay_s=8))
    assert [throttle.failed("analyst", "10.0.0.1", T0) for _ in range(3)] == [0, 0, 0]
    assert throttle.retry_after("analyst", "10.0.0.1", T0) == 0
    assert throttle.failed("analyst", "10.0.0.1", T0) == 1
    assert throttle.retry_after("analyst", "10.0.0.1", at(0.5)) == 1
    assert throttle.retry_after("analyst", "10.0.0.1", at(1)) == 0
    assert [throttle.failed("analyst", "10.0.0.1", at(1 + n * 20)) for n in range(4)] == [2, 4, 8, 8]
    # another client, and another account from this client, are not blocked
    assert throttle.retry_after("analyst", "10.0.0.2", at(61)) == 0
    assert throttle.retry_after("other", "10.0.0.1", at(61)) == 0


def test_a_burst_of_wrong_passwords_is_blocked_after_the_free_ones() -> None:
    throttle = SignInThrottle()
    refused = answered = 0
    for n in range(300):  # the review's 300 wrong passwords in 0.2 s
        now = at(n * 0.2 / 300)
        if throttle.retry_after("analyst", "10.0.0.9", now):
            refused += 1
        else:
            answered += 1
            throttle.failed("analyst", "10.0.0.9", now)
    assert (answered, refused) == (ThrottlePolicy().free_failures + 1, 300 - answered)


def test_success_clears_and_quiet_pairs_are_forgotten() -> None:
    throttle = SignInThrottle(ThrottlePolicy(free_failures=1, forget_after_s=60))
    throttle.failed("a", "c", T0)
    throttle.succeeded("a", "c")
    assert throttle.failed("a", "c", at(1)) == 0  # counting starts again
    assert throttle.failed("a", "c", at(2)) == 1
    assert throttle.failed("a", "c", at(2 + 61)) == 0  # quiet for longer than forget_after_s


def test_under_attack_failing_clients_block_at_once_but_a_clean_client_is_never_refused() -> None:
    throttle = SignInThrottle(ThrottlePolicy(free_failures=5, account_failures=10, account_window_s=60))
    for n in range(9):  # one failure from each of nine addresses: no pair reaches its free failures
        assert throttle.failed("analyst", f"10.0.1.{n}", at(n)) == 0
    assert not throttle.under_attack("analyst", at(9))
    assert throttle.failed("analyst", "10.0.2.1", at(10)) == 1  # the tenth: blocked from its first failure
    assert throttle.under_attack("analyst", at(10))
    assert throttle.retry_after("analyst", "10.0.2.1", at(10)) == 1
    assert throttle.retry_after("analyst", "192.168.1.5", at(10)) == 0  # the owner's address
    assert not throttle.under_attack("other", at(10))
    assert throttle.slowdown("analyst", at(10)) == ThrottlePolicy().account_delay_s  # everyone waits a bit
    assert throttle.slowdown("other", at(10)) == 0
    assert not throttle.under_attack("analyst", at(10 + 61))  # the window has passed
    assert throttle.slowdown("analyst", at(10 + 61)) == 0


def test_memory_is_bounded_and_blocked_pairs_are_kept_longest() -> None:
    throttle = SignInThrottle(ThrottlePolicy(free_failures=0, max_entries=100))
    assert throttle.failed("analyst", "attacker", T0) == 1
    for n in range(1000):  # a flood of other names from one address does not evict the blocked pair
        throttle.failed(f"user-{n}", "attacker", at(2 + n))
    assert len(throttle) == 100
    later = SignInThrottle(ThrottlePolicy(free_failures=5, max_entries=100))
    later.failed("analyst", "attacker", T0)
    for n in range(1000):
        later.failed(f"user-{n}", "attacker", T0)
    assert len(later) == 100
    assert ("analyst", "attacker") not in later._pairs  # unblocked pairs go first, oldest first


def test_clients_are_addresses_and_ipv6_networks() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("unknown") == "unknown"
