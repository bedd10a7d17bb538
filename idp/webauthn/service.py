"""WebAuthn platform credentials: the functions the login policy calls.

Placeholder signatures agreed between the login journey and the WebAuthn work (issue 6);
the WebAuthn implementation replaces the bodies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from idp.accounts.models import Account
    from idp.login.interaction import Interaction


def has_usable_credential(account_id: str) -> bool:
    """True when the account has an unexpired, unrevoked platform credential."""
    return False


def offer_due(interaction: Interaction, account: Account) -> bool:
    """True when the biometric offer should be shown at the end of this login (DESIGN.md §2)."""
    return False
