"""The one policy that decides the next step of a login interaction.

``identify (NIR + password) -> [e-mail to validate] -> [security code | biometric] ->
[notifications: terms] -> [biometric offer] -> [consent] -> done``

Anchor: node-oidc-provider ``lib/helpers/interaction_policy/prompts/login.js``; authentik
``flows/planner.py``. Every view calls :func:`next_step` after it changed the interaction and
redirects to the page of the step it returns; no view decides the order on its own.

Inputs: the client kind (``web`` | ``mobile`` | ``federation``), the account, the trusted browser
(``interaction.data["trusted_browser_ok"]``, set by the identify view after checking the cookie),
the authorization request (``acr_values``; ``prompt`` and ``max_age`` are why the interaction exists
at all: OIDC creates it whenever a fresh login is needed, so every interaction starts at
``identify``, except one for ``prompt=consent`` alone, which /authorize fills from the live browser
session so that it starts at ``consent``), and ``interaction.data["require_email_code"]`` (per-client
setting of federation clients). A platform credential with user verification (amr ``hwk`` + ``user``) is two factors by
itself (possession + inherence). DESIGN.md §1: on the mobile app it replaces password and code; on web and
federation clients it replaces only the code, so the password is still asked first there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from idp.extensions import db, settings
from idp.login.interaction import Interaction

if TYPE_CHECKING:
    from idp.accounts.models import Account

STEPS = ("identify", "email", "code", "biometric", "terms", "offer", "consent", "done")


def next_step(interaction: Interaction, account: Account | None = None) -> str:
    """The step that comes next for this interaction (a name from :data:`STEPS`)."""
    account = account or _load_account(interaction)
    if account is None or not account.is_active or not _first_factor_done(interaction):
        return "identify"
    if second_factor_required(interaction) and not _second_factor_done(interaction):
        if biometric_available(interaction) and not interaction.data.get("prefer_code"):
            return "biometric"
        if not account.email_validated or not account.email:
            return "email"
        return "code"
    if _terms_pending(account):
        return "terms"
    if _offer_due(interaction, account):
        return "offer"
    if consent_pending(interaction):
        return "consent"
    return "done"


def _load_account(interaction: Interaction) -> Account | None:
    from idp.accounts.models import Account

    if interaction.account_id is None:
        return None
    return db.session.get(Account, interaction.account_id)


def _platform_credential(interaction: Interaction) -> bool:
    return "hwk" in interaction.amr and "user" in interaction.amr


def _first_factor_done(interaction: Interaction) -> bool:
    if interaction.client_kind == "mobile":
        return "pwd" in interaction.amr or _platform_credential(interaction)
    return "pwd" in interaction.amr


def _second_factor_done(interaction: Interaction) -> bool:
    return "mail" in interaction.amr or _platform_credential(interaction)


def mfa_requested(interaction: Interaction) -> bool:
    """True when the RP asked (``acr_values``) for the multi-factor level only."""
    s = settings()
    wanted = (interaction.request.get("acr_values") or "").split()
    if interaction.data.get("required_acr"):  # set by /authorize from acr_values or an essential acr claim
        wanted = [str(interaction.data["required_acr"])]
    # eidas3 is above what this IdP can give; asking for it still means "at least two factors".
    strong = {s.acr_mfa, "eidas2", "eidas3"}
    return bool(wanted) and all(value in strong for value in wanted)


def second_factor_required(interaction: Interaction) -> bool:
    """Whether this login needs a second factor (security code or platform credential)."""
    if interaction.client_kind == "mobile":
        # Seed: the app never asks for the e-mail code (attacks target the web).
        return False
    if mfa_requested(interaction):
        return True
    if interaction.client_kind == "federation" and not interaction.data.get("require_email_code", True):
        return False
    # Web (and federation with the setting on): the code, unless the browser is a trusted one.
    return not interaction.data.get("trusted_browser_ok", False)


def biometric_available(interaction: Interaction) -> bool:
    """The account has a usable platform credential."""
    from idp.webauthn.service import has_usable_credential

    if interaction.account_id is None:
        return False
    return has_usable_credential(interaction.account_id, for_web=interaction.client_kind != "mobile")


def _terms_pending(account: Account) -> bool:
    from idp.accounts.service import pending_terms

    return pending_terms(account) is not None


def consent_pending(interaction: Interaction) -> bool:
    """``prompt=consent`` (OIDC Core §3.1.2.1): the person allows the service before it gets an answer."""
    return "consent" in (interaction.request.get("prompt") or "").split() and not interaction.data.get("consented")


def _offer_due(interaction: Interaction, account: Account) -> bool:
    from idp.webauthn.service import offer_due

    if _platform_credential(interaction) or interaction.data.get("session_sid"):
        return False  # (the second: consent asked within a live session, no login happened)
    # Seed: the offer appears only when no other notification was shown in this login, and once.
    if interaction.data.get("offer_shown") or interaction.data.get("notified"):
        return False
    return offer_due(interaction, account)


def authentication_context(amr: list[str]) -> tuple[str, list[str]]:
    """acr and amr (RFC 8176) from the completed methods, in one place.

    Two distinct factors (password + e-mail code, or a platform credential with user verification)
    add ``mfa`` and give the configured multi-factor acr; otherwise the password acr."""
    s = settings()
    methods = [m for m in amr if m != "mfa"]
    factors = ("pwd" in methods) + ("mail" in methods) + ("hwk" in methods and "user" in methods) * 2
    if factors >= 2:
        return s.acr_mfa, [*methods, "mfa"]
    return s.acr_password, methods
