"""Redis failover under load: gunicorn -w 4 on a Sentinel-managed primary/replica (3 Sentinels).

The primary is SIGKILLed while people keep logging in. Expected, and asserted: during the failover the
IdP answers 503 (fail closed, never a 500 and never a login let through without its checks); once the
Sentinels have promoted the replica, logins succeed again with no operator action; an account locked
before the failover is still locked after it (its lock was acknowledged by the replica: Redis WAIT,
``IDP_REDIS_WAIT_REPLICAS=1``). The outage is measured and printed (``-s``).
"""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import csrf_from, remember_secret
from tests.login.conftest import NIR, OTHER_NIR, PASSWORD, make_account, new_interaction
from tests.redis.topologies import SentinelSet
from tests.resilience.harness import Gunicorn, idp_env, wait_until
from tests.webauthn.conftest import random_nir

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(240)]

LOCKED = "bloqué jusqu'au"
remember_secret("Pas-Le-Bon-0", "Pas-Le-Bon-1", "Pas-Le-Bon-2")


@pytest.fixture
def sentinels(tmp_path: Any) -> Iterator[SentinelSet]:
    """A private Sentinel set for this test only (its primary gets killed)."""
    started = SentinelSet(tmp_path / "sentinel").start()
    yield started
    started.stop()


@pytest.fixture
def redis_url(sentinels: SentinelSet) -> str:
    """pg_app and the server use the private Sentinel set."""
    return sentinels.url


def _login(url: str, interaction: str, nir: str, password: str) -> tuple[int, str, str]:
    """One identify step (NIR + password) in a fresh browser: (status, Location, page text)."""
    browser = requests.Session()
    browser.cookies.set("idp_interaction", interaction, domain="127.0.0.1", path="/")
    try:
        page = browser.get(url + "/connexion", timeout=10)
        if page.status_code != 200:
            return page.status_code, "", ""
        answer = browser.post(url + "/connexion", allow_redirects=False, timeout=10,
                              data={"csrf_token": csrf_from(page.text), "nir": nir, "password": password})
    except requests.RequestException as exc:  # a worker restarting is a failure of the test, not a pass
        return 0, "", repr(exc)
    return answer.status_code, answer.headers.get("Location", ""), html.unescape(answer.text)


def _alert(page: str) -> str:
    """The alert text of a refused login page (or its start)."""
    found = re.search(r'fr-alert[^>]*>(.*?)</div>', page, re.S)
    return re.sub(r"<[^>]+>|\s+", " ", found.group(1) if found else page[:300]).strip()


def test_logins_resume_after_the_primary_dies_and_a_lock_set_before_still_holds(
        pg_app: Any, postgres_url: str, redis_prefix: str, redis_url: str, sentinels: SentinelSet,
        mailbox: Any, clock: Any, tmp_path: Any) -> None:
    victim = make_account(pg_app, nir=OTHER_NIR, email="bob@exemple.fr")
    # One account per client thread: one person's parallel right-password logins each reserve a guess before
    # the hash is checked, and a fourth in flight meets the lock the third set in advance (by design: parallel
    # guesses never exceed the limit). The failover, not that rule, is what this test is about.
    people = [make_account(pg_app, nir=nir) for nir in (NIR, *(random_nir().value for _ in range(3)))]
    env = idp_env(postgres_url=postgres_url, redis_url=redis_url, redis_prefix=redis_prefix, mailbox=mailbox,
                  clock=clock, clock_file=tmp_path / "clock", IDP_REDIS_WAIT_REPLICAS="1")
    server = Gunicorn(env, workers=4, log_path=tmp_path / "gunicorn.log").start()
    try:
        for attempt in range(3):  # the victim's account is locked before the failover
            status, _, text = _login(server.url, new_interaction(pg_app, kind="mobile"), victim.nir,
                                     f"Pas-Le-Bon-{attempt}")
            assert status == 200
        assert LOCKED in text
        # Enough fresh interactions for the whole run: a refused login uses one up in a few milliseconds, so
        # the clients back off after a refusal (as a browser's user would) instead of draining the pool
        # during the outage and leaving nothing to log in with once the replica is promoted.
        interactions = [new_interaction(pg_app, kind="mobile") for _ in range(600)]
        results: list[tuple[float, int, str]] = []
        refusals: list[str] = []  # the alert of any 200 (a refused login), to say why in the failure
        stop = threading.Event()

        def load(nir: str) -> None:
            while not stop.is_set() and interactions:
                status, location, text = _login(server.url, interactions.pop(), nir, PASSWORD)
                results.append((time.monotonic(), status, location))
                if status == 200:
                    refusals.append(_alert(text))
                if status != 303:
                    stop.wait(0.2)

        workers = [threading.Thread(target=load, args=(person.nir,)) for person in people]
        for worker in workers:
            worker.start()
        wait_until(lambda: sum(r[1] == 303 for r in results) >= 10, timeout=30, what="logins before the kill")
        old_primary = sentinels.primary
        assert old_primary is not None
        killed_at = time.monotonic()
        old_primary.kill()
        wait_until(lambda: sentinels.current_primary_port() != old_primary.port, timeout=30,
                   what="the Sentinels promote the replica")
        promoted_at = time.monotonic()
        try:
            wait_until(lambda: sum(r[0] > promoted_at + 3 for r in results) >= 20, timeout=60,
                       what="logins after the promotion")
        except AssertionError:
            raise AssertionError(f"after the promotion: {[r[1] for r in results if r[0] > promoted_at][-30:]}, "
                                 f"{len(interactions)} interactions left, "
                                 + (tmp_path / "gunicorn.log").read_text()[-2000:]) from None
        stop.set()
        for worker in workers:
            worker.join(30)
        # The lock set before the failover holds on the promoted replica: the right password is refused.
        after = _login(server.url, new_interaction(pg_app, kind="mobile"), victim.nir, PASSWORD)
    finally:
        server.stop()
    statuses = {r[1] for r in results}
    assert statuses <= {303, 503}, f"only successes and fail-closed 503s, got {statuses}; refusals: {refusals[:3]}"
    assert all(r[2] and not r[2].endswith("/connexion") for r in results if r[1] == 303)
    failed = [r[0] for r in results if r[1] == 503]
    back = min(r[0] for r in results if r[1] == 303 and r[0] > killed_at)
    print(f"\nfailover: {len(results)} logins, {len(failed)} refused with 503; Sentinel promoted the replica "
          f"{promoted_at - killed_at:.1f}s after the kill; first login served {back - killed_at:.1f}s after it")
    tail = [r[1] for r in results if r[0] > promoted_at + 3]
    assert len(tail) >= 20 and set(tail) == {303}, f"3 s after the promotion every login is served: {tail}"
    assert after[0] == 200 and LOCKED in after[2]
