"""Limits hold on a multi-worker server: gunicorn with 4 workers on PostgreSQL and a real Redis, in each
topology: one server, a 3-master Redis Cluster, a Sentinel-managed primary/replica (tests/redis/topologies.py).

20 parallel wrong codes never count, nor check, more than the 3 allowed before the lock; 12 parallel
passwords never check more than 3 either; 20 parallel code requests never send more than the 5 codes
of the quota; 10 parallel presentations of one refresh token rotate it once. "Checked" guesses are read
from the audit trail (one event per password or code compared).
"""

from __future__ import annotations

import html
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import csrf_from, redis_topology, remember_secret
from tests.login.conftest import NIR, OTHER_NIR, PASSWORD, make_account, new_interaction
from tests.resilience.harness import Gunicorn, idp_env

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

WRONG = "Les informations saisies sont erronées. Merci de vérifier votre saisie."
PARALLEL = 20


@pytest.fixture(params=["redis", "cluster", "sentinel"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """Every test here runs on the shared Redis, a real 3-master Cluster and a Sentinel-managed set."""
    return redis_topology(request)


@pytest.fixture
def server(request, pg_app, postgres_url, redis_prefix, redis_url, mailbox, clock, tmp_path):
    """gunicorn -w 4 on the test database and ``redis_url``; its clock is the test's frozen clock. On the
    Sentinel set, security writes also wait for the replica's acknowledgement (IDP_REDIS_WAIT_REPLICAS=1)."""
    extra = {"IDP_REDIS_WAIT_REPLICAS": "1"} if redis_url.startswith("redis+sentinel") else {}
    env = idp_env(postgres_url=postgres_url, redis_url=redis_url, redis_prefix=redis_prefix, mailbox=mailbox,
                  clock=clock, clock_file=tmp_path / "clock", **extra)
    gunicorn = Gunicorn(env, workers=4, log_path=tmp_path / "gunicorn.log").start()
    try:
        yield gunicorn.url
    finally:
        gunicorn.stop()


def _signed_in_to_code_step(app, url: str, nir: str) -> tuple[dict[str, str], str]:
    """Cookies and CSRF token of a browser that passed the password and got its first code."""
    browser = requests.Session()
    browser.cookies.set("idp_interaction", new_interaction(app), domain="127.0.0.1", path="/")
    token = csrf_from(browser.get(url + "/connexion").text)
    response = browser.post(url + "/connexion", data={"csrf_token": token, "nir": nir, "password": PASSWORD})
    assert response.url.endswith("/connexion/code"), response.url
    return browser.cookies.get_dict(), csrf_from(response.text)


def _fire(url: str, cookies: dict[str, str], data: dict[str, str]) -> list[str]:
    def one(_: int) -> str:
        answer = requests.post(url, data=data, cookies=cookies, allow_redirects=False, timeout=30)
        return html.unescape(answer.text) if answer.status_code == 200 else str(answer.status_code)

    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(one, range(PARALLEL)))


def _audited(app, *events: str) -> int:
    from sqlalchemy import func, select

    from idp.audit import AuditEvent
    from idp.extensions import db

    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.event.in_(events)))


def test_parallel_wrong_codes_never_count_more_than_the_limit(pg_app, server, mailbox):
    make_account(pg_app)
    cookies, token = _signed_in_to_code_step(pg_app, server, NIR)
    code = mailbox.code()
    wrong = "000000" if code != "000000" else "111111"
    answers = _fire(server + "/connexion/code", cookies, {"csrf_token": token, "code": wrong})
    plain_wrong = [a for a in answers if WRONG in a]
    locked = [a for a in answers if "bloqué jusqu'au" in a]
    # Failures 1 and 2 say "erronées"; the 3rd locks; every other one meets the lock.
    assert len(plain_wrong) == 2, [a[:40] for a in answers if a not in plain_wrong + locked]
    assert len(locked) == PARALLEL - 2
    assert _audited(pg_app, "code_failed", "code_ok") == 3  # at most 3 guesses were compared, not only counted
    # The right code is refused while the lock holds.
    right = requests.post(server + "/connexion/code", data={"csrf_token": token, "code": code}, cookies=cookies,
                          allow_redirects=False, timeout=30)
    assert right.status_code == 200 and "bloqué jusqu'au" in html.unescape(right.text)


def test_parallel_passwords_check_at_most_the_limit_and_the_right_one_sent_last_is_locked_out(pg_app, server):
    make_account(pg_app)
    browser = requests.Session()
    browser.cookies.set("idp_interaction", new_interaction(pg_app), domain="127.0.0.1", path="/")
    token = csrf_from(browser.get(server + "/connexion").text)
    cookies = browser.cookies.get_dict()

    def one(index: int) -> str:
        right = index == 11
        if right:
            time.sleep(0.3)  # sent last
        answer = requests.post(server + "/connexion", cookies=cookies, allow_redirects=False, timeout=30,
                               data={"csrf_token": token, "nir": NIR,
                                     "password": PASSWORD if right else f"Pas-Le-Bon-{index}"})
        return html.unescape(answer.text) if answer.status_code == 200 else str(answer.status_code)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(one, range(12)))
    assert _audited(pg_app, "login_password_failed", "login_password_ok") == 3  # 3 checked, 9 refused unchecked
    assert sum(WRONG in a for a in answers) == 2
    assert sum("bloqué jusqu'au" in a for a in answers) == 10
    assert "bloqué jusqu'au" in answers[11]


def test_parallel_code_requests_never_send_more_than_the_quota(pg_app, server, mailbox):
    make_account(pg_app, nir=OTHER_NIR, email="bob@exemple.fr")
    cookies, token = _signed_in_to_code_step(pg_app, server, OTHER_NIR)
    answers = _fire(server + "/connexion/code/nouveau", cookies, {"csrf_token": token})
    time.sleep(0.5)  # let the SMTP sink finish storing the last message
    sent = [m for m in mailbox.messages if "bob@exemple.fr" in m["to"]]
    assert len(sent) == 5  # the first code at the password step, then 4 of the 20 requests
    assert sum(a == "303" for a in answers) == 4
    assert sum("Le nombre maximum de demandes de code a été atteint" in a for a in answers) == PARALLEL - 4


def test_parallel_presentations_of_one_refresh_token_rotate_it_once(pg_app, server):
    from sqlalchemy import select

    from idp.extensions import db
    from idp.oidc.models import RefreshToken
    from tests.oidc.conftest import flow, login, make_person, make_rp, redeem

    person, rp = make_person(pg_app), make_rp(pg_app, "web")
    f = flow(rp)
    client = pg_app.test_client()
    first = redeem(client, rp, login(pg_app, client, person, f)["code"], f).json["refresh_token"]

    def present(_: int) -> requests.Response:
        return requests.post(server + "/token", auth=(rp.client_id, rp.secret), timeout=30,
                             data={"grant_type": "refresh_token", "refresh_token": first})

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(present, range(10)))
    assert sorted(a.status_code for a in answers) == [200] + [400] * 9, [a.text[:80] for a in answers]
    assert all(a.json()["error"] == "invalid_grant" for a in answers if a.status_code == 400)
    with pg_app.app_context():  # one successor issued, never two; the reuse revoked the family
        family = db.session.scalars(select(RefreshToken)).all()
        assert len(family) == 2 and all(r.revoked for r in family)


remember_secret(*(f"Pas-Le-Bon-{index}" for index in range(11)))
