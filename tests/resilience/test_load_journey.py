"""The whole journey under load: gunicorn with 4 workers (gthread) on PostgreSQL and the real Redis.

``IDP_LOAD_USERS`` people (default 50) run the full journey at the same time (see
:mod:`tests.resilience.journey`), each from its own address (``X-Forwarded-For`` behind one trusted
proxy hop); meanwhile three attackers fire 10 parallel wrong passwords each at three other accounts,
and five people present the same refresh token 5 times in parallel.

Expected, and asserted: no 5xx at all; every journey ends with tokens; every refresh token issued is
distinct (200 x 4 tokens) and stored once; a rotated token presented again is refused
(``invalid_grant``) and revokes its family; each attacker gets exactly 2 "erronées" answers, then the
lock (3rd failure) for the 8 others, and the right password is refused afterwards; of 5 parallel
presentations of one refresh token exactly one rotation wins. Figures are printed (``-s``) and written
to ``IDP_LOAD_REPORT`` when set (``scripts/load/journey.py`` runs this test and shows them).
"""

from __future__ import annotations

import html
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.conftest import csrf_from, register_identity, remember_secret
from tests.oidc.conftest import flow, make_rp
from tests.resilience.harness import Gunicorn, idp_env
from tests.resilience.journey import run_journey, wait_for_code

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(300)]

USERS = int(os.environ.get("IDP_LOAD_USERS", "50"))
PASSWORD = "Velo-Rouge-Tartine-42"
ATTACKERS = 3
ATTEMPTS = 10
remember_secret(PASSWORD)


def _nir(i: int) -> str:
    from idp.nir import Nir

    value = Nir.parse(f"1850578{i:06d}").value  # 13 characters; the key is computed
    remember_secret(value, value[:13])
    return value


@pytest.fixture
def stack(pg_app: Any, postgres_url: str, redis_prefix: str, mailbox: Any, clock: Any, tmp_path: Any) -> Any:
    """Seeded accounts and RP, and gunicorn -w 4 serving them."""
    from idp.accounts import service
    from idp.nir import Nir

    with pg_app.app_context():
        for i in range(USERS + ATTACKERS):
            register_identity(_nir(i))  # the registry is asked at every login
            service.create_account(Nir.parse(_nir(i)), PASSWORD, email=f"personne{i}@charge.test", email_validated=True)
    rp = make_rp(pg_app, "web")
    env = idp_env(postgres_url=postgres_url, redis_prefix=redis_prefix, mailbox=mailbox, clock=clock,
                  clock_file=tmp_path / "clock", IDP_PROXY_HOPS="1")
    server = Gunicorn(env, workers=4, log_path=tmp_path / "gunicorn.log").start()
    yield server, rp
    server.stop()


def _journey(server: Gunicorn, rp: Any, mailbox: Any, i: int) -> Any:
    f = flow(rp, scope="openid email")
    return run_journey(server.url, nir=_nir(i), password=PASSWORD, params=f.params, verifier=f.verifier,
                       client_id=rp.client_id, client_secret=rp.secret, address=f"10.1.{i // 250}.{i % 250 + 1}",
                       wait_code=lambda: wait_for_code(mailbox, f"personne{i}@charge.test"))


def _attack(server: Gunicorn, pg_app: Any, i: int) -> tuple[list[int], list[str], str]:
    """10 parallel wrong passwords at one account from one address, then the right password."""
    from tests.login.conftest import new_interaction

    browser = requests.Session()
    browser.headers["X-Forwarded-For"] = f"10.9.0.{i + 1}"
    browser.cookies.set("idp_interaction", new_interaction(pg_app), domain="127.0.0.1", path="/")
    token = csrf_from(browser.get(server.url + "/connexion").text)

    def wrong(_: int) -> requests.Response:
        return browser.post(server.url + "/connexion", data={"csrf_token": token, "nir": _nir(USERS + i),
                                                              "password": "mauvais-mot-de-passe"},
                            allow_redirects=False, timeout=60)

    with ThreadPoolExecutor(ATTEMPTS) as pool:
        answers = list(pool.map(wrong, range(ATTEMPTS)))
    right = browser.post(server.url + "/connexion", data={"csrf_token": token, "nir": _nir(USERS + i),
                                                          "password": PASSWORD}, allow_redirects=False, timeout=60)
    return [a.status_code for a in answers] + [right.status_code], \
        [html.unescape(a.text) for a in answers], html.unescape(right.text)


def _race_refresh(server: Gunicorn, rp: Any, refresh_token: str) -> list[requests.Response]:
    def one(_: int) -> requests.Response:
        return requests.post(server.url + "/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                             auth=(rp.client_id, rp.secret), timeout=60)

    with ThreadPoolExecutor(5) as pool:
        return list(pool.map(one, range(5)))


def test_fifty_concurrent_journeys_on_four_workers(pg_app: Any, stack: Any, mailbox: Any) -> None:
    server, rp = stack
    started = time.monotonic()
    with ThreadPoolExecutor(USERS + ATTACKERS) as pool:
        journeys = [pool.submit(_journey, server, rp, mailbox, i) for i in range(USERS)]
        attacks = [pool.submit(_attack, server, pg_app, i) for i in range(ATTACKERS)]
        results = [j.result(timeout=240) for j in journeys]
        attacked = [a.result(timeout=240) for a in attacks]
    elapsed = time.monotonic() - started

    # --- no 5xx, anywhere --------------------------------------------------------------------
    timings = [t for r in results for t in r.recorder.timings]
    attack_statuses = [s for statuses, _, _ in attacked for s in statuses]
    assert not [t for t in timings if t[1] >= 500], [t for t in timings if t[1] >= 500][:5]
    assert all(s < 500 for s in attack_statuses)

    # --- refresh tokens: all distinct, rotated ones refused, family revoked ------------------
    issued = [t for r in results for t in r.refresh_tokens]
    assert len(issued) == USERS * 4 and len(set(issued)) == len(issued), "a refresh token was issued twice"
    assert all(r.replay_status == 400 and r.replay_error == "invalid_grant" for r in results)
    assert all(r.after_replay_error == "invalid_grant" for r in results), "reuse did not revoke the family"
    _assert_stored_once(pg_app, issued)

    # --- exact limits under load: 2 "erronées", then locked, right password refused -----------
    for _, texts, right in attacked:
        assert sum("Les informations saisies sont erronées" in t for t in texts) == 2
        assert sum("bloqué jusqu'au" in t for t in texts) == ATTEMPTS - 2
        assert "bloqué jusqu'au" in right

    # --- one refresh token presented 5 times in parallel: one rotation wins -------------------
    race_statuses = _refresh_races(server, rp, mailbox)
    _report(elapsed, timings, attack_statuses, race_statuses)


def _refresh_races(server: Gunicorn, rp: Any, mailbox: Any) -> list[int]:
    """Five people log in again (their 2nd login: the biometric offer is answered "Plus tard") and
    present their new refresh token 5 times in parallel: exactly one rotation may win."""
    statuses: list[int] = []
    for i in range(5):
        f = flow(rp, scope="openid")
        mailbox.messages[:] = [m for m in mailbox.messages if f"personne{i}@charge.test" not in m["to"]]
        token = run_journey(server.url, nir=_nir(i), password=PASSWORD, params=f.params, verifier=f.verifier,
                            client_id=rp.client_id, client_secret=rp.secret, address=f"10.2.0.{i + 1}",
                            wait_code=lambda i=i: wait_for_code(mailbox, f"personne{i}@charge.test"),
                            rotations=0, replay=False).refresh_tokens[0]
        answers = _race_refresh(server, rp, token)
        statuses += [a.status_code for a in answers]
        assert sum(a.status_code == 200 for a in answers) == 1, [a.text[:80] for a in answers]
        assert all(a.json().get("error") == "invalid_grant" for a in answers if a.status_code != 200), \
            [(a.status_code, a.text[:120]) for a in answers]
    return statuses


def _assert_stored_once(pg_app: Any, issued: list[str]) -> None:
    """Every token the clients received is in the database exactly once; families hold 4 tokens each."""
    from sqlalchemy import func, select

    from idp.crypto import hash_token
    from idp.extensions import db
    from idp.oidc.models import RefreshToken

    with pg_app.app_context():
        hashes = set(db.session.scalars(select(RefreshToken.token_hash)))
        assert {hash_token(t) for t in issued} <= hashes, "a refresh token a client holds is not stored"
        sizes = db.session.execute(select(RefreshToken.family_id, func.count()).group_by(RefreshToken.family_id)).all()
        assert sorted(n for _, n in sizes) == [4] * USERS
        db.session.remove()


def _report(elapsed: float, timings: list[tuple[str, int, float]], attack_statuses: list[int],
            race_statuses: list[int]) -> None:
    durations = sorted(t[2] for t in timings)
    per_step: dict[str, list[float]] = {}
    for step, _, seconds in timings:
        per_step.setdefault(step, []).append(seconds)
    figures = {
        "users": USERS, "workers": 4, "journey_requests": len(timings),
        "attack_requests": len(attack_statuses), "refresh_race_requests": len(race_statuses),
        "wall_seconds": round(elapsed, 2), "requests_per_second": round(len(timings) / elapsed, 1),
        "p50_ms": round(statistics.median(durations) * 1000, 1),
        "p95_ms": round(durations[int(len(durations) * 0.95) - 1] * 1000, 1),
        "max_ms": round(durations[-1] * 1000, 1), "status_5xx": 0,
        "p95_ms_by_step": {k: round(sorted(v)[int(len(v) * 0.95) - 1] * 1000, 1) for k, v in per_step.items()},
    }
    print("\nLOAD FIGURES " + json.dumps(figures))
    target = os.environ.get("IDP_LOAD_REPORT")
    if target:
        with open(target, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
