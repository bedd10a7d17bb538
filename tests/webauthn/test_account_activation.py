"""Activating biometrics from "Ma biométrie" (/compte/biometrie), through the test client and a software
authenticator: only after the security page's e-mail code in this very session, bound to that session, at
the level the session's login proved, announced by e-mail and audited."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from idp.audit import AuditEvent
from idp.extensions import db
from idp.webauthn import service
from tests.conftest import csrf_from, proof_of
from tests.webauthn.authenticator import SoftAuthenticator, from_b64url
from tests.webauthn.conftest import make_account

META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
OPTIONS, VERIFY = "/compte/biometrie/activation/options", "/compte/biometrie/activation/verifier"
ANDROID = "Mozilla/5.0 (Linux; Android 14) Chrome/126.0"


def _signed_in(app: Any, client: Any, amr: list[str]) -> str:
    """A browser session of a new account whose login proved ``amr``; returns the account id."""
    from idp.login.sessions import sessions

    with app.app_context():
        account_id = make_account(login_count=3).id
        session = sessions.create(account_id=account_id, proof=proof_of(amr))
    client.set_cookie("idp_session", session.id, domain="localhost")
    return account_id


def _reauthenticated(client: Any, mailbox: Any) -> None:
    page = client.get("/compte/securite/verification?suite=biometrie")
    client.post("/compte/securite/verification/envoi", data={"csrf_token": csrf_from(page.data), "suite": "biometrie"})
    done = client.post("/compte/securite/verification", data={"csrf_token": csrf_from(page.data), "suite": "biometrie",
                                                              "code": mailbox.code("assure@example.fr")})
    assert done.status_code == 303 and done.location.endswith("/compte/biometrie")


def _headers(client: Any) -> dict[str, str]:
    match = META_CSRF.search(client.get("/compte/biometrie").get_data(as_text=True))
    assert match
    return {"X-CSRFToken": match.group(1), "Accept": "application/json", "User-Agent": ANDROID}


def _activate(client: Any, phone: SoftAuthenticator) -> Any:
    headers = _headers(client)
    options = client.post(OPTIONS, headers=headers)
    assert options.status_code == 200, options.get_json()
    challenge = from_b64url(options.get_json()["publicKey"]["challenge"])
    return client.post(VERIFY, json=phone.register(challenge), headers=headers)


def _credentials(app: Any, account_id: str) -> list[Any]:
    with app.app_context():
        return service.list_credentials(account_id)


def test_after_the_email_code_the_account_page_activates_this_device(app: Any, client: Any, mailbox: Any) -> None:
    account_id = _signed_in(app, client, ["pwd", "mail"])
    _reauthenticated(client, mailbox)
    page = client.get("/compte/biometrie").get_data(as_text=True)
    assert 'id="webauthn-activate"' in page and "/static/js/webauthn.js" in page and "<script>" not in page
    before = len(mailbox.messages)
    done = _activate(client, SoftAuthenticator())
    assert done.status_code == 200 and done.get_json() == {"redirect": "/compte/biometrie?activee=1"}
    assert "La biométrie est activée sur cet appareil pour 6 mois" in client.get("/compte/biometrie?activee=1").text
    (credential,) = _credentials(app, account_id)
    assert credential.device_label == "Chrome sur Android"
    assert (credential.activated_with_mfa, credential.activation_acr) == (True, "eidas1")
    assert any("biométrie activée" in m["subject"] for m in mailbox.messages[before:])
    with app.app_context():
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "webauthn.activated")).one()
    assert event.account_id == account_id and event.client_id == "compte"


def test_without_the_email_code_the_page_asks_for_it_and_the_endpoints_refuse(app: Any, client: Any) -> None:
    account_id = _signed_in(app, client, ["pwd", "mail"])
    page = client.get("/compte/biometrie").get_data(as_text=True)
    assert 'id="webauthn-activate"' not in page and "/compte/securite/verification?suite=biometrie" in page
    headers = _headers(client)
    for path in (OPTIONS, VERIFY):
        refused = client.post(path, json={}, headers=headers)
        assert refused.status_code == 403 and refused.get_json()["error"] == "reauthentication_required"
    assert _credentials(app, account_id) == []
    with app.app_context():
        actions = db.session.scalars(select(AuditEvent.data).where(AuditEvent.event == "account.reauth_required")).all()
    assert [a["action"] for a in actions] == ["webauthn.activate", "webauthn.activate"]


def test_the_endpoints_need_the_csrf_header_and_a_session(app: Any, client: Any, mailbox: Any) -> None:
    assert client.post(OPTIONS, headers={"Accept": "application/json"}).status_code in (400, 401)
    _signed_in(app, client, ["pwd", "mail"])
    _reauthenticated(client, mailbox)
    assert client.post(OPTIONS, headers={"Accept": "application/json"}).status_code == 400


def test_a_password_only_session_activates_an_app_only_credential(app: Any, client: Any, mailbox: Any) -> None:
    """The session's login proved one factor (the app): the e-mail code of the security page does not raise
    the credential to two factors, so web clients will not take it for password + code."""
    account_id = _signed_in(app, client, ["pwd"])
    _reauthenticated(client, mailbox)
    assert _activate(client, SoftAuthenticator()).status_code == 200
    (credential,) = _credentials(app, account_id)
    assert credential.activated_with_mfa is False


def test_the_challenge_is_bound_to_the_session_that_asked_and_works_once(app: Any, mailbox: Any) -> None:
    from idp.login.sessions import sessions

    first = app.test_client()
    account_id = _signed_in(app, first, ["pwd", "mail"])
    _reauthenticated(first, mailbox)
    headers = _headers(first)
    challenge = from_b64url(first.post(OPTIONS, headers=headers).get_json()["publicKey"]["challenge"])
    phone = SoftAuthenticator()
    other = app.test_client()  # another session of the same account, re-authenticated too
    with app.app_context():
        session = sessions.create(account_id=account_id, proof=proof_of(["pwd", "mail"]))
    other.set_cookie("idp_session", session.id, domain="localhost")
    _reauthenticated(other, mailbox)
    stolen = other.post(VERIFY, json=phone.register(challenge), headers=_headers(other))
    assert stolen.status_code == 400 and stolen.get_json()["error"] == "webauthn_refused"
    assert first.post(VERIFY, json=phone.register(challenge), headers=headers).status_code == 200
    replayed = first.post(VERIFY, json=SoftAuthenticator().register(challenge), headers=headers)
    assert replayed.status_code == 400
    assert len(_credentials(app, account_id)) == 1


@pytest.mark.parametrize("change", ["disabled", "session ended"])
def test_a_disabled_account_or_an_ended_session_activates_nothing(app: Any, client: Any, mailbox: Any,
                                                                  change: str) -> None:
    from idp.accounts import service as accounts
    from idp.login.sessions import sessions

    account_id = _signed_in(app, client, ["pwd", "mail"])
    _reauthenticated(client, mailbox)
    headers = _headers(client)
    with app.app_context():
        if change == "disabled":
            accounts.set_status(accounts.get_account(account_id), "disabled")
        else:
            sessions.end_all(account_id)
    assert client.post(OPTIONS, headers=headers).status_code == 401
    assert _credentials(app, account_id) == []
