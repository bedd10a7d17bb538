"""The offer page, the JSON ceremony endpoints and the management page, through the test client."""

from __future__ import annotations

import re
from typing import Any

import pytest

from idp.extensions import db
from idp.login import assurance
from idp.login.biometric_views import ceremony_of
from idp.login.interaction import Offer, interactions
from idp.webauthn import challenges, service
from tests.conftest import csrf_from, proof_of
from tests.webauthn.conftest import challenge_of, make_account, make_interaction, recorded

META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def _bind(client: Any, interaction_id: str) -> None:
    client.set_cookie("idp_interaction", interaction_id, domain="localhost")


def _json_headers(client: Any, page: str) -> dict[str, str]:
    """The headers webauthn.js sends: JSON, and the CSRF token read from the page's meta tag."""
    html = client.get(page, follow_redirects=True).get_data(as_text=True)
    match = META_CSRF.search(html)
    assert match, f"no csrf-token meta in {page}"
    return {"X-CSRFToken": match.group(1), "Accept": "application/json"}


@pytest.fixture
def offered(app: Any, client: Any) -> tuple[Any, str, str]:
    """A web login that finished password + code at its 2nd login: the offer is due."""
    with app.app_context():
        account = make_account(login_count=1)
        interaction = make_interaction(account=account, amr=["pwd", "mail"])
        interaction.offer = Offer.SHOWN  # what the login pages do when the policy says "offer"
        interactions.save(interaction)
        ids = (account.id, interaction.id)
    _bind(client, ids[1])
    return client, ids[0], ids[1]


def test_offer_page_has_the_three_choices_and_no_inline_script(offered: Any) -> None:
    client, _, _ = offered
    response = client.get("/biometrie/proposition")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    for label in ("Activer la biométrie", "Plus tard", "Ne plus me rappeler", "6 mois", "Paramètres", "Réglages"):
        assert label in html
    assert 'name="csrf_token"' in html and META_CSRF.search(html)
    assert "<script>" not in html and "style=" not in html
    assert "/static/js/webauthn.js" in html


@pytest.mark.parametrize(("choice", "optout"), [("later", False), ("never", True)])
def test_offer_choices_continue_the_login(app: Any, offered: Any, choice: str, optout: bool) -> None:
    client, account_id, interaction_id = offered
    token = csrf_from(client.get("/biometrie/proposition").data)
    response = client.post("/biometrie/proposition", data={"csrf_token": token, "choice": choice})
    assert response.status_code == 303
    assert response.headers["Location"] == "/connexion/suite"
    with app.app_context():
        from idp.accounts.models import Account

        assert db.session.get(Account, account_id).biometric_offer_optout is optout
        assert interactions.get(interaction_id).offer == choice  # type: ignore[union-attr]


def test_offer_refuses_an_unknown_choice(offered: Any) -> None:
    client, _, _ = offered
    token = csrf_from(client.get("/biometrie/proposition").data)
    assert client.post("/biometrie/proposition", data={"csrf_token": token, "choice": "maybe"}).status_code == 400


def test_offer_needs_a_finished_authentication(app: Any, client: Any) -> None:
    with app.app_context():
        account = make_account(login_count=3)
        interaction = make_interaction(account=account, amr=[])
    _bind(client, interaction.id)
    offer = client.get("/biometrie/proposition")  # nothing proven yet: the policy's page (identify) instead
    assert offer.status_code == 303 and offer.headers["Location"] == "/connexion/suite"
    assert client.get("/connexion/suite").headers["Location"] == "/connexion"
    client.delete_cookie("idp_interaction", domain="localhost")
    expired = client.get("/biometrie/proposition")
    assert expired.status_code == 400 and "Votre session a expiré" in expired.get_data(as_text=True)


def test_activation_endpoints_need_the_csrf_header(offered: Any) -> None:
    client, _, _ = offered
    response = client.post("/biometrie/activation/options", headers={"Accept": "application/json"})
    assert response.status_code == 400


def test_activation_through_the_endpoints(app: Any, offered: Any) -> None:
    client, account_id, interaction_id = offered
    headers = _json_headers(client, "/biometrie/proposition")
    options = client.post("/biometrie/activation/options", headers=headers)
    assert options.status_code == 200 and options.headers["Cache-Control"] == "no-store"
    public_key = options.get_json()["publicKey"]
    assert public_key["rp"]["id"] == "localhost"
    assert public_key["authenticatorSelection"]["authenticatorAttachment"] == "platform"
    with app.app_context():
        # The recorded response answers its own challenge: keep it in place of the one just issued.
        challenges.keep("register", interaction_id, challenge_of("registration"), account_id=account_id)
    verified = client.post("/biometrie/activation/verifier", json=recorded("registration")["credential"],
                           headers={**headers, "User-Agent": "Mozilla/5.0 (Linux; Android 14) Chrome/126.0"})
    assert verified.status_code == 200
    assert verified.get_json() == {"redirect": "/connexion/suite"}
    with app.app_context():
        (credential,) = service.list_credentials(account_id)
        assert credential.device_label == "Chrome sur Android"
        assert interactions.get(interaction_id).offer is Offer.ACTIVATED  # type: ignore[union-attr]
        assert (credential.activated_with_mfa, credential.activation_acr) == (True, "eidas1")


def test_failed_activation_answers_json_in_french(app: Any, offered: Any) -> None:
    client, account_id, interaction_id = offered
    headers = _json_headers(client, "/biometrie/proposition")
    with app.app_context():
        challenges.keep("register", interaction_id, challenge_of("registration_no_uv"), account_id=account_id)
    response = client.post("/biometrie/activation/verifier", json=recorded("registration_no_uv")["credential"],
                           headers=headers)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "webauthn_refused"
    assert body["error_description"].startswith("L'activation de la biométrie n'a pas abouti")


def _activated(app: Any) -> str:
    with app.app_context():
        account = make_account(login_count=2)
        interaction = make_interaction(account=account, amr=["pwd", "mail"])
        challenges.keep("register", interaction.id, challenge_of("registration"), account_id=account.id)
        service.finish_registration(ceremony=ceremony_of(interaction), account=account,
                                    response=recorded("registration")["credential"], device_label="Chrome sur Android",
                                    activation_factors=2, activation_acr="eidas1")
        return account.id


def test_sign_in_through_the_endpoints(app: Any, client: Any) -> None:
    account_id = _activated(app)
    with app.app_context():
        interaction = make_interaction()
    _bind(client, interaction.id)
    headers = _json_headers(client, "/connexion")
    options = client.post("/connexion/biometrie/options", headers=headers).get_json()["publicKey"]
    assert options["userVerification"] == "required" and options["allowCredentials"] == []
    with app.app_context():
        challenges.keep("login", interaction.id, challenge_of("authentication"))
    response = client.post("/connexion/biometrie/verifier", json=recorded("authentication")["credential"],
                           headers=headers)
    assert response.status_code == 200
    assert response.get_json() == {"redirect": "/connexion/suite"}
    new_id = client.get_cookie("idp_interaction", domain="localhost").value
    assert new_id != interaction.id  # rotated, like after the password
    with app.app_context():
        assert interactions.get(interaction.id) is None
        marked = interactions.get(new_id)
        assert marked is not None and marked.account_id == account_id
        assert assurance.amr(marked.proof) == ["hwk", "user", "mfa"]


def test_sign_in_options_list_the_credentials_when_the_account_is_known(app: Any, client: Any) -> None:
    account_id = _activated(app)
    with app.app_context():
        from idp.accounts.models import Account

        interaction = make_interaction(account=db.session.get(Account, account_id), amr=["pwd"])
    _bind(client, interaction.id)
    headers = _json_headers(client, "/connexion/biometrie")  # the policy's "biometric" step page
    options = client.post("/connexion/biometrie/options", headers=headers).get_json()["publicKey"]
    assert [c["id"] for c in options["allowCredentials"]] == [recorded("authenticator")["credential_id"]]


def test_expired_credential_sign_in_answers_the_french_explanation(app: Any, client: Any, clock: Any) -> None:
    _activated(app)
    clock.advance(days=181)
    with app.app_context():
        interaction = make_interaction()
        challenges.keep("login", interaction.id, challenge_of("authentication"))
    _bind(client, interaction.id)
    headers = _json_headers(client, "/connexion")
    response = client.post("/connexion/biometrie/verifier", json=recorded("authentication")["credential"],
                           headers=headers)
    assert response.status_code == 400
    assert "Votre biométrie a expiré" in response.get_json()["error_description"]


def test_sign_in_without_interaction_is_refused(client: Any) -> None:
    response = client.post("/connexion/biometrie/options", headers={"Accept": "application/json"})
    assert response.status_code == 400


# --- management ------------------------------------------------------------------------------
def _signed_in(app: Any, client: Any, account_id: str) -> None:
    from idp.login.sessions import sessions

    with app.app_context():
        session = sessions.create(account_id=account_id, proof=proof_of(["pwd", "mail"], at=0))
    client.set_cookie("idp_session", session.id, domain="localhost")


def _reauthenticated(client: Any, mailbox: Any) -> None:
    """Revoking is a change: the security page's code first (tested as an attack in tests/security)."""
    page = client.get("/compte/securite/verification?suite=biometrie")
    sent = client.post("/compte/securite/verification/envoi", data={"csrf_token": csrf_from(page.data),
                                                                    "suite": "biometrie"})
    assert sent.status_code == 303
    done = client.post("/compte/securite/verification", data={"csrf_token": csrf_from(page.data), "suite": "biometrie",
                                                              "code": mailbox.code("assure@example.fr")})
    assert done.status_code == 303 and done.location.endswith("/compte/biometrie")


def test_management_needs_a_browser_session(client: Any) -> None:
    response = client.get("/compte/biometrie")
    assert response.status_code == 401
    assert "Vous devez être connecté" in response.get_data(as_text=True)


def test_management_lists_and_revokes(app: Any, client: Any, mailbox: Any) -> None:
    account_id = _activated(app)
    _signed_in(app, client, account_id)
    _reauthenticated(client, mailbox)
    page = client.get("/compte/biometrie")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    for text in ("Chrome sur Android", "05/01/2026 - 14h30", "jamais", "04/07/2026 - 15h30", "Désactiver"):
        assert text in html
    credential_id = int(re.search(r"/compte/biometrie/(\d+)/revoquer", html).group(1))  # type: ignore[union-attr]
    revoked = client.post(f"/compte/biometrie/{credential_id}/revoquer", data={"csrf_token": csrf_from(html)})
    assert revoked.status_code == 303
    after = client.get(revoked.headers["Location"]).get_data(as_text=True)
    assert "a été désactivée" in after and "Chrome sur Android" not in after
    with app.app_context():
        assert not service.has_usable_credential(account_id)


def test_management_cannot_revoke_another_accounts_credential(app: Any, client: Any, mailbox: Any) -> None:
    owner = _activated(app)
    with app.app_context():
        stranger = make_account().id
        (credential,) = service.list_credentials(owner)
        credential_pk = credential.id
    _signed_in(app, client, stranger)
    _reauthenticated(client, mailbox)
    token = _json_headers(client, "/compte/biometrie")["X-CSRFToken"]
    response = client.post(f"/compte/biometrie/{credential_pk}/revoquer", data={"csrf_token": token})
    assert response.status_code == 400
    with app.app_context():
        assert service.has_usable_credential(owner)
