"""Redis down or stalled: logins fail closed, nothing is bypassed, and the service recovers by itself.

The IdP runs on its own redis-server (AOF with ``appendfsync always``, as production must: see
docs/SECURITY-CHECKLIST.md), which the tests stop, freeze with SIGSTOP and bring back.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.login.conftest import NIR, PASSWORD, bind, make_account, new_interaction, rp_answer
from tests.resilience.conftest import assert_unavailable_page, text_of
from tests.resilience.harness import RedisProcess

pytestmark = [pytest.mark.redis]

LOCKED = "bloqué jusqu'au"


def _identify(client: Any, password: str = PASSWORD) -> Any:
    from tests.conftest import csrf_from

    token = csrf_from(client.get("/connexion").data)
    return client.post("/connexion", data={"csrf_token": token, "nir": NIR, "password": password})


def _at_code_step(app: Any, mailbox: Any) -> tuple[Any, str, str]:
    """A browser past the password with a code in the mailbox; returns (client, csrf token, code)."""
    from tests.conftest import csrf_from

    client = app.test_client()
    bind(client, new_interaction(app))
    answer = _identify(client)
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/connexion/code"), text_of(answer)[:300]
    return client, csrf_from(client.get("/connexion/code").data), mailbox.code()


def _post_code(client: Any, token: str, code: str) -> Any:
    return client.post("/connexion/code", data={"csrf_token": token, "code": code})


def _recovers(action: Any, *, timeout: float = 10) -> Any:
    """Retry ``action`` (a request) until it is no longer a 503, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        answer = action()
        if answer.status_code != 503 or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def test_redis_down_fails_closed_and_the_code_still_works_after_it_comes_back(make_app: Any, own_redis: RedisProcess,
                                                                              mailbox: Any) -> None:
    """Redis stops between the code e-mail and its entry.

    Expected: every login page answers 503 "Service momentanément indisponible" (French page, Retry-After,
    no traceback); the right code is NOT accepted while Redis is down; when Redis is back (same data, AOF)
    the same app serves again without restart and the code, still unused, completes the login once."""
    app = make_app(redis_url=own_redis.url)
    make_account(app)
    client, token, code = _at_code_step(app, mailbox)
    own_redis.stop()
    assert_unavailable_page(client.get("/connexion/code"))
    assert_unavailable_page(_post_code(client, token, code))
    assert_unavailable_page(client.get("/connexion"))
    own_redis.start()
    done = _recovers(lambda: _post_code(client, token, code))
    rp_answer(done)  # the last step answered the RP


def test_redis_down_never_lifts_a_lock(make_app: Any, own_redis: RedisProcess, mailbox: Any) -> None:
    """Three wrong passwords lock the account; Redis goes down and comes back.

    Expected: during the outage the right password gets the 503 page (never a login); after the restart
    the lock is still in force (persisted), so the right password still gets "bloqué jusqu'au"."""
    app = make_app(redis_url=own_redis.url)
    make_account(app)
    client = app.test_client()
    bind(client, new_interaction(app))
    answers = [text_of(_identify(client, "mauvais-mot-de-passe")) for _ in range(3)]
    assert LOCKED in answers[-1]
    from tests.conftest import csrf_from

    token = csrf_from(client.get("/connexion").data)
    own_redis.stop()
    assert_unavailable_page(client.post("/connexion", data={"csrf_token": token, "nir": NIR, "password": PASSWORD}))
    own_redis.start()
    again = _recovers(lambda: _identify(client))
    assert again.status_code == 200 and LOCKED in text_of(again)


def test_stalled_redis_fails_closed_within_the_socket_timeout(make_app: Any, own_redis: RedisProcess,
                                                              mailbox: Any) -> None:
    """Redis is frozen (SIGSTOP): connections stay open but nothing answers.

    Expected: a code submission answers the 503 page after the Redis socket timeout (2 s), not after the
    worker timeout, and the code is not accepted; once Redis resumes (SIGCONT) the same code works."""
    app = make_app(redis_url=own_redis.url)
    make_account(app)
    client, token, code = _at_code_step(app, mailbox)
    own_redis.stall()
    try:
        started = time.monotonic()
        assert_unavailable_page(_post_code(client, token, code))
        assert time.monotonic() - started < 6
    finally:
        own_redis.resume()
    done = _recovers(lambda: _post_code(client, token, code))
    rp_answer(done)  # the last step answered the RP


def test_stalled_redis_never_counts_a_wrong_code_as_right(make_app: Any, own_redis: RedisProcess,
                                                          mailbox: Any) -> None:
    """Two wrong codes, then Redis stalls during the third.

    Expected: the 3rd submission gets the 503 page; after the stall the counter is intact (2 failures
    still counted, none forgotten), so the next wrong code locks the account."""
    app = make_app(redis_url=own_redis.url)
    make_account(app)
    client, token, code = _at_code_step(app, mailbox)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(2):
        assert "erronées" in text_of(_post_code(client, token, wrong))
    own_redis.stall()
    try:
        assert_unavailable_page(_post_code(client, token, wrong))
    finally:
        own_redis.resume()
    third = _recovers(lambda: _post_code(client, token, wrong))
    assert LOCKED in text_of(third)
    assert LOCKED in text_of(_post_code(client, token, code)), "the right code is refused while locked"


@pytest.mark.parametrize(("error", "message"), [("ClusterDownError", "The cluster is down"),
                                               ("TryAgainError", "Multiple keys request during rehashing of slot"),
                                               ("MovedError", "3999 127.0.0.1:6381"),
                                               ("ReadOnlyError", "You can't write against a read only replica.")])
def test_a_failover_in_progress_fails_closed_with_a_503_never_a_500(app: Any, monkeypatch: Any, error: str,
                                                                    message: str) -> None:
    """What a Redis Cluster or Sentinel answers while a master is replaced (CLUSTERDOWN, TRYAGAIN, MOVED under a
    node-level pipeline, READONLY from a demoted primary; found by the Cluster failover test under load: a
    security write's pipeline on the dying master's node got CLUSTERDOWN and answered 500): the password step
    answers the French 503 page, and the next login, once Redis answers again, is served."""
    import redis.exceptions

    from idp.mfa import limits

    make_account(app)
    client = app.test_client()
    bind(client, new_interaction(app))
    failure = getattr(redis.exceptions, error)(message)
    taken = limits.take_rate

    def failing_over(*args: Any, **kwargs: Any) -> Any:
        raise failure

    monkeypatch.setattr(limits, "take_rate", failing_over)
    assert_unavailable_page(_identify(client))
    monkeypatch.setattr(limits, "take_rate", taken)
    answer = _identify(client)
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/connexion/code"), text_of(answer)[:300]


def test_logins_failed_by_an_outage_do_not_use_up_the_addresss_failure_budget(app: Any, monkeypatch: Any) -> None:
    """More password steps than ``address_failure_limit`` fail on a Redis outage after their address unit was
    taken (found by the failover test: after a failover, every login from that network got the 429 "trop de
    tentatives" page): each is a 503, none counts as a failed guess, and once Redis answers the login is served."""
    import redis.exceptions

    from idp.extensions import settings
    from idp.mfa import limits

    make_account(app)
    with app.app_context():
        attempts = settings().address_failure_limit + 5
    reserve = limits.reserve_attempt

    def outage(*args: Any, **kwargs: Any) -> Any:
        raise redis.exceptions.ConnectionError("the master holding the account's counters is gone")

    monkeypatch.setattr(limits, "reserve_attempt", outage)
    for _ in range(attempts):
        client = app.test_client()
        bind(client, new_interaction(app))
        assert_unavailable_page(_identify(client))
    monkeypatch.setattr(limits, "reserve_attempt", reserve)
    client = app.test_client()
    bind(client, new_interaction(app))
    answer = _identify(client)
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/connexion/code"), text_of(answer)[:300]
