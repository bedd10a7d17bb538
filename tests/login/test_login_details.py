"""Review findings on the login pages: CSRF recovery of POST-only routes, messages that follow the
settings, one account query per password, no URL-map walk per policy decision, code e-mail failures."""

from __future__ import annotations

import html

import pytest

from tests.conftest import csrf_from, remember_secret
from tests.login.conftest import NIR, PASSWORD, bind, make_account, new_interaction, post_code, post_identify


def t(response):
    return html.unescape(response.get_data(as_text=True))


@pytest.fixture
def web(app, client):
    bind(client, new_interaction(app))
    return app, client, make_account(app)


@pytest.mark.parametrize(("path", "page", "identified"), [("/connexion/oublier-numero", "/connexion", False),
                                                          ("/connexion/code/nouveau", "/connexion/code", True)])
def test_a_stale_csrf_token_on_a_post_only_route_redirects_to_its_page_not_to_a_405(web, mailbox, path, page,
                                                                                   identified):
    _, client, _ = web
    if identified:
        post_identify(client)
    response = client.post(path, data={"csrf_token": "stale"})
    assert response.status_code == 303 and response.headers["Location"] == f"{page}?renouvele=1"
    followed = client.get(response.headers["Location"])
    assert followed.status_code == 200 and "Votre session a été renouvelée" in t(followed)


def test_the_identify_page_links_to_the_accounts_pages(web):
    _, client, _ = web
    page = t(client.get("/connexion"))
    for href in ('href="/mot-de-passe-oublie"', 'href="/compte/creation"', 'href="/aide"'):
        assert href in page


@pytest.mark.parametrize("app_config", [{"max_failed_attempts": 5, "email_code_ttl": 600}])
def test_messages_state_the_configured_attempts_and_code_validity(web, mailbox, clock):
    _, client, _ = web
    wrong = t(post_identify(client, NIR, "Pas-Le-Bon-2"))
    assert "Attention : 5 essais infructueux bloquent l'accès au service." in wrong
    for _ in range(4):
        locked = t(post_identify(client, NIR, "Pas-Le-Bon-2"))
    assert "Suite à 5 essais infructueux, l'accès au service est bloqué jusqu'au 05/01/2026 - 14h45" in locked
    clock.advance(minutes=15)
    post_identify(client)
    assert "Ce code est valable 10 minutes" in t(client.get("/connexion/code"))
    clock.advance(minutes=10)
    assert "il doit être saisi dans les 10 minutes suivant son envoi" in t(post_code(client, "123456"))


def test_default_messages_keep_the_seed_wording(web, mailbox):
    _, client, _ = web
    assert "Attention : 3 essais infructueux bloquent l'accès au service." in t(post_identify(client, NIR, "Faux-2"))
    post_identify(client)
    assert "Ce code est valable 15 minutes" in t(client.get("/connexion/code"))


def test_the_password_step_loads_the_account_once(web, mailbox):
    from sqlalchemy import event

    from idp.extensions import db

    app, client, _ = web
    token = csrf_from(client.get("/connexion").data)
    statements: list[str] = []
    with app.app_context():
        engine = db.engine

    def seen(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        client.post("/connexion", data={"csrf_token": token, "nir": NIR, "password": PASSWORD, "trusted_browser": ""})
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    lookups = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "FROM accounts" in s
               and "nir_hmac" in s.split("WHERE", 1)[-1]]
    assert len(lookups) == 1, lookups


def test_the_policy_decides_without_walking_the_url_map(web, mailbox, monkeypatch):
    app, client, _ = web

    def walked(*_a, **_k):
        raise AssertionError("url_map walked")

    monkeypatch.setattr(app.url_map, "iter_rules", walked)
    assert post_identify(client).headers["Location"] == "/connexion/code"
    assert client.get("/connexion/code").status_code == 200


def test_an_unexpected_error_while_mailing_a_code_leaves_no_code_behind(web, monkeypatch):
    from idp.accounts.models import Account
    from idp.extensions import db
    from idp.mfa import codes

    app, _, person = web

    def broken(*_a, **_k):
        raise RuntimeError("template bug")

    monkeypatch.setattr(codes, "send_mail", broken)
    with app.test_request_context():
        account = db.session.get(Account, person.account_id)
        with pytest.raises(RuntimeError):
            codes.send_code("tx-1", account)
        assert codes.code_expiry("tx-1") is None


remember_secret("Pas-Le-Bon-2", "Faux-2")
