"""Issue 11's attacks on the assurance level, replayed over HTTP through the real pages, now failing.

The deployment here accepts the e-mail code as a second factor worth ``eidas2`` (``acr_email_code``), as an
operator whose trust framework allows it would: that makes every inflation visible (eidas1 vs eidas2).

1. seed case 1: an address bound during the login is no second factor;
2. a browser-session cookie + prompt=consent cannot activate a credential;
3. a password reset ends a login in flight (no tokens from the offer page; auth_time is the password's time);
4. a credential activated after a password-only app login is never worth more than eidas1.
(5, the registry at every login, is in tests/login/test_registry_at_login.py.)
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import csrf_from
from tests.oidc.conftest import (
    IDENTITIES,
    NIR,
    PASSWORD,
    REDIRECT,
    Person,
    decode_id_token,
    finish_login,
    flow,
    make_person,
    make_rp,
    query_of,
    redeem,
)
from tests.webauthn.authenticator import SoftAuthenticator, from_b64url

ATTACKER_MAIL = "attaquant@evil.example"


@pytest.fixture
def app_config() -> dict[str, Any]:
    return {"acr_email_code": "eidas2"}


# --- walking the pages -------------------------------------------------------------------------
def start(client: Any, f: Any) -> None:
    started = client.get("/authorize", query_string=f.params)
    assert started.status_code == 303 and started.headers["Location"].endswith("/connexion"), started.data[:300]


def identify(client: Any, **extra: str) -> Any:
    token = csrf_from(client.get("/connexion").data)
    return client.post("/connexion", data={"csrf_token": token, "nir": NIR, "password": PASSWORD, **extra})


def type_code(client: Any, code: str) -> Any:
    token = csrf_from(client.get("/connexion/code").data)
    return client.post("/connexion/code", data={"csrf_token": token, "code": code})


def bind_address(client: Any, mailbox: Any, address: str) -> Any:
    token = csrf_from(client.get("/connexion/email").data)
    sent = client.post("/connexion/email", data={"csrf_token": token, "action": "send", "email": address})
    assert sent.status_code == 303
    token = csrf_from(client.get("/connexion/email").data)
    return client.post("/connexion/email", data={"csrf_token": token, "action": "confirm",
                                                 "code": mailbox.code(address)})


def json_headers(client: Any, page: str) -> dict[str, str]:
    import re

    html = client.get(page).get_data(as_text=True)
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert match, f"no csrf-token meta on {page}"
    return {"X-CSRFToken": match.group(1), "Accept": "application/json"}


def activate(client: Any, authenticator: SoftAuthenticator) -> Any:
    """"Activer la biométrie" on the offer page, the way webauthn.js does it."""
    headers = json_headers(client, "/biometrie/proposition")
    options = client.post("/biometrie/activation/options", headers=headers)
    assert options.status_code == 200, options.json
    answer = authenticator.register(from_b64url(options.json["publicKey"]["challenge"]))
    return client.post("/biometrie/activation/verifier", json=answer, headers=headers)


def tokens_of(app: Any, client: Any, rp: Any, f: Any, location: str) -> dict[str, Any]:
    assert location.startswith(REDIRECT), location
    answer = query_of_location(location)
    response = redeem(client, rp, answer["code"], f)
    assert response.status_code == 200, response.json
    return {**response.json, "claims": decode_id_token(app, response.json["id_token"])}


def query_of_location(location: str) -> dict[str, str]:
    from urllib.parse import parse_qs, urlsplit

    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def resume(client: Any) -> Any:
    return client.get("/authorize/resume")


def person_without_email(app: Any, *, login_count: int = 0) -> Person:
    from idp.accounts import service
    from idp.extensions import db
    from idp.nir import Nir
    from idp.rfi_adapter.sql import import_records

    with app.app_context():
        import_records(IDENTITIES)
        account = service.create_account(Nir.parse(NIR), PASSWORD)
        account.login_count = login_count
        db.session.commit()
        return Person(account.id, NIR, PASSWORD)


def credentials_of(app: Any, account_id: str) -> list[Any]:
    from idp.webauthn.service import list_credentials

    with app.app_context():
        return [(c.activated_with_mfa, c.activation_acr) for c in list_credentials(account_id)]


def assert_activation_refused(app: Any, client: Any, csrf_token: str, account_id: str) -> None:
    """Both activation endpoints refuse (400, JSON) and no credential is stored."""
    headers = {"X-CSRFToken": csrf_token, "Accept": "application/json"}
    assert client.post("/biometrie/activation/verifier", json={"id": "x"}, headers=headers).status_code == 400
    assert client.post("/biometrie/activation/options", headers=headers).status_code == 400
    assert credentials_of(app, account_id) == []


# --- 1. seed case 1: the address bound during the login --------------------------------------------
def test_attack1_an_address_bound_during_the_login_gives_a_single_factor_login_and_no_trusted_browser(
        app: Any, client: Any, mailbox: Any) -> None:
    person = person_without_email(app)
    rp = make_rp(app, "web")
    f = flow(rp)
    start(client, f)
    assert identify(client, trusted_browser="1").headers["Location"] == "/connexion/email"
    bound = bind_address(client, mailbox, ATTACKER_MAIL)
    # No security code to the address just bound: it would only prove that the attacker reads their own mail.
    assert bound.status_code == 303 and bound.headers["Location"].startswith(REDIRECT)  # the RP answered at once
    assert len([m for m in mailbox.messages if ATTACKER_MAIL in m["to"]]) == 1
    done = bound
    tokens = tokens_of(app, client, rp, f, done.headers["Location"])
    assert tokens["claims"]["acr"] == "eidas1" and tokens["claims"]["amr"] == ["pwd"]
    assert client.get_cookie("idp_trusted") is None  # no trusted browser for 6 months
    # The single-factor session gives a web client no single sign-on: a new login is asked.
    again = client.get("/authorize", query_string=flow(rp).params)
    assert again.status_code == 303 and again.headers["Location"].endswith("/connexion")
    assert person.account_id


def test_attack1_a_federation_client_asking_eidas2_gets_unmet_authentication_requirements(
        app: Any, client: Any, mailbox: Any) -> None:
    person_without_email(app)
    rp = make_rp(app, "federation")
    f = flow(rp, acr_values="eidas2")
    start(client, f)
    identify(client)
    answer = query_of(bind_address(client, mailbox, ATTACKER_MAIL))  # the RP answered at once
    assert answer["error"] == "unmet_authentication_requirements"
    assert answer["state"] == f.params["state"] and answer["iss"] == "http://localhost" and "code" not in answer


def test_attack1_a_credential_enrolled_after_binding_an_address_is_not_two_factor(
        app: Any, client: Any, mailbox: Any) -> None:
    person = person_without_email(app, login_count=1)  # 2nd login: the offer is due
    rp = make_rp(app, "web")
    start(client, flow(rp))
    identify(client)
    assert bind_address(client, mailbox, ATTACKER_MAIL).headers["Location"] == "/biometrie/proposition"
    assert activate(client, SoftAuthenticator()).status_code == 200
    assert credentials_of(app, person.account_id) == [(False, "eidas1")]


def test_attack1_the_second_login_with_the_now_known_address_asks_and_counts_the_code(
        app: Any, client: Any, mailbox: Any) -> None:
    person_without_email(app)
    rp = make_rp(app, "web")
    start(client, flow(rp))
    identify(client)
    bind_address(client, mailbox, "marie@example.org")
    resume(client)
    f = flow(rp, prompt="login")
    start(client, f)
    assert identify(client).headers["Location"] == "/connexion/code"
    done = type_code(client, mailbox.code("marie@example.org"))
    assert done.headers["Location"] == "/biometrie/proposition"  # the 2nd login: the offer, "Plus tard"
    token = csrf_from(client.get("/biometrie/proposition").data)
    client.post("/biometrie/proposition", data={"csrf_token": token, "choice": "later"})
    claims = tokens_of(app, client, rp, f, resume_after_suite(client))["claims"]
    assert claims["acr"] == "eidas2" and claims["amr"] == ["pwd", "mail", "mfa"]


def test_changing_a_validated_address_tells_the_previous_one(app: Any, mailbox: Any) -> None:
    from idp.accounts import service

    person = make_person(app)
    with app.test_request_context():
        account = service.get_account(person.account_id)
        service.start_email_verification(account, ATTACKER_MAIL)
        assert service.confirm_email(account, ATTACKER_MAIL, mailbox.code(ATTACKER_MAIL))
    notice = mailbox.last("marie.dupont@example.org")
    assert "adresse e-mail a été modifiée" in notice["subject"] and "a***@e***.example" in notice["body"]


# --- 2. a browser-session cookie and prompt=consent ------------------------------------------------
def test_attack2_a_consent_interaction_filled_from_a_session_cannot_activate_a_credential(
        app: Any, client: Any, mailbox: Any) -> None:
    person = make_person(app)
    rp = make_rp(app, "web")
    start(client, flow(rp))
    finish_login(app, client, person)  # the victim's session; the attacker holds only its cookie
    start(client, flow(rp, prompt="consent"))
    assert client.get("/connexion").headers["Location"].endswith("/connexion/autorisation")
    token = csrf_from(client.get("/connexion/autorisation").data)
    offer = client.get("/biometrie/proposition")  # no offer page: back to the policy's step (consent)
    assert offer.status_code == 303 and offer.headers["Location"] == "/connexion/suite"
    assert_activation_refused(app, client, token, person.account_id)


def test_activation_is_refused_outside_the_offer_step_of_a_login(app: Any, client: Any, mailbox: Any) -> None:
    """Even a real two-factor login cannot activate once past the offer (or before it)."""
    person = make_person(app)
    rp = make_rp(app, "web")
    start(client, flow(rp))
    identify(client)  # at the code step: no factor yet beyond the password
    headers = {"X-CSRFToken": csrf_from(client.get("/connexion/code").data), "Accept": "application/json"}
    assert client.post("/biometrie/activation/options", headers=headers).status_code == 400
    assert credentials_of(app, person.account_id) == []


# --- 3. a password reset while a login is in flight -----------------------------------------------
def _reset_password(app: Any, account_id: str) -> None:
    from idp.accounts import service

    with app.test_request_context():
        service.set_password(service.get_account(account_id), "Nouveau-Mot-De-Passe-2026")


def test_attack3_a_reset_ends_the_login_waiting_on_the_offer_no_tokens_from_plus_tard(
        app: Any, client: Any, mailbox: Any) -> None:
    person = make_person(app)
    _set_login_count(app, person.account_id, 1)
    rp = make_rp(app, "mobile")
    start(client, flow(rp))
    assert identify(client).headers["Location"] == "/biometrie/proposition"  # the app: password only
    token = csrf_from(client.get("/biometrie/proposition").data)
    _reset_password(app, person.account_id)  # the owner resets the password meanwhile
    later = client.post("/biometrie/proposition", data={"csrf_token": token, "choice": "later"})
    assert later.status_code == 303 and later.headers["Location"] == "/connexion/suite"
    assert client.get("/connexion/suite").headers["Location"] == "/connexion"  # back to identify
    assert resume(client).headers["Location"].endswith("/connexion")  # no code, no tokens
    assert_activation_refused(app, client, token, person.account_id)


def test_attack3_a_reset_ends_a_web_login_waiting_on_the_code(app: Any, client: Any, mailbox: Any) -> None:
    person = make_person(app)
    rp = make_rp(app, "web")
    start(client, flow(rp))
    identify(client)
    code, token = mailbox.code(), csrf_from(client.get("/connexion/code").data)
    _reset_password(app, person.account_id)
    answer = client.post("/connexion/code", data={"csrf_token": token, "code": code})
    assert answer.status_code == 303 and answer.headers["Location"] == "/connexion"
    assert resume(client).headers["Location"].endswith("/connexion")


def test_attack3_auth_time_is_when_the_password_was_checked(app: Any, client: Any, mailbox: Any,
                                                            clock: Any) -> None:
    from idp.clock import timestamp

    person = make_person(app)
    _set_login_count(app, person.account_id, 1)
    rp = make_rp(app, "mobile")
    f = flow(rp)
    start(client, f)
    checked_at = timestamp(clock.now())
    identify(client)
    clock.advance(7 * 60)  # the person lingers on the offer
    token = csrf_from(client.get("/biometrie/proposition").data)
    client.post("/biometrie/proposition", data={"csrf_token": token, "choice": "later"})
    claims = tokens_of(app, client, rp, f, resume_after_suite(client))["claims"]
    assert claims["auth_time"] == checked_at


def resume_after_suite(client: Any) -> str:
    suite = client.get("/connexion/suite")
    assert suite.headers["Location"].startswith(REDIRECT), suite.headers["Location"]  # the RP answered at once
    return str(suite.headers["Location"])


def _set_login_count(app: Any, account_id: str, count: int) -> None:
    from idp.accounts.models import Account
    from idp.extensions import db

    with app.app_context():
        db.session.get(Account, account_id).login_count = count
        db.session.commit()


# --- 4. a credential from a password-only app login ------------------------------------------------
def test_attack4_a_credential_activated_after_an_app_password_login_signs_in_at_eidas1_only(
        app: Any, mailbox: Any) -> None:
    person = make_person(app)
    _set_login_count(app, person.account_id, 1)
    mobile = make_rp(app, "mobile")
    federation = make_rp(app, "federation")
    phone = SoftAuthenticator()
    enrolling = app.test_client()
    start(enrolling, flow(mobile))
    identify(enrolling)
    assert activate(enrolling, phone).status_code == 200
    assert credentials_of(app, person.account_id) == [(False, "eidas1")]
    # Later, on the app: sign in with the fingerprint alone.
    later = app.test_client()
    f = flow(mobile)
    start(later, f)
    headers = json_headers(later, "/connexion")
    options = later.post("/connexion/biometrie/options", headers=headers)
    assertion = phone.authenticate(from_b64url(options.json["publicKey"]["challenge"]))
    verified = later.post("/connexion/biometrie/verifier", json=assertion, headers=headers)
    assert verified.status_code == 200, verified.json
    claims = tokens_of(app, later, mobile, f, resume_after_suite(later))["claims"]
    assert claims["acr"] == "eidas1" and claims["amr"] == ["hwk", "user"]
    # SSO from that session to FranceConnect: not without the password and the code.
    sso = later.get("/authorize", query_string=flow(federation, acr_values="eidas2").params)
    assert sso.status_code == 303 and sso.headers["Location"].endswith("/connexion")


def test_attack3_an_advisor_reset_ends_the_login_in_flight(app: Any, client: Any, mailbox: Any) -> None:
    from idp.accounts import service

    person = make_person(app)
    start(client, flow(make_rp(app, "web")))
    identify(client)
    code, token = mailbox.code(), csrf_from(client.get("/connexion/code").data)
    with app.test_request_context():
        service.reset_account(service.get_account(person.account_id))
    answer = client.post("/connexion/code", data={"csrf_token": token, "code": code})
    assert answer.status_code == 303 and answer.headers["Location"] == "/connexion"
    assert resume(client).headers["Location"].endswith("/connexion")


def test_attack3_disabling_the_account_ends_the_login_in_flight_and_refuses_the_next(
        app: Any, client: Any, mailbox: Any) -> None:
    """The code in the mailbox, then an advisor disables the account: the code no longer finishes the
    login, and the right password afterwards is answered like a wrong one (the status is not told)."""
    from idp.accounts import service

    person = make_person(app)
    start(client, flow(make_rp(app, "web")))
    identify(client)
    code, token = mailbox.code(), csrf_from(client.get("/connexion/code").data)
    with app.test_request_context():
        assert service.set_status(service.get_account(person.account_id), "disabled") is True
    answer = client.post("/connexion/code", data={"csrf_token": token, "code": code})
    assert answer.status_code == 303 and answer.headers["Location"] == "/connexion"
    assert resume(client).headers["Location"].endswith("/connexion")
    again = identify(client)
    assert again.status_code == 200 and "Les informations saisies sont erronées" in again.get_data(as_text=True)


@pytest.mark.parametrize("app_config", [{}])  # the default mapping: nothing here reaches eidas2
def test_an_essential_acr_no_login_here_reaches_is_refused_to_any_client_at_once(app: Any, client: Any) -> None:
    import json

    rp = make_rp(app, "web")
    f = flow(rp, claims=json.dumps({"id_token": {"acr": {"essential": True, "values": ["eidas2"]}}}))
    answer = query_of(client.get("/authorize", query_string=f.params))
    assert answer["error"] == "unmet_authentication_requirements" and answer["state"] == f.params["state"]
    assert answer["iss"] == "http://localhost"


def test_an_essential_acr_is_never_answered_lower(app: Any, client: Any, mailbox: Any) -> None:
    import json

    person = make_person(app)
    rp = make_rp(app, "web")
    start(client, flow(rp))
    finish_login(app, client, person, amr=("pwd",), trusted_browser=True)  # a one-factor session (eidas1)
    f = flow(rp, claims=json.dumps({"id_token": {"acr": {"essential": True, "values": ["eidas2"]}}}))
    start(client, f)  # the session is not enough: a new login
    answer = query_of(finish_login(app, client, person, amr=("pwd",), trusted_browser=True))
    assert answer["error"] == "unmet_authentication_requirements" and "code" not in answer


# --- an address changed while a login is in flight -------------------------------------------------
def test_a_code_sent_to_the_previous_address_is_no_factor_once_the_address_changed(
        app: Any, client: Any, mailbox: Any) -> None:
    """The attacker has the password and the old mailbox; the owner moves to a new address meanwhile."""
    from idp.accounts import service

    person = make_person(app)
    rp = make_rp(app, "web")
    f = flow(rp)
    start(client, f)
    assert identify(client, trusted_browser="1").headers["Location"] == "/connexion/code"
    old_code = mailbox.code("marie.dupont@example.org")
    with app.test_request_context():
        account = service.get_account(person.account_id)
        service.start_email_verification(account, "marie.nouvelle@example.org")
        assert service.confirm_email(account, "marie.nouvelle@example.org", mailbox.code("marie.nouvelle@example.org"))
    done = type_code(client, old_code)
    # The RP answered at once, single-factor, as for an address bound now.
    tokens = tokens_of(app, client, rp, f, done.headers["Location"])
    assert tokens["claims"]["acr"] == "eidas1" and tokens["claims"]["amr"] == ["pwd"]
    assert client.get_cookie("idp_trusted") is None  # no trusted browser from the old mailbox
