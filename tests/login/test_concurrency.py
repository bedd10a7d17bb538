"""Limits hold on a multi-worker server: gunicorn with 4 workers on PostgreSQL and the real Redis.

20 parallel wrong codes never count, nor check, more than the 3 allowed before the lock; 12 parallel
passwords never check more than 3 either; 20 parallel code requests never send more than the 5 codes
of the quota. "Checked" guesses are read from the audit trail (one event per password or code compared).
"""

from __future__ import annotations

import html
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from tests.conftest import REDIS_URL, TEST_SECRET, csrf_from, free_port, remember_secret
from tests.login.conftest import NIR, OTHER_NIR, PASSWORD, make_account, new_interaction

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

WRONG = "Les informations saisies sont erronées. Merci de vérifier votre saisie."
PARALLEL = 20


@pytest.fixture
def server(pg_app, postgres_url, redis_prefix, mailbox, clock, tmp_path):
    """gunicorn -w 4 on the test database and Redis; its clock is the test's frozen clock (IDP_CLOCK_FILE)."""
    clock_file = tmp_path / "clock"
    clock_file.write_text(str((clock.now() - datetime.now(UTC)).total_seconds()))
    port = free_port()
    env = {**os.environ, "IDP_ENV": "development", "IDP_ISSUER": f"http://127.0.0.1:{port}",
           "IDP_SECRET_KEY": TEST_SECRET, "IDP_DATABASE_URL": postgres_url, "IDP_REDIS_URL": REDIS_URL,
           "IDP_REDIS_PREFIX": redis_prefix, "IDP_SMTP_HOST": mailbox.host, "IDP_SMTP_PORT": str(mailbox.port),
           "IDP_ARGON2_TIME_COST": "1", "IDP_ARGON2_MEMORY_COST": "1024", "IDP_CLOCK_FILE": str(clock_file),
           "IDP_LOG_LEVEL": "WARNING"}
    gunicorn = Path(sys.executable).parent / "gunicorn"
    process = subprocess.Popen([str(gunicorn), "idp:create_app()", "-w", "4", "-b", f"127.0.0.1:{port}",
                                "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # still booting
                pass
            assert time.monotonic() < deadline and process.poll() is None, "gunicorn did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


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


remember_secret(*(f"Pas-Le-Bon-{index}" for index in range(11)))
