"""A new password on an interaction that already knows an account starts the login from scratch.

Review finding: account A's second factor (e-mail code or platform credential) must never carry over to
account B identified afterwards on the same interaction (MFA bypass), nor A's "code sent" or offer flags."""

from __future__ import annotations

import html

from idp.login import assurance
from idp.login.interaction import Offer
from tests.conftest import csrf_from
from tests.login.conftest import NIR, OTHER_NIR, PASSWORD, bind, make_account, new_interaction, post_code, post_identify

BOB = "bob@exemple.fr"


def _post_identify_anywhere(client, nir, password=PASSWORD):
    """Post the identify form from whatever step the interaction is at (as an attacker would)."""
    token = csrf_from(client.get("/connexion", follow_redirects=True).data)
    return client.post("/connexion", data={"csrf_token": token, "nir": nir, "password": password})


def _interaction(app, client):
    from idp.login.interaction import interactions

    with app.test_request_context():
        return interactions.get(client.get_cookie("idp_interaction", domain="localhost").value)


def _amr(interaction):
    return assurance.amr(interaction.proof)


def _save(app, interaction):
    from idp.login.interaction import interactions

    with app.test_request_context():
        interactions.save(interaction)


def test_identifying_as_another_account_after_a_code_asks_a_code_sent_to_that_account(app, client, mailbox):
    from idp.accounts import service

    make_account(app)  # A, the attacker's own account
    make_account(app, nir=OTHER_NIR, email=BOB)  # B, the victim
    with app.app_context():
        service.publish_terms("2026-01", "Conditions générales d'utilisation", "Article 1.")
    bind(client, new_interaction(app))
    post_identify(client, NIR)
    assert post_code(client, mailbox.code()).headers["Location"] == "/connexion/conditions"  # stops at terms
    assert _amr(_interaction(app, client)) == ["pwd", "mail", "mfa"]
    mailbox.clear()

    response = _post_identify_anywhere(client, OTHER_NIR)  # B's NIR and password on the same interaction

    assert response.headers["Location"] == "/connexion/code"
    interaction = _interaction(app, client)
    assert _amr(interaction) == ["pwd"]
    assert [m["to"] for m in mailbox.messages] == [BOB]  # a fresh code went to B, not "already sent" from A
    assert interaction.code_sent_at and interaction.code_sent_to == BOB
    assert "b***@e***.fr" in html.unescape(client.get("/connexion/code").get_data(as_text=True))
    done = post_code(client, mailbox.code(BOB))
    assert done.headers["Location"] == "/connexion/conditions"  # B too has the terms to accept
    assert _amr(_interaction(app, client)) == ["pwd", "mail", "mfa"]


def test_identifying_as_another_account_drops_the_previous_biometric_factor_and_flags(app, client, mailbox):
    from idp.accounts import service

    alice = make_account(app)
    with app.app_context():
        service.publish_terms("2026-01", "Conditions générales d'utilisation", "Article 1.")
    make_account(app, nir=OTHER_NIR, email=BOB)
    bind(client, new_interaction(app))
    post_identify(client, NIR)
    interaction = _interaction(app, client)
    assert interaction.account_id == alice.account_id
    # What the WebAuthn sign-in and the later steps leave on A's interaction.
    interaction.proof.add(assurance.platform_factor(1, activation_factors=2, activation_acr="eidas2"))
    interaction.proof.add(assurance.trusted_browser_factor(1))
    interaction.trusted_browser_wanted = True
    interaction.offer, interaction.terms_shown, interaction.prefer_code = Offer.LATER, True, True
    interaction.email_pending = "a@b.fr"
    _save(app, interaction)
    mailbox.clear()

    assert _post_identify_anywhere(client, OTHER_NIR).headers["Location"] == "/connexion/code"

    again = _interaction(app, client)
    assert again.account_id != alice.account_id and _amr(again) == ["pwd"] and not again.trusted_browser_wanted
    assert len(again.proof.factors) == 1  # the password only: no credential, no trusted browser
    assert (again.offer, again.terms_shown, again.prefer_code, again.email_pending) == (Offer.NOT_SHOWN, False,
                                                                                         False, None)
    assert [m["to"] for m in mailbox.messages] == [BOB]


def test_a_wrong_password_for_another_account_leaves_the_interaction_unchanged(app, client, mailbox):
    alice = make_account(app)
    make_account(app, nir=OTHER_NIR, email=BOB)
    bind(client, new_interaction(app))
    post_identify(client, NIR)
    response = _post_identify_anywhere(client, OTHER_NIR, "Pas-Le-Bon-2")
    assert response.status_code == 200
    interaction = _interaction(app, client)
    assert interaction.account_id == alice.account_id and _amr(interaction) == ["pwd"]
    assert interaction.code_sent_at
