"""webauthn: platform-credential activation and sign-in (py_webauthn), credential records.

See DESIGN.md §3 and issue 6; :mod:`idp.webauthn.service` is the interface the login policy uses.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the models (metadata) and the ``webauthn`` blueprint."""
    import idp.webauthn.models  # noqa: F401  (tables known to create_all and migrations)
    from idp.webauthn.views import bp

    app.register_blueprint(bp)
