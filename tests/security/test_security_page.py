""""Sécurité de mon compte" over HTTP: reading needs a session, every change a fresh re-authentication code;
trusted browsers, sessions, e-mail and password changes, the last security events."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from tests.conftest import csrf_from, proof_of, remember_secret
from tests.login.conftest import EMAIL, NIR, PASSWORD, make_account

NEW_EMAIL = "alice.nouvelle@example.fr"
NEW_PASSWORD = "Trois-Chats-Sur-Le-Toit-9"
remember_secret(NEW_PASSWORD)


def text(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def signed_in(app: Any, account_id: str, device: str = "Firefox sur Linux") -> tuple[Any, str]:
    """A test client holding a live browser session of the account."""
    from idp.login.sessions import sessions

    with app.app_context():
        session = sessions.create(account_id=account_id, proof=proof_of(["pwd", "mail"], at=0), device=device)
    remember_secret(session.id)
    client = app.test_client()
    client.set_cookie("idp_session", session.id, domain="localhost")
    return client, session.id


def reauthenticate(client: Any, mailbox: Any, suite: str = "securite") -> Any:
    """Ask for the code, type it: the window for changes opens."""
    page = client.get(f"/compte/securite/verification?suite={suite}")
    sent = client.post("/compte/securite/verification/envoi", data={"csrf_token": csrf_from(page.data), "suite": suite})
    assert sent.status_code == 303, text(sent)
    form = client.get(sent.location)
    return client.post("/compte/securite/verification", data={"csrf_token": csrf_from(form.data), "suite": suite,
                                                              "code": mailbox.code(EMAIL)})


def post(client: Any, url: str, **data: str) -> Any:
    """POST with the CSRF token every page carries in its meta tag."""
    token = re.search(r'name="csrf-token" content="([^"]+)"', text(client.get("/compte/securite"))).group(1)  # type: ignore[union-attr]
    return client.post(url, data={"csrf_token": token, **data})


@pytest.fixture
def person(app: Any) -> Any:
    return make_account(app)


def test_the_page_needs_a_session_and_never_shows_a_session_id(app: Any, person: Any) -> None:
    assert app.test_client().get("/compte/securite").status_code == 401
    client, session_id = signed_in(app, person.account_id)
    page = text(client.get("/compte/securite"))
    for heading in ("Adresse e-mail", "Mot de passe", "Navigateurs de confiance", "Biométrie", "Sessions ouvertes",
                    "Derniers événements de sécurité"):
        assert f">{heading}</h2>" in page
    assert EMAIL in page and "cette session" in page and "Firefox sur Linux" in page
    assert session_id not in page and NIR not in page
    assert 'href="/compte/biometrie"' in page


def test_the_header_of_every_page_links_to_the_security_page(client: Any) -> None:
    assert 'href="/compte/securite"' in client.get("/").get_data(as_text=True)


CHANGES = ["/compte/securite/navigateurs/1/revoquer", "/compte/securite/navigateurs/revoquer",
           "/compte/securite/sessions/abc/fermer", "/compte/securite/sessions/fermer", "/compte/securite/email",
           "/compte/securite/mot-de-passe"]


@pytest.mark.parametrize("url", CHANGES)
def test_every_change_asks_the_code_first_even_in_a_fresh_session(app: Any, person: Any, url: str) -> None:
    from idp.mfa import trusted_browser

    client, _ = signed_in(app, person.account_id)
    with app.app_context():
        trusted_browser.trust(person.account_id, label="Chrome sur Windows")
    answer = post(client, url, email=NEW_EMAIL, password=NEW_PASSWORD, confirm=NEW_PASSWORD)
    assert answer.status_code == 303 and "/compte/securite/verification?suite=" in answer.location
    with app.app_context():
        assert len(trusted_browser.list_for(person.account_id)) == 1


@pytest.mark.parametrize("url", [*CHANGES, "/compte/securite/verification", "/compte/securite/verification/envoi"])
def test_every_post_without_its_csrf_token_is_refused(app: Any, person: Any, mailbox: Any, url: str) -> None:
    client, _ = signed_in(app, person.account_id)
    reauthenticate(client, mailbox)
    mailbox.clear()
    assert client.post(url, data={"email": NEW_EMAIL, "code": "123456"}).status_code == 400
    assert mailbox.messages == []


def test_three_wrong_codes_lock_the_account_and_the_window_closes_after_its_ttl(app: Any, person: Any, mailbox: Any,
                                                                               clock: Any) -> None:
    client, _ = signed_in(app, person.account_id)
    page = client.get("/compte/securite/verification")
    client.post("/compte/securite/verification/envoi", data={"csrf_token": csrf_from(page.data)})
    right = mailbox.code(EMAIL)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    answers = [client.post("/compte/securite/verification", data={"csrf_token": csrf_from(page.data), "code": wrong})
               for _ in range(3)]
    assert "3 essais infructueux bloquent" in text(answers[0])
    assert "bloqué jusqu'au 05/01/2026 - 14h45 (heure de Paris)" in text(answers[2])
    late = client.post("/compte/securite/verification", data={"csrf_token": csrf_from(page.data), "code": right})
    assert "bloqué" in text(late)
    clock.advance(minutes=16)
    assert reauthenticate(client, mailbox).status_code == 303
    assert "Pour votre sécurité, un code" not in text(client.get("/compte/securite"))
    clock.advance(seconds=301)
    assert "Pour votre sécurité, un code" in text(client.get("/compte/securite"))


def test_revoke_one_trusted_browser_then_all(app: Any, person: Any, mailbox: Any) -> None:
    from idp.mfa import trusted_browser

    client, _ = signed_in(app, person.account_id)
    with app.app_context():
        mine = trusted_browser.trust(person.account_id, label="Firefox sur Linux")
        other = trusted_browser.trust(person.account_id, label="Chrome sur Windows")
        mine_id = next(b.id for b in trusted_browser.list_for(person.account_id) if b.label == "Firefox sur Linux")
    client.set_cookie("idp_trusted", mine, domain="localhost")
    assert "ce navigateur" in text(client.get("/compte/securite"))
    reauthenticate(client, mailbox)
    assert post(client, f"/compte/securite/navigateurs/{mine_id}/revoquer").location.endswith("?fait=browser")
    with app.app_context():
        assert not trusted_browser.is_trusted(mine, person.account_id)
        assert trusted_browser.is_trusted(other, person.account_id)
    post(client, "/compte/securite/navigateurs/revoquer")
    with app.app_context():
        assert not trusted_browser.is_trusted(other, person.account_id)


def test_someone_elses_trusted_browser_cannot_be_revoked(app: Any, person: Any, mailbox: Any) -> None:
    from idp.mfa import trusted_browser
    from tests.login.conftest import OTHER_NIR

    stranger = make_account(app, nir=OTHER_NIR, email="bob@example.fr")
    with app.app_context():
        token = trusted_browser.trust(stranger.account_id)
        browser_id = trusted_browser.list_for(stranger.account_id)[0].id
    client, _ = signed_in(app, person.account_id)
    reauthenticate(client, mailbox)
    post(client, f"/compte/securite/navigateurs/{browser_id}/revoquer")
    with app.app_context():
        assert trusted_browser.is_trusted(token, stranger.account_id)


def test_end_one_other_session_then_all_others_but_never_this_one(app: Any, person: Any, mailbox: Any) -> None:
    from idp.login.sessions import sessions

    client, mine = signed_in(app, person.account_id)
    _, phone = signed_in(app, person.account_id, device="Safari sur iPhone")
    _, tablet = signed_in(app, person.account_id, device="Chrome sur Android")
    reauthenticate(client, mailbox)
    page = text(client.get("/compte/securite"))
    handle = re.search(r'/compte/securite/sessions/([0-9a-f]+)/fermer"[^>]*>\s*<input[^>]*>\s*<button[^>]*'
                       r'aria-label="Fermer la session Safari sur iPhone', page)
    assert handle, page
    post(client, f"/compte/securite/sessions/{handle.group(1)}/fermer")
    with app.app_context():
        assert sessions.get(phone) is None and sessions.get(tablet) is not None
    post(client, "/compte/securite/sessions/fermer")
    with app.app_context():
        assert sessions.get(tablet) is None and sessions.get(mine) is not None


def test_change_the_email_validates_the_new_address_and_tells_the_old_one(app: Any, person: Any,
                                                                         mailbox: Any) -> None:
    from idp.accounts import service

    client, _ = signed_in(app, person.account_id)
    assert client.get("/compte/securite/email").location.endswith("/compte/securite/verification?suite=email")
    back = reauthenticate(client, mailbox, suite="email")
    assert back.location.endswith("/compte/securite/email")
    form = client.get("/compte/securite/email")
    sent = client.post("/compte/securite/email", data={"csrf_token": csrf_from(form.data), "email": NEW_EMAIL})
    assert sent.location.endswith("/compte/securite/email/code")
    code_page = client.get(sent.location)
    wrong = client.post(sent.location, data={"csrf_token": csrf_from(code_page.data), "code": "000000"})
    assert 'aria-describedby="code-error"' in text(wrong) or "code-error" in text(wrong)
    done = client.post(sent.location, data={"csrf_token": csrf_from(code_page.data), "code": mailbox.code(NEW_EMAIL)})
    assert done.location.endswith("?fait=email")
    notice = mailbox.last(EMAIL)
    assert "adresse e-mail a été modifiée" in notice["subject"] and "a***@e***.fr" in notice["body"]
    with app.app_context():
        account = service.get_account(person.account_id)
        assert account is not None and account.email == NEW_EMAIL and account.email_validated
    events = text(client.get("/compte/securite"))
    assert "Adresse e-mail modifiée" in events and "Identité confirmée par code" in events


def test_change_the_password_keeps_this_session_and_ends_the_others(app: Any, person: Any, mailbox: Any) -> None:
    from idp.accounts import service
    from idp.login.sessions import sessions

    client, mine = signed_in(app, person.account_id)
    _, other = signed_in(app, person.account_id)
    reauthenticate(client, mailbox, suite="mot-de-passe")
    form = client.get("/compte/securite/mot-de-passe")
    refused = client.post("/compte/securite/mot-de-passe", data={"csrf_token": csrf_from(form.data),
                                                                 "password": "azerty", "confirm": "azerty"})
    assert 'aria-invalid="true"' in text(refused)
    done = client.post("/compte/securite/mot-de-passe", data={"csrf_token": csrf_from(form.data),
                                                              "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert done.location.endswith("?fait=password")
    with app.app_context():
        assert service.authenticate(NIR, NEW_PASSWORD) is not None and service.authenticate(NIR, PASSWORD) is None
        assert sessions.get(mine) is not None and sessions.get(other) is None


def test_last_events_show_sign_ins_with_method_and_service_in_paris_time(app: Any, person: Any) -> None:
    from idp import audit
    from idp.oidc.clients import create_client

    with app.app_context():
        client_id = create_client(name="Mes remboursements", kind="web",
                                  redirect_uris=["https://rp.example/cb"]).client.client_id
        for _ in range(25):
            audit.record("login_done", account_id=person.account_id, client_id=client_id, amr=["pwd", "mail", "mfa"],
                         acr="eidas2")
        audit.record("login_password_failed", account_id=person.account_id, locked=True)
    client, _ = signed_in(app, person.account_id)
    page = text(client.get("/compte/securite"))
    assert "Les 20 derniers événements" in page
    assert "Mot de passe erroné - compte bloqué" in page
    assert "mot de passe + code de sécurité" in page and "Mes remboursements" in page
    assert "05/01/2026 - 14h30" in page


# --- an e-mail change cuts off the previous address (its mailbox may be why the person changes it) -----------
def change_email(app: Any, client: Any, mailbox: Any, new: str = NEW_EMAIL) -> None:
    """Re-authenticate and move the account to ``new`` through the pages."""
    reauthenticate(client, mailbox, suite="email")
    form = client.get("/compte/securite/email")
    sent = client.post("/compte/securite/email", data={"csrf_token": csrf_from(form.data), "email": new})
    code_page = client.get(sent.location)
    done = client.post(sent.location, data={"csrf_token": csrf_from(code_page.data), "code": mailbox.code(new)})
    assert done.location.endswith("?fait=email"), text(done)


def test_a_reset_link_sent_to_the_previous_address_dies_with_the_email_change(app: Any, person: Any,
                                                                             mailbox: Any) -> None:
    from idp.accounts import service
    from idp.notify import outbox

    # Whoever reads the old mailbox asked for a reset link; the person then moves to a new address.
    stranger = app.test_client()
    page = stranger.get("/mot-de-passe-oublie")
    stranger.post("/mot-de-passe-oublie", data={"csrf_token": csrf_from(page.data), "nir": NIR})
    outbox.drain()
    link = re.search(r"http://localhost(/mot-de-passe/nouveau/[A-Za-z0-9_-]+)", mailbox.last(EMAIL)["body"])
    assert link, mailbox.last(EMAIL)["body"]
    client, _ = signed_in(app, person.account_id)
    change_email(app, client, mailbox)
    assert stranger.get(link.group(1)).status_code == 410
    form = stranger.get("/mot-de-passe-oublie")
    stranger.post(link.group(1), data={"csrf_token": csrf_from(form.data), "password": NEW_PASSWORD})
    with app.app_context():
        assert service.authenticate(NIR, NEW_PASSWORD) is None and service.authenticate(NIR, PASSWORD) is not None


def test_a_reauthentication_code_sent_to_the_previous_address_is_worthless_after_the_change(
        app: Any, person: Any, mailbox: Any) -> None:
    # A stolen session cookie and the old mailbox: the code is asked, then the owner changes the address.
    thief, _ = signed_in(app, person.account_id)
    page = thief.get("/compte/securite/verification?suite=email")
    thief.post("/compte/securite/verification/envoi", data={"csrf_token": csrf_from(page.data), "suite": "email"})
    old_code = mailbox.code(EMAIL)
    owner, _ = signed_in(app, person.account_id)
    change_email(app, owner, mailbox)
    answer = thief.post("/compte/securite/verification", data={"csrf_token": csrf_from(page.data), "suite": "email",
                                                               "code": old_code})
    assert answer.status_code == 200 and "Aucun code de sécurité n'est en attente" in text(answer)
    assert thief.get("/compte/securite/email").location.endswith("/compte/securite/verification?suite=email")


def test_after_a_password_change_the_kept_session_asks_a_new_login_instead_of_a_code_the_token_endpoint_refuses(
        app: Any, person: Any, mailbox: Any, clock: Any) -> None:
    from tests.oidc.conftest import flow, make_rp, query_of

    client, _ = signed_in(app, person.account_id)
    rp = make_rp(app, "web")
    clock.advance(seconds=5)
    reauthenticate(client, mailbox, suite="mot-de-passe")
    form = client.get("/compte/securite/mot-de-passe")
    client.post("/compte/securite/mot-de-passe", data={"csrf_token": csrf_from(form.data),
                                                       "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    f = flow(rp)
    answer = client.get("/authorize", query_string=f.params)
    # The session's authentication predates the password: a new login, not a code /token would refuse.
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/connexion"), answer.headers
    quiet = client.get("/authorize", query_string=flow(rp, prompt="none").params)
    assert query_of(quiet)["error"] == "login_required"
