"""Every Lua script of the IdP keeps its keys in one hash slot, so it runs unchanged on a Redis Cluster.

The ``app`` fixture's Redis (tests/redis/slots.py) refuses a script or MULTI that spans several slots, as
a cluster does; this test drives every script the ``idp`` package defines and checks none was left out.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.login.conftest import make_account
from tests.redis.slots import SEEN, CrossSlot, SlotCheckingRedis, all_lua_sources


def _drive_every_script(app: Any, mailbox: Any) -> None:
    from idp.accounts import codes as otc
    from idp.mfa import codes, limits
    from idp.oidc import tokens
    from idp.rfi_adapter.http import CircuitBreaker

    person = make_account(app)
    with app.test_request_context():
        attempt = limits.reserve_attempt("pwd", person.account_id)
        limits.release_attempt("pwd", person.account_id, attempt)
        limits.register_failure("code", person.account_id)
        limits.take_quota("code", person.account_id, quota=5, window=3600, block=3600)
        limits.hit_rate("creation", "203.0.113.7", window=3600)
        limits.give_back_rate(limits.take_rate("login-fail", "203.0.113.7", window=900, limit=30))
        from idp.accounts.service import get_account

        codes.send_code("tx-slots", get_account(person.account_id))
        codes.verify_code("tx-slots", person.account_id, mailbox.code())
        otc.verify("sms", "subject-1", otc.issue("sms", "subject-1", digits=6, ttl=60), max_tries=3)
        record = tokens.AuthorizationCode(client_id="rp", redirect_uri="https://rp.example/cb", scope="openid",
                                          nonce=None, code_challenge=None, code_challenge_method=None,
                                          expires_at=2_000_000_000, user={})
        tokens.save_code("code-value", record)
        taken = tokens.redeem_code("code-value", "rp")
        assert taken is not None
        tokens.give_back_code("code-value", taken)
        tokens.redeem_code("code-value", "rp")
        tokens.remember_code_issue("code-value", "access-value", None)
        tokens.redeem_code("code-value", "rp")  # the replay: flags the marker
        breaker = CircuitBreaker("rfi-slots", threshold=2, reset_seconds=30)
        breaker.allow()
        breaker.failure()


def test_every_lua_script_keeps_its_keys_in_one_hash_slot(app: Any, mailbox: Any) -> None:
    scripts = all_lua_sources()
    assert len(scripts) >= 14, scripts  # the package's scripts were found (limits, tokens, codes, breaker...)
    SEEN.clear()
    _drive_every_script(app, mailbox)
    missing = sorted(name for sha, name in scripts.items() if sha not in SEEN)
    assert not missing, f"scripts not exercised here: {missing}"


def test_the_checking_redis_refuses_keys_of_two_slots_as_a_cluster_does() -> None:
    client = SlotCheckingRedis()
    lua = client.register_script("return redis.call('GET', KEYS[1])")
    assert lua(keys=["idp:a:{x}", "idp:b:{x}"]) is None  # one tag, one slot
    with pytest.raises(CrossSlot):
        lua(keys=["idp:a:x", "idp:b:y"])
    pipe = client.pipeline(transaction=True)
    pipe.set("idp:a:x", 1)
    pipe.set("idp:b:y", 1)
    with pytest.raises(CrossSlot):
        pipe.execute()
