"""The one policy that decides the next step of a login interaction.

``identify (NIR + password) -> [e-mail to validate] -> [security code | biometric] ->
[notifications: terms] -> [biometric offer] -> [consent] -> done``

Anchor: node-oidc-provider ``lib/helpers/interaction_policy/prompts/login.js``; authentik
``flows/planner.py``. Every view calls :func:`next_step` after it changed the interaction and
redirects to the page of the step it returns; no view decides the order on its own. Whether a
factor is needed, and whether what was proven is enough, is :mod:`idp.login.assurance`'s answer.

Every interaction starts at ``identify``, except one for ``prompt=consent`` alone, which /authorize
fills from the live browser session (``Interaction.sso_sid``): nothing is proven in it, it only asks
for consent. An e-mail bound during this login (seed case 1) is no factor: when no second-factor channel
was known before the login, the login goes on single-factor (``assurance`` then decides what it is worth,
and /authorize/resume refuses it to a client whose rule it does not meet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from idp.extensions import db
from idp.login import assurance
from idp.login.assurance import Method
from idp.login.interaction import Consent, Interaction, Offer, Step

if TYPE_CHECKING:
    from idp.accounts.models import Account


def next_step(interaction: Interaction, account: Account | None = None) -> Step:
    """The step that comes next for this interaction."""
    account = account or _load_account(interaction)
    if account is None or not account.is_active:
        return Step.IDENTIFY
    if interaction.from_session:
        return Step.CONSENT if consent_pending(interaction) else Step.DONE
    if not assurance.first_factor_proven(interaction.requirement, interaction.proof):
        return Step.IDENTIFY
    second = _second_factor_step(interaction, account)
    if second is not None:
        return second
    if _terms_pending(account):
        return Step.TERMS
    if offer_due(interaction, account):
        return Step.OFFER
    if consent_pending(interaction):
        return Step.CONSENT
    return Step.DONE


def _second_factor_step(interaction: Interaction, account: Account) -> Step | None:
    """The page of the missing second factor, or None (not needed, satisfied, or no usable channel)."""
    req, proof = interaction.requirement, interaction.proof
    if not assurance.more_factors_needed(req) or assurance.second_factor_satisfied(req, proof):
        return None
    if proof.has(Method.EMAIL_CODE) or proof.has(Method.PLATFORM_CREDENTIAL):
        return None  # proven, and still not enough: more factors cannot raise it here
    if biometric_available(interaction) and not interaction.prefer_code:
        return Step.BIOMETRIC
    if interaction.email_known is None:
        # Seed case 1: an address must be entered and validated, but it proves nothing for this login.
        return Step.EMAIL if not (account.email_validated and account.email) else None
    return Step.CODE


def _load_account(interaction: Interaction) -> Account | None:
    from idp.accounts.models import Account

    if interaction.account_id is None:
        return None
    return db.session.get(Account, interaction.account_id)


def biometric_available(interaction: Interaction) -> bool:
    """The account has a platform credential usable for this client (web: one activated with two factors).

    Looked up once per login (the first time the policy asks, kept on the interaction, which the step saves;
    a new account on the interaction starts without it). The answer only decides whether the biometric
    sign-in is *offered*: a credential revoked since is refused when the sign-in is verified
    (``idp.webauthn.service``), and the person can always choose the code instead."""
    from idp.webauthn.service import has_usable_credential

    if interaction.account_id is None:
        return False
    if interaction.biometric_offered is None:
        with db.session.no_autoflush:  # a read: the step's pending writes go with its own commit
            interaction.biometric_offered = has_usable_credential(interaction.account_id,
                                                                  for_web=interaction.client_kind != "mobile")
    return interaction.biometric_offered


def _terms_pending(account: Account) -> bool:
    from idp.accounts.service import pending_terms

    return pending_terms(account) is not None


def consent_pending(interaction: Interaction) -> bool:
    """``prompt=consent`` (OIDC Core §3.1.2.1): the person allows the service before it gets an answer."""
    return "consent" in (interaction.request.get("prompt") or "").split() and interaction.consent is Consent.PENDING


def offer_due(interaction: Interaction, account: Account) -> bool:
    """The biometric offer comes at the end of this login (seed: from the 2nd login on, once, not after
    another notification, never after "Ne plus me rappeler", not when a usable credential exists)."""
    from idp.webauthn.service import offer_due as account_offer_due

    if interaction.from_session or interaction.proof.has(Method.PLATFORM_CREDENTIAL):
        return False
    if interaction.offer is not Offer.NOT_SHOWN or interaction.terms_shown:
        return False
    return account_offer_due(account, for_web=interaction.client_kind != "mobile")


def activation_open(interaction: Interaction, account: Account | None) -> bool:
    """WebAuthn activation is possible now: the offer page of a real login (never one filled from a browser
    session) that proved its factors and whose account did not change since (epoch checked on read)."""
    if account is None or not account.is_active or interaction.from_session:
        return False
    if interaction.offer is not Offer.SHOWN or not interaction.proof.factors:
        return False
    return next_step(interaction, account) in (Step.CONSENT, Step.DONE)
