"""mfa: the e-mailed security code, trusted browsers, lockouts and quotas (DESIGN.md §3)."""

from __future__ import annotations

from flask import Flask

from idp import lifecycle


def init_app(app: Flask) -> None:
    """Make the area's tables known to the metadata (``db.create_all`` and migrations); a password change
    or a disabling revokes the account's trusted browsers (a reset deletes them with the account)."""
    from idp.mfa.trusted_browser import revoke_on_event

    lifecycle.password_changed.connect(revoke_on_event)
    lifecycle.account_disabled.connect(revoke_on_event)
