""""Sécurité de mon compte" in a real Chromium: a revoked trusted browser is asked the code again, an ended
session's cookie no longer signs in, the e-mail changes with re-authentication and validation (the old address
told, read from the aiosmtpd server); axe-core checks every page of the area on the way."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.login.conftest import EMAIL, NIR, PASSWORD
from tests.webauthn.test_browser import (  # noqa: F401
    ISSUER,
    Live,
    assert_accessible,
    back_at_rp,
    password_and_code,
    relying_party,
)

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

NEW_EMAIL = "alice.nouvelle@example.fr"


@pytest.fixture
def app_config() -> dict[str, Any]:
    return {"issuer": ISSUER}


@pytest.fixture
def live(pg_app: Any, relying_party: None) -> Iterator[Live]:  # noqa: F811
    from idp.accounts.models import Account
    from idp.extensions import db

    served = Live(pg_app)
    with pg_app.app_context():  # no biometric offer in the way of these logins
        db.session.get(Account, served.account_id).biometric_offer_optout = True
        db.session.commit()
    yield served
    served.server.shutdown()


def tab_of(browser: Any) -> Any:
    context = browser.new_context(locale="fr-FR", timezone_id="Europe/Paris", bypass_csp=True)
    context.set_default_timeout(10_000)
    return context.new_page()


def sign_in(tab: Any, live: Live, mailbox: Any, *, trusted: bool = False) -> None:
    """From the RP (prompt=login): NIR and password, the code unless the browser is trusted."""
    mailbox.clear()
    tab.goto(live.authorize_url())
    tab.wait_for_url("**/connexion")
    tab.get_by_role("textbox", name="Numéro de sécurité sociale").fill(NIR)
    tab.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
    if trusted:
        tab.get_by_label(re.compile("^J'utilise mon ordinateur personnel")).check(force=True)
    tab.get_by_role("button", name="Se connecter", exact=True).click()
    tab.wait_for_url(re.compile(r".*/connexion/code$|.*/cb\?.*"))
    if "/connexion/code" in tab.url:
        tab.get_by_label("Code à 6 chiffres").fill(mailbox.code(EMAIL))
        tab.get_by_role("button", name="Valider le code").click()
    back_at_rp(tab)


def reauthenticate(tab: Any, mailbox: Any) -> None:
    """On "Confirmez votre identité": receive the code, type it."""
    tab.wait_for_url("**/compte/securite/verification**")
    assert_accessible(tab)
    mailbox.clear()
    tab.get_by_role("button", name="Recevoir un code de sécurité").click()
    tab.get_by_label("Code à 6 chiffres").fill(mailbox.code(EMAIL))
    tab.get_by_role("button", name="Valider le code").click()


def test_person_ends_a_session_revokes_this_trusted_browser_and_changes_the_email(live: Live, browser: Any,
                                                                                  mailbox: Any) -> None:
    mine, elsewhere = tab_of(browser), tab_of(browser)
    try:
        sign_in(mine, live, mailbox, trusted=True)
        sign_in(elsewhere, live, mailbox)
        mine.goto(ISSUER + "/compte/securite")
        shown = mine.inner_text("main").lower()  # the DSFR badges are upper-cased by CSS
        assert "ce navigateur" in shown and "cette session" in shown
        assert_accessible(mine)

        # End the other session: the code is asked first, then the button works.
        mine.get_by_role("button", name=re.compile("^Fermer la session")).click()
        reauthenticate(mine, mailbox)
        mine.wait_for_url(ISSUER + "/compte/securite")
        mine.get_by_role("button", name=re.compile("^Fermer la session")).click()
        mine.wait_for_url("**/compte/securite?fait=session")
        elsewhere.goto(live.authorize_url().replace("&prompt=login", ""))
        elsewhere.wait_for_url("**/connexion")  # its session cookie no longer signs in

        # Revoke this trusted browser: the next login asks for the code again.
        mine.get_by_role("button", name=re.compile(r"^Révoquer le navigateur .*\(ce navigateur\)$")).click()
        mine.wait_for_url("**/compte/securite?fait=browser")
        password_and_code(mine, mailbox, live)  # waits for /connexion/code: the code is asked again
        back_at_rp(mine)

        # Change the e-mail: re-authenticated, the new address validated by its code, the old one told.
        mine.goto(ISSUER + "/compte/securite/mot-de-passe")
        reauthenticate(mine, mailbox)
        mine.wait_for_url("**/compte/securite/mot-de-passe")
        assert_accessible(mine)
        mine.goto(ISSUER + "/compte/securite/email")
        assert_accessible(mine)
        mine.get_by_label(re.compile("^Nouvelle adresse e-mail")).fill(NEW_EMAIL)
        mine.get_by_role("button", name="Recevoir le code à cette adresse").click()
        mine.wait_for_url("**/compte/securite/email/code")
        assert_accessible(mine)
        mine.get_by_label(re.compile("^Code à 6 chiffres")).fill(mailbox.code(NEW_EMAIL))
        mine.get_by_role("button", name="Valider le code").click()
        mine.wait_for_url("**/compte/securite?fait=email")
        assert NEW_EMAIL in mine.inner_text("main")
        notice = mailbox.last(EMAIL)
        assert "adresse e-mail a été modifiée" in notice["subject"]
        assert "Adresse e-mail modifiée" in mine.inner_text("main")
    finally:
        mine.context.close()
        elsewhere.context.close()
