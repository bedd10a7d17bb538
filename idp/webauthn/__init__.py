"""webauthn: platform-credential ceremonies (py_webauthn), challenges and credential records (domain code).

It imports neither ``idp.login`` nor ``idp.oidc``: the biometric sign-in step, the offer and the management
pages are the login area's (:mod:`idp.login.biometric_views`), which passes plain values in.
"""

from __future__ import annotations

from flask import Flask

from idp import lifecycle


def init_app(app: Flask) -> None:
    """Register the models (metadata) and subscribe to the account lifecycle."""
    import idp.webauthn.models  # noqa: F401  (tables known to create_all and migrations)
    from idp.webauthn.service import revoke_on_disable, revoke_on_password_change

    lifecycle.password_changed.connect(revoke_on_password_change)
    lifecycle.account_disabled.connect(revoke_on_disable)
