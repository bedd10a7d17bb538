"""Attempts are reserved atomically (Lua) before a guess is checked; fakeredis unit tests.

Review finding: reading the lock, checking the guess, then counting the failure let parallel requests all
be checked before the lock was set. With ``max_failed_attempts`` = 3, at most 3 guesses may ever be
checked in a lock window, whatever the concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

ACCOUNT = "acc-1"


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def test_only_the_limit_of_parallel_reservations_may_check_a_guess_and_the_last_one_locks(ctx):
    from idp.mfa import limits

    attempts = [limits.reserve_attempt("pwd", ACCOUNT) for _ in range(12)]  # none resolved yet: all in flight
    allowed = [a for a in attempts if a.allowed]
    assert len(allowed) == 3
    assert [a.until is not None for a in allowed] == [False, False, True]  # the 3rd failure leaves a lock
    assert all(not a.allowed and a.until == allowed[2].until for a in attempts[3:])
    assert limits.account_lock(ACCOUNT).locked


def test_reservations_from_many_threads_never_exceed_the_limit(app):
    from idp.mfa import limits

    def one(_: int) -> bool:
        with app.app_context():
            return limits.reserve_attempt("code", ACCOUNT).allowed

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(one, range(40))) == 3


def test_a_success_resets_its_counter_and_lifts_the_lock_set_in_advance(ctx):
    from idp.mfa import limits

    for _ in range(2):
        limits.reserve_attempt("pwd", ACCOUNT)
    last = limits.reserve_attempt("pwd", ACCOUNT)
    assert last.allowed and last.until is not None  # in flight: a failure would lock
    limits.reset_failures("pwd", ACCOUNT)  # ... but it was the right password
    assert not limits.account_lock(ACCOUNT).locked
    assert limits.reserve_attempt("pwd", ACCOUNT).failures == 1


def test_password_and_code_counters_are_separate_but_either_lock_refuses_both(ctx):
    from idp.mfa import limits

    for _ in range(2):
        limits.reserve_attempt("pwd", ACCOUNT)
    code = limits.reserve_attempt("code", ACCOUNT)
    assert code.allowed and code.failures == 1 and code.until is None
    for _ in range(2):
        limits.reserve_attempt("code", ACCOUNT)  # the 3rd code failure locks
    refused = limits.reserve_attempt("pwd", ACCOUNT)
    assert not refused.allowed and refused.until is not None


def test_the_lock_lifts_by_the_app_clock_after_the_lockout_duration(ctx, clock):
    from idp.mfa import limits

    for _ in range(3):
        limits.reserve_attempt("pwd", ACCOUNT)
    clock.advance(minutes=14, seconds=59)
    assert not limits.reserve_attempt("pwd", ACCOUNT).allowed
    clock.advance(seconds=1)
    fresh = limits.reserve_attempt("pwd", ACCOUNT)
    assert fresh.allowed and fresh.failures == 1 and fresh.until is None


def test_a_released_reservation_gives_back_its_count_and_its_advance_lock(ctx):
    from idp.mfa import limits

    limits.reserve_attempt("code", ACCOUNT)
    limits.reserve_attempt("code", ACCOUNT)
    last = limits.reserve_attempt("code", ACCOUNT)
    limits.release_attempt("code", ACCOUNT, last)  # e.g. the code expired in between: no guess checked
    assert not limits.account_lock(ACCOUNT).locked
    again = limits.reserve_attempt("code", ACCOUNT)
    assert again.allowed and again.failures == 3 and again.until is not None


def test_register_failure_still_counts_and_locks_at_the_limit(ctx):
    from idp.mfa import limits

    assert [limits.register_failure("pwd", ACCOUNT).locked for _ in range(3)] == [False, False, True]


def test_address_rate_is_reserved_before_the_action_and_can_be_given_back(ctx):
    from idp.mfa import limits

    slots = [limits.take_rate("t", "1.2.3.4", window=900, limit=3) for _ in range(5)]
    assert [s.allowed for s in slots] == [True, True, True, False, False]
    limits.give_back_rate(slots[0])  # that attempt succeeded: it is not a failure
    assert limits.take_rate("t", "1.2.3.4", window=900, limit=3).allowed
    assert not limits.take_rate("t", "1.2.3.4", window=900, limit=3).allowed


def test_lua_scripts_are_registered_once_per_redis_client(ctx, monkeypatch):
    from idp.extensions import redis_client
    from idp.mfa import limits

    client = redis_client()
    calls: list[str] = []
    original = client.register_script

    def counting(source):
        calls.append(source)
        return original(source)

    monkeypatch.setattr(client, "register_script", counting)
    for _ in range(5):
        limits.reserve_attempt("pwd", "someone")
        limits.hit_rate("x", "y", window=60)
    assert len(calls) == len(set(calls)) == 2
