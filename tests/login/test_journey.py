"""The login journey through the test client, on SQLite + fakeredis and PostgreSQL + Redis (seed steps 0-3, cases 1-7)."""

from __future__ import annotations

import html

import pytest

from idp.login import assurance
from tests.conftest import csrf_from, remember_secret
from tests.login.conftest import (
    EMAIL,
    NIR,
    NIR_SPACED,
    OTHER_NIR,
    PASSWORD,
    UNKNOWN_NIR,
    bind,
    finished_session,
    make_account,
    new_interaction,
    post_code,
    post_identify,
    post_resend,
    rp_answer,
)


def t(response):
    """The page text as a person reads it (HTML entities decoded)."""
    return html.unescape(response.get_data(as_text=True))


WRONG = "Les informations saisies sont erronées. Merci de vérifier votre saisie."
WARNING = "Attention : 3 essais infructueux bloquent l'accès au service."


@pytest.fixture
def web(any_app):
    """A client bound to a fresh web interaction, and the account."""
    client = any_app.test_client()
    bind(client, new_interaction(any_app))
    return any_app, client, make_account(any_app)


def _interaction(app, client):
    from idp.login.interaction import interactions

    with app.test_request_context():
        return interactions.get(client.get_cookie("idp_interaction", domain="localhost").value)


def _amr(interaction):
    return assurance.amr(interaction.proof)  # plain data: no application context needed


def _acr(app, interaction):
    with app.app_context():
        return assurance.acr(interaction.proof)


def test_password_then_emailed_code_finishes_with_pwd_mail_mfa(web, mailbox):
    app, client, _ = web
    response = post_identify(client, NIR_SPACED)
    assert response.status_code == 303 and response.headers["Location"] == "/connexion/code"
    page = t(client.get("/connexion/code"))
    assert "a***@g***.com" in page and "Vérifiez votre dossier SPAM ou indésirable." in page
    mail = mailbox.last(EMAIL)
    assert "code de sécurité" in mail["subject"] and "valable 15 minutes" in mail["body"]
    response = post_code(client, mailbox.code())
    assert rp_answer(response)["state"] == "state-of-the-rp"  # the last step answers the RP at once
    done = finished_session(app, client)
    assert _amr(done) == ["pwd", "mail", "mfa"] and assurance.auth_time(done.proof)
    assert _acr(app, done) == "eidas1"  # default mapping: e-mail is no out-of-band authenticator
    assert client.get_cookie("idp_interaction", domain="localhost") is None  # consumed, its cookie cleared


def test_interaction_id_changes_after_the_password(web, mailbox):
    _, client, _ = web
    before = client.get_cookie("idp_interaction", domain="localhost").value
    post_identify(client)
    assert client.get_cookie("idp_interaction", domain="localhost").value != before


@pytest.mark.parametrize("nir", [NIR, UNKNOWN_NIR])
def test_wrong_password_and_unknown_nir_get_the_same_answer(web, nir):
    _, client, _ = web
    response = post_identify(client, nir, "Pas-Le-Bon-Mot-2-Passe")
    assert response.status_code == 200
    assert WRONG in t(response) and WARNING in t(response)


@pytest.mark.parametrize("nir", [NIR, UNKNOWN_NIR])
def test_three_wrong_passwords_lock_fifteen_minutes_then_the_lock_lifts(web, clock, nir):
    _, client, _ = web
    for _ in range(2):
        assert WRONG in t(post_identify(client, nir, "Pas-Le-Bon-Mot-2-Passe"))
    locked = t(post_identify(client, nir, "Pas-Le-Bon-Mot-2-Passe"))
    assert "bloqué jusqu'au 05/01/2026 - 14h45 (heure de Paris)" in locked
    # Even the right password is refused while the lock holds.
    assert "bloqué jusqu'au" in t(post_identify(client, nir, PASSWORD))
    clock.advance(minutes=15)
    after = post_identify(client, nir, PASSWORD)
    if nir == NIR:
        assert after.status_code == 303
    else:
        assert WRONG in t(after)


def test_a_success_resets_the_password_counter(web, mailbox):
    _, client, _ = web
    for _ in range(2):
        post_identify(client, NIR, "Pas-Le-Bon-Mot-2-Passe")
    assert post_identify(client, NIR, PASSWORD).status_code == 303
    app, _, _ = web
    client2 = app.test_client()
    bind(client2, new_interaction(app))
    for _ in range(2):
        assert WRONG in t(post_identify(client2, NIR, "Pas-Le-Bon-Mot-2-Passe"))


@pytest.mark.parametrize("bad", ["", "123", "1850578006048 99", "ABCDEFGHIJKLM", "1" * 40])
def test_malformed_nir_is_refused_on_its_field(web, bad):
    _, client, _ = web
    response = post_identify(client, bad)
    assert 'aria-describedby="nir-error"' in t(response) and WRONG not in t(response)


def test_wrong_code_says_so_and_three_lock_the_account_even_with_new_codes(web, mailbox, clock):
    _, client, _ = web
    post_identify(client)
    first = post_code(client, "000000" if mailbox.code() != "000000" else "111111")
    assert WRONG in t(first) and WARNING in t(first)
    assert post_resend(client).status_code == 303  # a new code does not reset the counter
    code = mailbox.code()
    wrong = "000000" if code != "000000" else "111111"
    assert WRONG in t(post_code(client, wrong))
    locked = t(post_code(client, wrong))
    assert "bloqué jusqu'au 05/01/2026 - 14h45 (heure de Paris)" in locked
    assert "bloqué jusqu'au" in t(post_code(client, code))  # the right code is refused while locked
    clock.advance(minutes=15)
    post_resend(client)
    assert post_code(client, mailbox.code()).status_code == 303


def test_expired_code_is_refused_and_a_new_code_works(web, mailbox, clock):
    _, client, _ = web
    post_identify(client)
    old = mailbox.code()
    clock.advance(minutes=15)
    response = post_code(client, old)
    assert "a expiré" in t(response) and "Recevoir un nouveau code de sécurité" in t(response)
    post_resend(client)
    assert post_code(client, mailbox.code()).status_code == 303


def test_a_code_is_single_use_and_bound_to_its_interaction(web, mailbox):
    app, client, _ = web
    post_identify(client)
    code = mailbox.code()
    other = app.test_client()
    bind(other, new_interaction(app))
    post_identify(other)
    other_code = mailbox.code()
    assert WRONG in t(post_code(client, other_code)) or other_code == code
    assert post_code(client, code).status_code == 303


def test_sixth_code_request_blocks_code_requests_for_one_hour(web, mailbox, clock):
    app, client, _ = web
    post_identify(client)
    for _ in range(4):
        assert post_resend(client).status_code == 303
    assert len(mailbox.messages) == 5
    blocked = t(post_resend(client))
    assert ("Le nombre maximum de demandes de code a été atteint. L'accès au service est bloqué jusqu'au "
            "05/01/2026 - 15h30 (heure de Paris).") in blocked
    assert len(mailbox.messages) == 5
    clock.advance(minutes=59)  # a new login (the interaction lives 30 minutes) is still blocked
    bind(client, new_interaction(app))
    assert post_identify(client).headers["Location"] == "/connexion/code"
    assert "nombre maximum" in t(client.get("/connexion/code"))
    assert "nombre maximum" in t(post_resend(client)) and len(mailbox.messages) == 5
    clock.advance(minutes=1)
    assert post_resend(client).status_code == 303 and len(mailbox.messages) == 6


def test_quota_is_a_sliding_hour(web, mailbox, clock):
    app, client, _ = web
    post_identify(client)
    clock.advance(minutes=20)
    for _ in range(4):
        post_resend(client)
    clock.advance(minutes=41)  # the first code left the window, the other four are still in it
    bind(client, new_interaction(app))
    assert post_identify(client).status_code == 303 and len(mailbox.messages) == 6
    assert "nombre maximum" in t(post_resend(client))


def test_no_validated_email_asks_for_one_first_and_the_login_stays_single_factor(any_app, mailbox):
    """Seed case 1: the person enters and validates an e-mail. Validating the address is no second factor
    (whoever has only the password could bind their own mailbox, issue 11): no security code is sent to the
    address just bound, and the login finishes single-factor (password acr, amr pwd)."""
    make_account(any_app, email=None, validated=False)
    client = any_app.test_client()
    bind(client, new_interaction(any_app))
    assert post_identify(client).headers["Location"] == "/connexion/email"
    page = client.get("/connexion/email")
    client.post("/connexion/email", data={"csrf_token": csrf_from(page.data), "action": "send", "email": EMAIL})
    validation = mailbox.code(EMAIL)
    page = client.get("/connexion/email")
    assert "a***@g***.com" in t(page)
    mailbox.clear()
    response = client.post("/connexion/email", data={"csrf_token": csrf_from(page.data), "action": "confirm",
                                                     "code": validation})
    rp_answer(response)
    assert not mailbox.messages  # no "security code" to the address just bound
    done = finished_session(any_app, client)
    assert _amr(done) == ["pwd"] and _acr(any_app, done) == "eidas1"


def test_trusted_browser_skips_the_code_for_six_months_only_for_its_account(web, mailbox, clock):
    app, client, _ = web
    post_identify(client, trusted_browser="1")
    post_code(client, mailbox.code())
    assert client.get_cookie("idp_trusted", domain="localhost") is not None
    bind(client, new_interaction(app))
    mailbox.clear()
    # No code on the trusted browser; being the 2nd login, the biometric offer (webauthn area) comes next.
    assert post_identify(client).headers["Location"] == "/biometrie/proposition"
    assert _amr(_interaction(app, client)) == ["pwd"] and not mailbox.messages
    # Another account on the same browser still gets a code.
    make_account(app, nir=OTHER_NIR, email="bob@exemple.fr")
    bind(client, new_interaction(app))
    assert post_identify(client, OTHER_NIR).headers["Location"] == "/connexion/code"
    clock.advance(days=181)
    bind(client, new_interaction(app))
    assert post_identify(client).headers["Location"] == "/connexion/code"


def test_forged_trusted_cookie_is_cleared_and_the_code_asked(web, mailbox):
    _, client, _ = web
    client.set_cookie("idp_trusted", "forged-value", domain="localhost")
    assert post_identify(client).headers["Location"] == "/connexion/code"
    assert client.get_cookie("idp_trusted", domain="localhost") is None


def test_revoked_trusted_browser_asks_the_code_again(web, mailbox):
    from idp.mfa import trusted_browser

    app, client, person = web
    post_identify(client, trusted_browser="1")
    post_code(client, mailbox.code())
    with app.app_context():
        assert trusted_browser.revoke_all(person.account_id) == 1
    bind(client, new_interaction(app))
    assert post_identify(client).headers["Location"] == "/connexion/code"


def test_mobile_app_never_gets_a_code(any_app, mailbox):
    make_account(any_app)
    client = any_app.test_client()
    bind(client, new_interaction(any_app, kind="mobile"))
    assert "J'utilise mon ordinateur personnel" not in t(client.get("/connexion"))
    rp_answer(post_identify(client))  # the password alone finishes the app's login: the RP answered at once
    assert not mailbox.messages
    assert client.get_cookie("idp_interaction", domain="localhost") is None  # consumed, not re-set after rotation


@pytest.mark.parametrize(("require", "acr_values", "where"), [
    (True, "", "/connexion/code"), (False, "", None), (False, "eidas2", "/connexion/code"),
])
def test_federation_follows_its_client_setting_and_acr_values(any_app, mailbox, require, acr_values, where):
    make_account(any_app)
    client = any_app.test_client()
    request = {"scope": "openid", "acr_values": acr_values} if acr_values else None
    bind(client, new_interaction(any_app, kind="federation", request=request, require_email_code=require))
    answer = post_identify(client)
    if where is None:
        rp_answer(answer)  # no code asked: the RP is answered at once
    else:
        assert answer.headers["Location"] == where


def test_remembered_nir_is_shown_masked_and_can_be_forgotten(web, mailbox):
    app, client, _ = web
    post_identify(client, remember_nir="1")
    cookie = client.get_cookie("idp_nir", domain="localhost").value
    assert NIR not in cookie
    bind(client, new_interaction(app))
    page = t(client.get("/connexion"))
    assert "1 ** ** ** *** *** 30" in page and 'name="nir"' not in page
    token = csrf_from(page)
    assert client.post("/connexion", data={"csrf_token": token, "password": PASSWORD}).status_code == 303
    client.post("/connexion/oublier-numero", data={"csrf_token": token})
    assert client.get_cookie("idp_nir", domain="localhost") is None
    bind(client, new_interaction(app))
    assert 'name="nir"' in t(client.get("/connexion"))


@pytest.mark.parametrize("value", ["garbage", "A" * 300, "eyJub3QiOiJvdXJzIn0="])
def test_corrupt_remembered_nir_is_cleared_silently(web, value):
    _, client, _ = web
    client.set_cookie("idp_nir", value, domain="localhost")
    response = client.get("/connexion")
    assert response.status_code == 200 and 'name="nir"' in t(response)
    assert client.get_cookie("idp_nir", domain="localhost") is None


@pytest.mark.parametrize("cookie", [None, "unknown-id", "x" * 500])
def test_without_a_live_interaction_the_page_says_the_session_expired(any_app, cookie):
    client = any_app.test_client()
    if cookie:
        client.set_cookie("idp_interaction", cookie, domain="localhost")
    response = client.get("/connexion")
    assert response.status_code == 400
    assert "Votre session a expiré" in t(response) and 'href="/"' in t(response)
    assert client.get_cookie("idp_interaction", domain="localhost") is None


def test_interaction_expires_by_the_clock(web, clock):
    _, client, _ = web
    clock.advance(minutes=31)
    assert "Votre session a expiré" in t(client.get("/connexion"))


def test_stale_csrf_token_redirects_to_a_fresh_form(web):
    _, client, _ = web
    response = client.post("/connexion", data={"csrf_token": "stale", "nir": NIR, "password": PASSWORD})
    assert response.status_code == 303
    assert "Votre session a été renouvelée" in t(client.get(response.headers["Location"]))


def test_steps_cannot_be_skipped(web):
    _, client, _ = web
    assert client.get("/connexion/code").headers["Location"] == "/connexion"


def test_pending_terms_are_accepted_before_finishing(web, mailbox):
    from idp.accounts import service

    app, client, _ = web
    with app.app_context():
        service.publish_terms("2026-01", "Conditions générales d'utilisation", "Article 1.\n\nArticle 2.")
    post_identify(client)
    assert post_code(client, mailbox.code()).headers["Location"] == "/connexion/conditions"
    page = client.get("/connexion/conditions")
    refused = client.post("/connexion/conditions", data={"csrf_token": csrf_from(page.data), "terms_id": "1"})
    assert "Cochez la case" in t(refused)
    terms_id = next(p.split('"')[0] for p in t(page).split('name="terms_id" value="')[1:])
    accepted = client.post("/connexion/conditions", data={"csrf_token": csrf_from(page.data), "accept": "1",
                                                          "terms_id": terms_id})
    rp_answer(accepted)  # accepted: the login is over, the RP answered


def test_address_throttling_stops_one_address_from_locking_many_accounts(any_app):
    client = any_app.test_client()
    bind(client, new_interaction(any_app))
    with any_app.app_context():
        from idp.extensions import settings
        limit = settings().address_failure_limit
    token = csrf_from(client.get("/connexion").data)
    for _ in range(limit):
        client.post("/connexion", data={"csrf_token": token, "nir": UNKNOWN_NIR, "password": "Faux-Faux-1"})
    response = client.post("/connexion", data={"csrf_token": token, "nir": NIR, "password": PASSWORD})
    assert response.status_code == 429 and "Trop de tentatives" in t(response)


def test_security_headers_on_login_pages(web):
    _, client, _ = web
    headers = client.get("/connexion").headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "no-referrer"


remember_secret("Pas-Le-Bon-Mot-2-Passe", "Pas-Le-Bon-2", "Faux-Faux-1")


@pytest.mark.postgres
@pytest.mark.redis
def test_two_parallel_right_passwords_on_one_interaction_finish_one_login_only(pg_app):
    """Two browsers holding the same interaction (a copied cookie) send the right password at the same time:
    both pass the hash before either rotates the interaction. Only the one whose rotation removed the old
    record goes on (the RP gets one code for its request); the other gets the "expired" page."""
    import threading

    make_account(pg_app)
    shared = new_interaction(pg_app, kind="mobile")  # the password alone finishes an app login
    clients = [pg_app.test_client() for _ in range(2)]
    for client in clients:
        bind(client, shared)
    tokens = [csrf_from(client.get("/connexion").data) for client in clients]
    start = threading.Barrier(2)
    answers = [None, None]

    def submit(i):
        start.wait()
        answers[i] = clients[i].post("/connexion", data={"csrf_token": tokens[i], "nir": NIR, "password": PASSWORD})

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [303, 400], statuses
    winner = next(answer for answer in answers if answer.status_code == 303)
    assert "code" in rp_answer(winner)
    loser = next(answer for answer in answers if answer.status_code == 400)
    assert "Votre session a expiré" in t(loser)


def test_the_answer_to_the_rp_is_decided_by_the_stored_interaction_not_a_stale_copy(web):
    """A request holding a finished copy of the interaction while a parallel request saved it back as not
    finished (a refusal, a step) issues nothing: what the atomic consume returns decides."""
    from idp.login.interaction import InteractionExpired, Step, interactions
    from idp.oidc.views import answer_login

    app, client, person = web
    interaction_id = client.get_cookie("idp_interaction", domain="localhost").value
    with app.test_request_context():
        stale = interactions.get(interaction_id)
        stale.account_id, stale.step = person.account_id, Step.DONE  # finished in this request's memory only
        with pytest.raises(InteractionExpired):
            answer_login(stale)
        assert interactions.get(interaction_id) is None  # consumed all the same: it cannot be answered later
