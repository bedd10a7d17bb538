"""PostgreSQL down: logins and the token endpoint fail closed with a 503, then recover by themselves.

The IdP reaches the run's PostgreSQL database through a TCP proxy that the test cuts (every open
connection reset, new ones refused) and restores; Redis is the real server.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import REDIS_URL, csrf_from
from tests.login.conftest import NIR, PASSWORD, bind, make_account, new_interaction
from tests.oidc.conftest import flow, login, make_person, make_rp, redeem
from tests.resilience.conftest import assert_unavailable_page
from tests.resilience.harness import TcpProxy

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def db_proxy(pg_app: Any, postgres_url: str) -> Any:
    """A cuttable TCP path to the test database (``pg_app`` creates the schema and cleans up)."""
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    proxy.cut()


def _proxied_app(make_app: Any, url: str, redis_prefix: str) -> Any:
    return make_app(database_url=url, redis_url=REDIS_URL, redis_prefix=redis_prefix)


def _recovers(action: Any, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        answer = action()
        if answer.status_code != 503 or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def test_login_fails_closed_while_the_database_is_down(make_app: Any, pg_app: Any, db_proxy: Any,
                                                       redis_prefix: str, mailbox: Any) -> None:
    """The database goes away between the login page and the password submission.

    Expected: the submission answers the 503 French page "Service momentanément indisponible" (no
    traceback, Retry-After), no failure is counted against the account (a later right password is not
    refused or locked); once the database is back the same app logs the person in without restart."""
    proxy, url = db_proxy
    app = _proxied_app(make_app, url, redis_prefix)
    make_account(app)
    client = app.test_client()
    bind(client, new_interaction(app))
    token = csrf_from(client.get("/connexion").data)
    proxy.cut()
    for _ in range(3):  # three tries during the outage: none may count as a wrong password
        assert_unavailable_page(client.post("/connexion", data={"csrf_token": token, "nir": NIR, "password": PASSWORD}))
    proxy.start()
    done = _recovers(lambda: client.post("/connexion", data={"csrf_token": token, "nir": NIR, "password": PASSWORD}))
    assert done.status_code == 303 and done.headers["Location"].endswith("/connexion/code")


def test_token_endpoint_answers_503_json_and_the_code_survives_the_outage(make_app: Any, pg_app: Any, db_proxy: Any,
                                                                         redis_prefix: str) -> None:
    """The database goes away just before the RP redeems its authorization code.

    Expected: /token answers 503 JSON (``temporarily_unavailable``, never a 500 or an HTML page); the
    client cannot be authenticated so the code is not consumed, and once the database is back the same
    code is redeemed (within its 60 s life): the outage loses nothing."""
    proxy, url = db_proxy
    app = _proxied_app(make_app, url, redis_prefix)
    person = make_person(app)
    rp = make_rp(app, "web")
    client = app.test_client()
    f = flow(rp)
    code = login(app, client, person, f)["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": f.params["redirect_uri"],
            "code_verifier": f.verifier}
    proxy.cut()
    down = client.post("/token", data=data, auth=(rp.client_id, rp.secret))  # web RPs use client_secret_basic
    assert down.status_code == 503 and down.json["error"] == "temporarily_unavailable", down.data[:300]
    proxy.start()
    back = _recovers(lambda: redeem(client, rp, code, f))
    assert back.status_code == 200 and "refresh_token" in back.json, back.data[:300]


def test_an_exhausted_connection_pool_answers_503_and_the_code_survives(make_app: Any, pg_app: Any,
                                                                        postgres_url: str, redis_prefix: str) -> None:
    """Every pooled connection busy past ``pool_timeout`` (an overload): the token endpoint and userinfo
    answer 503 JSON ``temporarily_unavailable`` (a dependency failure, never a 500), and the code taken
    by the failed exchange is given back for the RP's retry."""
    from idp.extensions import db

    app = make_app(database_url=postgres_url, redis_url=REDIS_URL, redis_prefix=redis_prefix,
                   SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.3})
    person, rp = make_person(app), make_rp(app, "web")
    client = app.test_client()
    f = flow(rp, scope="openid email")
    tokens = redeem(client, rp, login(app, client, person, f)["code"], f).json
    f2 = flow(rp, scope="openid email")
    code = login(app, app.test_client(), person, f2)["code"]  # another browser: no single sign-on
    with app.app_context():
        held = db.engine.connect()  # the pool's only connection
    try:
        busy = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert busy.status_code == 503 and busy.json["error"] == "temporarily_unavailable", busy.data[:300]
        exchange = redeem(client, rp, code, f2)
        assert exchange.status_code == 503 and exchange.json["error"] == "temporarily_unavailable", exchange.data[:300]
    finally:
        held.close()
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code == 200
    assert redeem(client, rp, code, f2).status_code == 200


def test_a_connection_lost_under_the_driver_level_statements_is_a_503_then_dropped_from_the_pool(
        make_app: Any, pg_app: Any, db_proxy: Any, redis_prefix: str) -> None:
    """Every pooled connection is reset while idle (the proxy cuts them, then accepts new ones at once): the
    next userinfo (its account read runs on the driver's cursor of a pooled connection) and the next refresh
    (its rotation runs on the driver's cursor of the Session's connection) answer 503 JSON
    ``temporarily_unavailable`` (a dependency failure, never a 500); the dead connections are dropped, so the
    retries succeed, and the refresh token whose rotation failed still works (it is not taken for a reuse)."""
    proxy, url = db_proxy
    app = _proxied_app(make_app, url, redis_prefix)
    person, rp = make_person(app), make_rp(app, "web")
    client = app.test_client()
    f = flow(rp, scope="openid email")
    tokens = redeem(client, rp, login(app, client, person, f)["code"], f).json
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/userinfo", headers=bearer).status_code == 200
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    for attempt in ("userinfo", "refresh"):
        assert client.get("/userinfo", headers=bearer).status_code == 200  # a pooled connection, idle
        proxy.cut()
        proxy.start()
        if attempt == "userinfo":
            down = client.get("/userinfo", headers=bearer)
        else:
            down = client.post("/token", data=refresh, auth=(rp.client_id, rp.secret))
        assert down.status_code == 503 and down.json["error"] == "temporarily_unavailable", (attempt, down.data[:300])
    assert client.get("/userinfo", headers=bearer).status_code == 200
    rotated = client.post("/token", data=refresh, auth=(rp.client_id, rp.secret))
    assert rotated.status_code == 200 and rotated.json["refresh_token"] != tokens["refresh_token"], rotated.data[:300]
