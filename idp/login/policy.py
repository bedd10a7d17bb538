"""The one policy that decides the next step of a login interaction.

``identify (NIR + password) -> [e-mail to validate] -> [security code | biometric] ->
[notifications: terms] -> [biometric offer] -> done``

Anchor: node-oidc-provider ``lib/helpers/interaction_policy/prompts/login.js``; authentik
``flows/planner.py``. Every view calls :func:`next_step` after it changed the interaction and
redirects to the page of the step it returns; no view decides the order on its own.
"""

from __future__ import annotations

from idp.extensions import settings
from idp.login.interaction import Interaction

STEPS = ("identify", "email", "code", "biometric", "terms", "offer", "done")


def next_step(interaction: Interaction) -> str:
    """The step that comes next for this interaction (a name from :data:`STEPS`)."""
    if interaction.account_id is None or ("pwd" not in interaction.amr and "hwk" not in interaction.amr):
        return "identify"
    return "done"


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
