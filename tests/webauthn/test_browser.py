"""Biometrics in a real Chromium with a CDP virtual authenticator (internal transport, user verification).

The IdP is served on 127.0.0.1 and reached as ``http://localhost:<port>`` with that issuer, so that
the page is a secure context and the RP ID is ``localhost``. Each login starts at an RP's
``/authorize`` redirect (``prompt=login``), goes through the real login pages and ends on the RP's
redirect URI (answered by Playwright); the clock is the test's FrozenClock.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import select

from tests.conftest import free_port
from tests.login.conftest import EMAIL, NIR, PASSWORD, make_account

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

RP_PORT = free_port()
RP = f"http://127.0.0.1:{RP_PORT}"  # a real tiny server: script-started navigations are not all routed
PORT = free_port()
ISSUER = f"http://localhost:{PORT}"


@pytest.fixture
def app_config() -> dict[str, Any]:
    """The issuer the browser uses: localhost is a secure context and a valid RP ID."""
    return {"issuer": ISSUER}


class Live:
    """The app served on 127.0.0.1:PORT, a registered web RP, and helpers to log in from it."""

    def __init__(self, app: Any) -> None:
        from werkzeug.serving import make_server

        from idp.oidc.clients import create_client

        self.app = app
        self.server = make_server("127.0.0.1", PORT, app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        with app.app_context():
            self.client_ids = {kind: create_client(name=f"RP {kind}", kind=kind, redirect_uris=[RP + "/cb"])
                               .client.client_id for kind in ("web", "mobile")}
        self.client_id = self.client_ids["web"]
        self.account_id = make_account(app).account_id

    def authorize_url(self, kind: str = "web") -> str:
        """An authorization request (from a web site, or from the mobile app) that asks for a fresh login."""
        challenge = base64.urlsafe_b64encode(hashlib.sha256(b"v" * 64).digest()).rstrip(b"=").decode()
        params = {"response_type": "code", "client_id": self.client_ids[kind], "redirect_uri": RP + "/cb",
                  "scope": "openid", "state": "st", "nonce": "n", "prompt": "login",
                  "code_challenge": challenge, "code_challenge_method": "S256"}
        return f"{ISSUER}/authorize?{urlencode(params)}"

    def set_logins(self, count: int) -> None:
        """Pretend the account already logged in ``count`` times."""
        from idp.accounts.models import Account
        from idp.extensions import db

        with self.app.app_context():
            account = db.session.get(Account, self.account_id)
            account.login_count = count
            db.session.commit()

    def credentials(self) -> list[Any]:
        """The account's stored credentials (all, revoked included)."""
        from idp.extensions import db
        from idp.webauthn.models import WebAuthnCredential

        with self.app.app_context():
            rows = list(db.session.scalars(select(WebAuthnCredential)
                                           .where(WebAuthnCredential.account_id == self.account_id)))
            db.session.expunge_all()
            return rows

    def events(self, name: str) -> list[Any]:
        """Audit events of that name."""
        from idp.audit import AuditEvent
        from idp.extensions import db

        with self.app.app_context():
            rows = list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))
            db.session.expunge_all()
            return rows


class _RelyingParty(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"RP")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the query carries an authorization code: keep it out of the output


@pytest.fixture(scope="module")
def relying_party() -> Iterator[None]:
    """The RP's redirect URI, answered by a plain HTTP server."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", RP_PORT), _RelyingParty)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield
    server.shutdown()


@pytest.fixture
def live(pg_app: Any, relying_party: None) -> Iterator[Live]:
    """The IdP on PostgreSQL + Redis, served for the browser."""
    served = Live(pg_app)
    yield served
    served.server.shutdown()


@pytest.fixture
def tab(page: Any) -> Any:
    """A fresh browser context (own cookies) and page: the shared ``page`` fixture."""
    return page


@pytest.fixture
def phone(tab: Any) -> Any:
    """A CDP virtual platform authenticator with biometrics enrolled (UV succeeds)."""
    cdp = tab.context.new_cdp_session(tab)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    cdp.authenticator_id = added["authenticatorId"]
    return cdp


def password_and_code(page: Any, mailbox: Any, live: Live) -> None:
    """From the RP: identify with NIR and password, then the e-mailed code."""
    mailbox.clear()
    page.goto(live.authorize_url())
    page.wait_for_url("**/connexion")
    page.get_by_role("textbox", name="Numéro de sécurité sociale").fill(NIR)
    page.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Se connecter", exact=True).click()
    page.wait_for_url("**/connexion/code")
    page.get_by_label("Code à 6 chiffres").fill(mailbox.code(EMAIL))
    page.get_by_role("button", name="Valider le code").click()


def back_at_rp(page: Any) -> dict[str, list[str]]:
    """Wait for the authorization response at the RP and return its query."""
    page.wait_for_url(RP + "/cb**")
    query = parse_qs(urlsplit(page.url).query)
    assert query["state"] == ["st"] and query["code"]
    return query


def visited(page: Any) -> list[str]:
    """Record the paths the main frame goes through from now on."""
    paths: list[str] = []
    page.on("framenavigated", lambda frame: paths.append(urlsplit(frame.url).path)
            if frame == page.main_frame else None)
    return paths


def activate(page: Any, mailbox: Any, live: Live) -> None:
    """A second login that accepts the offer with the virtual authenticator."""
    live.set_logins(1)
    password_and_code(page, mailbox, live)
    page.wait_for_url("**/biometrie/proposition")
    page.get_by_role("button", name="Activer la biométrie").click()
    back_at_rp(page)


def biometric_sign_in(page: Any, live: Live) -> None:
    """From the mobile app: "Se connecter avec la biométrie" on the login page replaces password and code."""
    page.goto(live.authorize_url("mobile"))
    page.wait_for_url("**/connexion")
    page.get_by_role("button", name="Se connecter avec la biométrie").click()


# --- the offer rules -------------------------------------------------------------------------
def test_offer_rules_first_login_none_second_login_offer_never_again_after_ne_plus_me_rappeler(
        live: Live, tab: Any, phone: Any, mailbox: Any) -> None:
    paths = visited(tab)
    password_and_code(tab, mailbox, live)  # 1st login
    back_at_rp(tab)
    assert "/biometrie/proposition" not in paths

    password_and_code(tab, mailbox, live)  # 2nd login: the offer
    tab.wait_for_url("**/biometrie/proposition")
    for label in ("Activer la biométrie", "Plus tard", "Ne plus me rappeler"):
        assert tab.get_by_role("button", name=label).is_visible()
    tab.get_by_role("button", name="Ne plus me rappeler").click()
    back_at_rp(tab)

    paths.clear()
    password_and_code(tab, mailbox, live)  # 3rd login: never again
    back_at_rp(tab)
    assert "/biometrie/proposition" not in paths


def test_plus_tard_continues_and_the_offer_comes_back_next_time(live: Live, tab: Any, mailbox: Any) -> None:
    live.set_logins(1)
    password_and_code(tab, mailbox, live)
    tab.wait_for_url("**/biometrie/proposition")
    tab.get_by_role("button", name="Plus tard").click()
    back_at_rp(tab)
    password_and_code(tab, mailbox, live)
    tab.wait_for_url("**/biometrie/proposition")


def test_no_offer_when_terms_are_pending(live: Live, tab: Any, mailbox: Any) -> None:
    from idp.accounts.service import publish_terms

    with live.app.app_context():
        publish_terms("2026-01", "Conditions générales d'utilisation", "Nouvelles conditions.")
    live.set_logins(1)
    paths = visited(tab)
    password_and_code(tab, mailbox, live)
    tab.wait_for_url("**/connexion/conditions")
    # The DSFR label covers the box: check it as a person does, through the label.
    tab.get_by_label("J'ai lu et j'accepte les conditions générales d'utilisation").check(force=True)
    tab.get_by_role("button", name="Continuer").click()
    back_at_rp(tab)
    assert "/biometrie/proposition" not in paths


def test_without_platform_authenticator_the_offer_explains_the_phone_settings(live: Live, tab: Any,
                                                                             mailbox: Any) -> None:
    live.set_logins(1)
    password_and_code(tab, mailbox, live)
    tab.wait_for_url("**/biometrie/proposition")
    help_box = tab.locator("#webauthn-help")
    help_box.wait_for(state="visible")
    assert "Paramètres" in help_box.inner_text() and "Face ID" in help_box.inner_text()
    assert not tab.get_by_role("button", name="Activer la biométrie").is_visible()
    tab.get_by_role("button", name="Plus tard").click()
    back_at_rp(tab)
    assert live.credentials() == []


# --- activation and sign-in ------------------------------------------------------------------
def test_activate_then_sign_in_with_biometrics_instead_of_password_and_code(live: Live, tab: Any, phone: Any,
                                                                          mailbox: Any) -> None:
    activate(tab, mailbox, live)
    (credential,) = live.credentials()
    assert credential.transports == ["internal"]
    assert credential.device_label.endswith("sur Linux")
    assert phone.send("WebAuthn.getCredentials", {"authenticatorId": phone.authenticator_id})["credentials"][0][
        "isResidentCredential"] is True

    paths = visited(tab)
    mailbox.clear()
    biometric_sign_in(tab, live)
    back_at_rp(tab)
    assert "/connexion/code" not in paths and mailbox.messages == []
    assert [e.account_id for e in live.events("webauthn.sign_in")] == [live.account_id]
    (done,) = [e for e in live.events("login_done") if "hwk" in e.data["amr"]]
    assert done.data["amr"] == ["hwk", "user", "mfa"]
    (credential,) = live.credentials()
    assert credential.last_used_at is not None and credential.sign_count > 0


def test_on_web_the_password_is_asked_then_biometrics_replace_the_security_code(live: Live, tab: Any, phone: Any,
                                                                               mailbox: Any) -> None:
    activate(tab, mailbox, live)
    tab.goto(live.authorize_url("web"))
    tab.wait_for_url("**/connexion")
    assert tab.get_by_role("button", name="Se connecter avec la biométrie").count() == 0
    mailbox.clear()
    tab.get_by_role("textbox", name="Numéro de sécurité sociale").fill(NIR)
    tab.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
    tab.get_by_role("button", name="Se connecter", exact=True).click()
    tab.wait_for_url("**/connexion/biometrie")
    tab.get_by_role("button", name="Se connecter avec la biométrie").click()
    back_at_rp(tab)
    assert mailbox.messages == []
    done = [e for e in live.events("login_done") if "hwk" in e.data["amr"]]
    assert done[-1].data["amr"] == ["pwd", "hwk", "user", "mfa"]


def test_expired_credential_is_refused_then_password_and_code_and_activate_again(
        live: Live, tab: Any, phone: Any, mailbox: Any, clock: Any) -> None:
    activate(tab, mailbox, live)
    clock.advance(days=181)
    biometric_sign_in(tab, live)
    alert = tab.locator("#webauthn-login-error")
    alert.wait_for(state="visible")
    assert "Votre biométrie a expiré : elle est valable 6 mois" in alert.inner_text()
    assert tab.url.endswith("/connexion")
    assert len(live.events("webauthn.expired_credential_used")) == 1

    password_and_code(tab, mailbox, live)  # the usual way, and the offer comes back
    tab.wait_for_url("**/biometrie/proposition")
    tab.get_by_role("button", name="Activer la biométrie").click()
    back_at_rp(tab)
    assert len([c for c in live.credentials() if c.revoked_at is None]) == 2


def test_cloned_credential_with_an_older_counter_is_refused_and_audited(live: Live, tab: Any, phone: Any,
                                                                      mailbox: Any) -> None:
    activate(tab, mailbox, live)
    biometric_sign_in(tab, live)
    back_at_rp(tab)
    biometric_sign_in(tab, live)
    back_at_rp(tab)
    (original,) = phone.send("WebAuthn.getCredentials", {"authenticatorId": phone.authenticator_id})["credentials"]
    assert original["signCount"] >= 2
    # The clone: same key on a device whose counter restarts (e.g. exported before the last uses).
    phone.send("WebAuthn.removeCredential", {"authenticatorId": phone.authenticator_id,
                                             "credentialId": original["credentialId"]})
    phone.send("WebAuthn.addCredential", {"authenticatorId": phone.authenticator_id,
                                          "credential": {**original, "signCount": 0}})
    biometric_sign_in(tab, live)
    alert = tab.locator("#webauthn-login-error")
    alert.wait_for(state="visible")
    assert "copiée" in alert.inner_text()
    (event,) = live.events("webauthn.sign_count_regression")
    assert event.account_id == live.account_id and event.data["received"] <= event.data["stored"]
    (credential,) = live.credentials()
    assert credential.revoked_at is not None


# --- accessibility and management ------------------------------------------------------------
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


def assert_accessible(page: Any) -> None:
    """axe-core finds no serious or critical violation on the current page."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => (await axe.run()).violations
        .filter(v => v.impact === 'serious' || v.impact === 'critical')
        .map(v => v.id + ' ' + v.nodes.map(n => n.target.join(' ')).join(', '))""")
    assert found == [], found


def test_activate_from_the_account_page_after_the_email_code_then_sign_in_with_it(live: Live, tab: Any,
                                                                                    phone: Any, mailbox: Any) -> None:
    """First login (no offer yet), then "Ma biométrie": the security code first, then the button runs the real
    webauthn.js ceremony with the platform authenticator; the credential then replaces password and code."""
    password_and_code(tab, mailbox, live)
    back_at_rp(tab)
    assert live.credentials() == []
    tab.goto(ISSUER + "/compte/biometrie")
    tab.get_by_role("link", name="Activer la biométrie sur cet appareil").click()
    tab.wait_for_url("**/compte/securite/verification?suite=biometrie")
    mailbox.clear()
    tab.get_by_role("button", name="Recevoir un code de sécurité").click()
    tab.get_by_label("Code à 6 chiffres").fill(mailbox.code(EMAIL))
    tab.get_by_role("button", name="Valider le code").click()
    tab.wait_for_url("**/compte/biometrie")
    tab.get_by_role("button", name="Activer la biométrie sur cet appareil").click()
    tab.wait_for_url("**/compte/biometrie?activee=1")
    assert "La biométrie est activée sur cet appareil" in tab.inner_text("main")
    (credential,) = live.credentials()
    assert credential.activated_with_mfa is True and credential.transports == ["internal"]
    assert [e.client_id for e in live.events("webauthn.activated")] == ["compte"]
    mailbox.clear()
    biometric_sign_in(tab, live)
    back_at_rp(tab)
    assert mailbox.messages == [] and [e.account_id for e in live.events("webauthn.sign_in")] == [live.account_id]


def test_offer_and_management_pages_are_accessible_and_revoke_works(live: Live, browser: Any, mailbox: Any) -> None:
    # bypass_csp only lets Playwright inject axe-core; the pages' own CSP compliance is checked elsewhere.
    context = browser.new_context(locale="fr-FR", timezone_id="Europe/Paris", bypass_csp=True)
    context.set_default_timeout(10_000)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    try:
        live.set_logins(1)
        password_and_code(page, mailbox, live)
        page.wait_for_url("**/biometrie/proposition")
        assert_accessible(page)
        page.get_by_role("button", name="Activer la biométrie").click()
        back_at_rp(page)
        page.goto(ISSUER + "/compte/biometrie")
        table = page.locator("table")
        assert "sur Linux" in table.inner_text() and "jamais" in table.inner_text()
        assert_accessible(page)
        page.get_by_role("button", name=re.compile("^Désactiver la biométrie de l'appareil")).click()
        page.wait_for_url("**/compte/securite/verification?suite=biometrie")  # a change: the code first
        mailbox.clear()
        page.get_by_role("button", name="Recevoir un code de sécurité").click()
        page.get_by_label("Code à 6 chiffres").fill(mailbox.code(EMAIL))
        page.get_by_role("button", name="Valider le code").click()
        page.wait_for_url("**/compte/biometrie")
        assert [c.revoked_at is not None for c in live.credentials()] == [False]
        page.get_by_role("button", name=re.compile("^Désactiver la biométrie de l'appareil")).click()
        page.wait_for_url("**/compte/biometrie?revoquee=1")
        assert "a été désactivée" in page.inner_text("main")
        assert [c.revoked_at is not None for c in live.credentials()] == [True]
    finally:
        context.close()
