"""login: the login interaction (state machine) and the hosted pages (DESIGN.md §3)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the ``login`` blueprint (pages under ``/connexion``)."""
    from idp.login.views import bp

    app.register_blueprint(bp)
