"""Redis failover under load: gunicorn on a Sentinel-managed primary/replica (3 Sentinels), and on a Redis
Cluster whose masters each have a replica.

The primary (on the cluster, the master that holds the locked account's keys) is SIGKILLed while people
keep logging in. Expected, and asserted: during the failover the IdP answers 503 (fail closed, never a 500
and never a login let through without its checks); once the replica is promoted (by the Sentinels, or
elected by the cluster), logins succeed again with no operator action; an account locked
before the failover is still locked after it (its lock was acknowledged by the replica: Redis WAIT,
``IDP_REDIS_WAIT_REPLICAS=1``). The outage is measured and printed (``-s``).
"""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.conftest import csrf_from, remember_secret
from tests.login.conftest import NIR, OTHER_NIR, PASSWORD, make_account, new_interaction
from tests.redis.topologies import ClusterProcesses, SentinelSet
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
def redis_url(request: pytest.FixtureRequest) -> str:
    """pg_app and the server use the test's private topology: its cluster, or else its Sentinel set."""
    if "cluster" in request.fixturenames:
        return str(request.getfixturevalue("cluster").url)
    return str(request.getfixturevalue("sentinels").url)


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


@dataclass
class Failover:
    """What people logging in met while a Redis master was killed and replaced."""

    results: list[tuple[float, int, str]]  # (when, status, Location) of each identify step
    refusals: list[str]  # the alert of any 200 (a refused login), to say why in the failure
    killed_at: float
    promoted_at: float
    locked_after: tuple[int, str, str]  # the locked victim's right password, once logins are back


def _lock(pg_app: Any, url: str, victim: Any) -> None:
    """Three wrong passwords lock the victim's account before the failover."""
    for attempt in range(3):
        status, _, text = _login(url, new_interaction(pg_app, kind="mobile"), victim.nir, f"Pas-Le-Bon-{attempt}")
        assert status == 200
    assert LOCKED in text


def _fail_over_under_load(pg_app: Any, url: str, people: list[Any], victim: Any, kill: Callable[[], None],
                          promoted: Callable[[], bool], log: Any) -> Failover:
    """People log in (one thread each) while ``kill`` takes a master down, until ``promoted`` says its
    replica serves and 20 logins came 3 s after that; then the locked victim tries the right password."""
    # Enough fresh interactions for the whole run: a login uses one up in a few milliseconds, so the
    # clients pace themselves (as people would: 0.2 s after a refusal, 0.1 s after a success) instead of
    # draining the pool before the replica is promoted or in the 3 s after it. At most 40 logins/s.
    interactions = [new_interaction(pg_app, kind="mobile") for _ in range(900)]
    results: list[tuple[float, int, str]] = []
    refusals: list[str] = []
    stop = threading.Event()

    def load(nir: str) -> None:
        while not stop.is_set() and interactions:
            status, location, text = _login(url, interactions.pop(), nir, PASSWORD)
            results.append((time.monotonic(), status, location))
            if status == 200:
                refusals.append(_alert(text))
            stop.wait(0.1 if status == 303 else 0.2)

    workers = [threading.Thread(target=load, args=(person.nir,)) for person in people]
    for worker in workers:
        worker.start()
    try:
        wait_until(lambda: sum(r[1] == 303 for r in results) >= 10, timeout=30, what="logins before the kill")
        killed_at = time.monotonic()
        kill()
        wait_until(promoted, timeout=30, what="a replica is promoted")
        promoted_at = time.monotonic()
        try:
            wait_until(lambda: sum(r[0] > promoted_at + 3 for r in results) >= 20, timeout=60,
                       what="logins after the promotion")
        except AssertionError:
            raise AssertionError(f"promoted {promoted_at - killed_at:.1f} s after the kill, {len(results)} logins; "
                                 f"after the promotion: {[r[1] for r in results if r[0] > promoted_at][-30:]}, "
                                 f"{len(interactions)} interactions left, {refusals[-3:]}, "
                                 + log.read_text()[-2000:]) from None
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    # The lock set before the failover holds on the promoted replica: the right password is refused.
    after = _login(url, new_interaction(pg_app, kind="mobile"), victim.nir, PASSWORD)
    return Failover(results, refusals, killed_at, promoted_at, after)


def _assert_fail_closed_then_served(run: Failover, what: str) -> None:
    statuses = {r[1] for r in run.results}
    assert statuses <= {303, 503}, f"only successes and fail-closed 503s, got {statuses}; refusals: {run.refusals[:3]}"
    assert all(r[2] and not r[2].endswith("/connexion") for r in run.results if r[1] == 303)
    failed = [r[0] for r in run.results if r[1] == 503]
    back = min(r[0] for r in run.results if r[1] == 303 and r[0] > run.killed_at)
    print(f"\n{what}: {len(run.results)} logins, {len(failed)} refused with 503; the replica was promoted "
          f"{run.promoted_at - run.killed_at:.1f}s after the kill; first login served {back - run.killed_at:.1f}s "
          "after it")
    tail = [r[1] for r in run.results if r[0] > run.promoted_at + 3]
    assert len(tail) >= 20 and set(tail) == {303}, f"3 s after the promotion every login is served: {tail}"
    assert run.locked_after[0] == 200 and LOCKED in run.locked_after[2]


def _people(pg_app: Any) -> tuple[Any, list[Any]]:
    """The victim (to be locked) and one account per client thread: one person's parallel right-password
    logins each reserve a guess before the hash is checked, and a fourth in flight meets the lock the third
    set in advance (by design: parallel guesses never exceed the limit). The failover, not that rule, is
    what these tests are about."""
    victim = make_account(pg_app, nir=OTHER_NIR, email="bob@exemple.fr")
    return victim, [make_account(pg_app, nir=nir) for nir in (NIR, *(random_nir().value for _ in range(3)))]


def test_logins_resume_after_the_primary_dies_and_a_lock_set_before_still_holds(
        pg_app: Any, postgres_url: str, redis_prefix: str, redis_url: str, sentinels: SentinelSet,
        mailbox: Any, clock: Any, tmp_path: Any) -> None:
    victim, people = _people(pg_app)
    env = idp_env(postgres_url=postgres_url, redis_url=redis_url, redis_prefix=redis_prefix, mailbox=mailbox,
                  clock=clock, clock_file=tmp_path / "clock", IDP_REDIS_WAIT_REPLICAS="1")
    server = Gunicorn(env, workers=4, log_path=tmp_path / "gunicorn.log").start()
    old_primary = sentinels.primary
    assert old_primary is not None
    try:
        _lock(pg_app, server.url, victim)
        run = _fail_over_under_load(pg_app, server.url, people, victim, old_primary.kill,
                                    lambda: sentinels.current_primary_port() != old_primary.port,
                                    tmp_path / "gunicorn.log")
    finally:
        server.stop()
    _assert_fail_closed_then_served(run, "Sentinel failover")


@pytest.fixture
def cluster(tmp_path: Any) -> Iterator[ClusterProcesses]:
    """A private 3-master cluster, each master with a replica, for this test only (a master gets killed)."""
    started = ClusterProcesses(tmp_path / "cluster", replicas=1).start()
    yield started
    started.stop()


def test_cluster_logins_resume_after_a_master_dies_and_its_replica_keeps_the_lock(
        pg_app: Any, postgres_url: str, redis_prefix: str, redis_url: str, cluster: ClusterProcesses,
        mailbox: Any, clock: Any, tmp_path: Any) -> None:
    """Redis Cluster with replicas: the master that holds the locked account's counters is SIGKILLed under
    load. Logins touching its slots fail closed (503) until the cluster elects its replica, then every
    login is served again with no operator action, and the lock (acknowledged by the replica through WAIT
    on that master's connection) still refuses the right password."""
    from idp.extensions import hashtag

    victim, people = _people(pg_app)
    env = idp_env(postgres_url=postgres_url, redis_url=redis_url, redis_prefix=redis_prefix, mailbox=mailbox,
                  clock=clock, clock_file=tmp_path / "clock", IDP_REDIS_WAIT_REPLICAS="1")
    server = Gunicorn(env, workers=2, log_path=tmp_path / "gunicorn.log").start()
    lock_key = f"{redis_prefix}fail:pwd:{hashtag(victim.account_id)}"
    try:
        _lock(pg_app, server.url, victim)
        doomed = cluster.master_of(lock_key)
        assert doomed is not None and doomed.client().exists(lock_key), "the lock lives on the master about to die"
        run = _fail_over_under_load(pg_app, server.url, people, victim, doomed.kill,
                                    lambda: cluster.master_of(lock_key) not in (None, doomed),
                                    tmp_path / "gunicorn.log")
    finally:
        server.stop()
    _assert_fail_closed_then_served(run, "Cluster failover")
