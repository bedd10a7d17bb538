"""advisors: the advisors' console ("Espace conseiller", ``/conseiller/``) and its staff accounts.

See :mod:`idp.advisors.service` (staff accounts, enrolment, sign-in), :mod:`idp.advisors.console` (what an
advisor does on a person's account) and :mod:`idp.advisors.views`.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the models, the optional staff OpenID client and the ``advisors`` blueprint."""
    import idp.advisors.models  # noqa: F401  (tables known to create_all and migrations)
    from idp.advisors import staff_oidc
    from idp.advisors.views import bp

    staff_oidc.init_app(app)
    app.register_blueprint(bp)
