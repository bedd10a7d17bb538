"""The advisors' console in a real Chromium with a CDP virtual security key (USB, user verification).

One journey, to keep the browser time short: enrolment from the operator's link, sign-out, sign-in with
password and key, unlock of a locked account (the person then signs in at once), reset and the SMS
provisional code, the supervisor's list refused to an advisor, and a person's page refused to the advisor's
session; axe-core checks every console page on the way.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.accounts.conftest import PASSWORD, RecordingSms, by_name, demo_records, make_account
from tests.advisors.conftest import ADVISOR_PASSWORD, create_link
from tests.conftest import free_port
from tests.login.conftest import bind, new_interaction, post_identify
from tests.webauthn.test_browser import assert_accessible

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

PORT = free_port()
ISSUER = f"http://localhost:{PORT}"
MARIE = by_name(demo_records(), "DUPONT")


@pytest.fixture
def app_config(sms: RecordingSms) -> dict[str, Any]:
    return {"issuer": ISSUER, "sms": sms}


@pytest.fixture
def served(pg_app: Any) -> Iterator[Any]:
    from werkzeug.serving import make_server

    from idp.rfi_adapter.sql import import_records

    with pg_app.app_context():
        import_records(demo_records())
    server = make_server("127.0.0.1", PORT, pg_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield pg_app
    server.shutdown()


@pytest.fixture
def console_tab(browser: Any) -> Iterator[Any]:
    """A context that lets Playwright inject axe-core, with a virtual USB security key (UV by PIN)."""
    context = browser.new_context(locale="fr-FR", timezone_id="Europe/Paris", bypass_csp=True)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    cdp = context.new_cdp_session(tab)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "usb", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    yield tab
    context.close()


def lock(app: Any, account_id: str) -> None:
    from idp.mfa import limits

    with app.app_context():
        for _ in range(3):
            limits.register_failure("pwd", account_id)


def run_action(tab: Any, label: str, reason: str) -> None:
    tab.get_by_label(re.compile(f"^Motif : {label.lower()}")).fill(reason)
    tab.get_by_role("button", name=label).click()
    tab.wait_for_url(re.compile(r".*fait="))


def test_advisor_enrols_signs_in_with_a_security_key_unlocks_resets_and_sends_the_sms_code(
        served: Any, console_tab: Any, sms: RecordingSms) -> None:
    tab = console_tab
    tab.goto(ISSUER + create_link(served, "claire.conseil@assurance-maladie.fr"))
    assert_accessible(tab)
    tab.locator("#password").fill(ADVISOR_PASSWORD)
    tab.get_by_label("Confirmation du mot de passe (obligatoire)").fill(ADVISOR_PASSWORD)
    tab.get_by_role("button", name="Enregistrer le mot de passe").click()
    tab.wait_for_url("**/conseiller/inscription/cle")
    assert_accessible(tab)
    tab.get_by_role("button", name="Enregistrer ma clé de sécurité").click()
    tab.wait_for_url(ISSUER + "/conseiller/")
    tab.get_by_role("button", name=re.compile("^Se déconnecter")).click()
    tab.wait_for_url("**/conseiller/connexion?deconnecte=1")
    assert_accessible(tab)

    tab.get_by_label("Adresse e-mail professionnelle").fill("claire.conseil@assurance-maladie.fr")
    tab.get_by_label("Mot de passe", exact=True).fill(ADVISOR_PASSWORD)
    tab.get_by_role("button", name="Continuer").click()
    tab.wait_for_url("**/conseiller/connexion/cle")
    assert_accessible(tab)
    tab.get_by_role("button", name="Utiliser ma clé de sécurité").click()
    tab.wait_for_url(ISSUER + "/conseiller/")
    assert_accessible(tab)

    account_id = make_account(served, MARIE["nir"])
    lock(served, account_id)
    tab.get_by_label(re.compile("^Numéro de sécurité sociale")).fill(MARIE["nir"])
    tab.get_by_role("button", name="Rechercher").click()
    tab.wait_for_url("**/conseiller/dossier/*")
    assert "bloqué jusqu'au" in tab.inner_text("main") and MARIE["nir"] not in tab.content()
    assert_accessible(tab)
    run_action(tab, "Débloquer le compte", "Assurée bloquée, appel 3646")
    person = served.test_client()
    bind(person, new_interaction(served))
    assert post_identify(person, MARIE["nir"], PASSWORD).location.endswith("/connexion/code")  # at once

    run_action(tab, "Réinitialiser le compte", "Plus accès à sa messagerie")
    assert "Aucun compte" in tab.inner_text("main")
    assert_accessible(tab)
    run_action(tab, "Envoyer un code provisoire par SMS", "Recréation du compte")
    assert "Code provisoire envoyé par SMS au +33 6 ** ** ** 01" in tab.inner_text("main")
    assert sms.sent[-1][0] == MARIE["phone"] and re.search(r"\b\d{8}\b", sms.sent[-1][1])

    journal = tab.goto(ISSUER + "/conseiller/journal")
    assert journal is not None and journal.status == 403
    assert tab.goto(ISSUER + "/compte/biometrie").status == 401  # the advisor session is no person's session
