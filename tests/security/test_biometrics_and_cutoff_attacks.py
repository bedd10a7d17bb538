"""The review of the activation from "Ma biométrie", the account's cut-off ``grants_not_before`` and the
back-channel logout of ended sessions, replayed over HTTP and shown closed: a credential-only login activates
no new credential; the cut-off is kept to the whole second rounded up; a session touched while the password
changes is not brought back to life; closing one session tells its relying party.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from tests.conftest import csrf_from
from tests.oidc.conftest import EMAIL, flow, login, make_person, make_rp, query_of, redeem
from tests.webauthn.authenticator import SoftAuthenticator, from_b64url

META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
OPTIONS, VERIFY = "/compte/biometrie/activation/options", "/compte/biometrie/activation/verifier"
NEW_PASSWORD = "Nouveau-Tandem-Orange-77"


def _reauthenticate(client: Any, mailbox: Any, suite: str = "biometrie") -> None:
    """The security page's e-mail code, typed in this very session."""
    page = client.get(f"/compte/securite/verification?suite={suite}")
    assert page.status_code == 200, page.status_code
    token = csrf_from(page.data)
    client.post("/compte/securite/verification/envoi", data={"csrf_token": token, "suite": suite})
    done = client.post("/compte/securite/verification", data={"csrf_token": token, "suite": suite,
                                                              "code": mailbox.code(EMAIL)})
    assert done.status_code == 303, done.data[:300]


def _json_headers(client: Any, page: str = "/compte/biometrie") -> dict[str, str]:
    match = META_CSRF.search(client.get(page).get_data(as_text=True))
    assert match, f"no csrf meta on {page}"
    return {"X-CSRFToken": match.group(1), "Accept": "application/json",
            "User-Agent": "Mozilla/5.0 (Linux; Android 14) Chrome/126.0"}


def _activate_on_account_page(client: Any, phone: SoftAuthenticator) -> Any:
    headers = _json_headers(client)
    options = client.post(OPTIONS, headers=headers)
    assert options.status_code == 200, options.get_json()
    return client.post(VERIFY, json=phone.register(from_b64url(options.get_json()["publicKey"]["challenge"])),
                       headers=headers)


def _credentials(app: Any, account_id: str) -> list[Any]:
    from idp.webauthn import service

    with app.app_context():
        return service.list_credentials(account_id)


def _session_id(client: Any) -> str:
    cookie = client.get_cookie("idp_session")
    assert cookie is not None
    return str(cookie.value)


# --- 1. chaining: a credential-only login mints a fresh credential, the password never asked again ---------
def test_a_biometric_only_app_login_cannot_renew_the_credential_without_the_password(app: Any, clock: Any,
                                                                                     mailbox: Any) -> None:
    """Day 0: password + code on the web, "Ma biométrie" activates phone credential P1 (6 months, 2 factors).
    Day 175: on the app, P1 alone signs in (the credential replaces the password there), then "Ma biométrie"
    in that session activates P2, valid 6 more months and worth two factors again. Repeating this, the
    password is never proven again (the login flow itself never offers an activation after a credential
    login, idp.login.policy.offer_due). Refused: a session whose login did not prove the password activates
    nothing."""
    person = make_person(app)
    web, mobile = make_rp(app, "web"), make_rp(app, "mobile")
    desktop = app.test_client()
    login(app, desktop, person, flow(web))  # password + e-mail code
    _reauthenticate(desktop, mailbox)
    p1 = SoftAuthenticator()
    assert _activate_on_account_page(desktop, p1).status_code == 200
    (first,) = _credentials(app, person.account_id)
    assert first.activated_with_mfa is True

    clock.advance(days=175)
    phone = app.test_client()
    f = flow(mobile)
    assert phone.get("/authorize", query_string=f.params).headers["Location"].endswith("/connexion")
    headers = _json_headers(phone, "/connexion")
    options = phone.post("/connexion/biometrie/options", headers=headers)
    signed = phone.post("/connexion/biometrie/verifier", headers=headers,
                        json=p1.authenticate(from_b64url(options.get_json()["publicKey"]["challenge"])))
    assert signed.status_code == 200, signed.get_json()
    suite = phone.get("/connexion/suite")
    assert suite.status_code == 303 and "code" in query_of(suite)  # the app is answered: no password typed

    page = phone.get("/compte/biometrie").get_data(as_text=True)
    assert "connectez-vous avec votre numéro de sécurité" in page and 'id="webauthn-activate"' not in page
    _reauthenticate(phone, mailbox)
    refused = phone.post(OPTIONS, headers=_json_headers(phone))
    assert refused.status_code == 403 and refused.get_json()["error"] == "password_required"
    assert [c.id for c in _credentials(app, person.account_id)] == [first.id]


# --- 2. the cut-off's whole-second granularity ---------------------------------------------------------
def test_a_code_from_a_login_in_the_same_second_as_the_disable_is_refused_after_the_enable(
        app: Any, clock: Any) -> None:
    """auth_time is whole seconds: a login whose password was checked at 13:30:00.1 and the advisor's disable
    at 13:30:00.6 fall in the same second. The cut-off is stored rounded up to the next second, so the code
    waiting in Redis (codes are not revoked by the disable) is refused even once the account is enabled."""
    from idp.accounts import service

    person = make_person(app)
    rp = make_rp(app)
    browser, api = app.test_client(), app.test_client()
    clock.advance(seconds=0.1)
    f = flow(rp)
    code = login(app, browser, person, f)["code"]
    clock.advance(seconds=0.5)
    with app.app_context():
        account = service.get_account(person.account_id)
        assert account is not None
        assert service.set_status(account, "disabled") is True
        assert service.set_status(account, "active") is True
    issued = redeem(api, rp, code, f)
    assert issued.status_code == 400 and issued.json["error"] == "invalid_grant"


# --- 3. a session that end_all missed keeps the account pages (and enrols) --------------------------------
def test_a_session_touched_while_the_password_changes_is_not_brought_back_to_life(
        app: Any, clock: Any, mailbox: Any, monkeypatch: Any) -> None:
    """SessionStore.get() reads the session, then _write()s it back to touch last_seen (plain SET). The owner's
    password change (end_all: GETDEL + SREM) landing between the two resurrects the attacker's session, and
    out of the account's index: the owner's "Mes sessions" no longer lists it, a later end_all (another
    password change) no longer finds it. SSO refuses it (authorize.session_cut_off), but the account pages
    only check the account's status, not its cut-off: the attacker still reads /compte/securite (full e-mail,
    sessions, devices, events) and, with the mailbox's code, activates a 2-factor credential AFTER the
    password change revoked every credential (on the app that credential replaces the password).

    An attacker widens the window at will by keeping requests in flight on the session (each GET of
    /compte/biometrie touches it). The touch writes with SET XX: a session ended meanwhile stays ended."""
    from idp.login import sessions as sessions_module
    from idp.login.sessions import sessions

    person = make_person(app)
    rp = make_rp(app)
    owner, attacker = app.test_client(), app.test_client()
    login(app, owner, person, flow(rp))
    login(app, attacker, person, flow(rp))  # the attacker's session (stolen cookie, or their own login)
    attacker_id = _session_id(attacker)
    clock.advance(seconds=30)  # the owner changes the password a little later
    _reauthenticate(owner, mailbox, suite="mot-de-passe")
    form = owner.get("/compte/securite/mot-de-passe")
    token = csrf_from(form.data)

    real_write = sessions_module.SessionStore._write
    raced: list[bool] = []
    errors: list[BaseException] = []

    def owner_changes_password() -> None:
        try:
            answer = owner.post("/compte/securite/mot-de-passe",
                                data={"csrf_token": token, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
            assert answer.status_code == 303, answer.data[:300]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def write(self: Any, session: Any) -> None:
        if session.id == attacker_id and not raced:
            raced.append(True)  # between the touch's GET and its SET, another worker runs the password change
            worker = threading.Thread(target=owner_changes_password)
            worker.start()
            worker.join(30)
        real_write(self, session)

    monkeypatch.setattr(sessions_module.SessionStore, "_write", write)
    assert attacker.get("/compte/biometrie").status_code == 200
    monkeypatch.setattr(sessions_module.SessionStore, "_write", real_write)
    assert raced and not errors, errors

    with app.app_context():
        assert sessions.get(attacker_id, touch=False) is None  # ended by the password change, and stays so
    assert attacker.get("/compte/securite").status_code == 401
    assert attacker.post(OPTIONS, headers={"Accept": "application/json"}).status_code in (400, 401)
    assert _credentials(app, person.account_id) == []


# --- 4. ending ONE other session sends no back-channel logout -----------------------------------------------
def test_ending_one_other_session_from_the_security_page_tells_its_relying_party(
        app: Any, mailbox: Any, monkeypatch: Any) -> None:
    """"Fermer" on ONE session (a stolen one, typically) tells its relying party, as the endings of every
    session do (password change, disable, advisor, "Fermer toutes les autres sessions")."""
    import idp.oidc.logout as logout
    from idp.accounts import security as account_security
    from idp.login.sessions import sessions
    from idp.notify import outbox

    sent: list[str] = []

    def post(url: str, data: Any, **_: Any) -> Any:
        sent.append(url)
        return type("Answer", (), {"status_code": 200})()

    monkeypatch.setattr(logout.requests, "post", post)
    person = make_person(app)
    rp = make_rp(app, "web", backchannel_logout_uri="https://rp.example/backchannel")
    owner, attacker = app.test_client(), app.test_client()
    f = flow(rp)
    assert redeem(attacker, rp, login(app, attacker, person, f)["code"], f).status_code == 200
    login(app, owner, person, flow(rp))
    with app.app_context():
        stolen = sessions.get(_session_id(attacker), touch=False)
        assert stolen is not None and stolen.clients == [rp.client_id]
        handle = account_security.session_handle(stolen)
    _reauthenticate(owner, mailbox, suite="securite")
    token = csrf_from(owner.get("/compte/securite").data)
    closed = owner.post(f"/compte/securite/sessions/{handle}/fermer", data={"csrf_token": token})
    assert closed.status_code == 303
    outbox.drain()
    with app.app_context():
        assert sessions.get(_session_id(attacker), touch=False) is None
    assert sent == ["https://rp.example/backchannel"]
