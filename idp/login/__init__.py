"""login: the login interaction (typed record, one policy), assurance (factors -> amr, acr, auth_time),
browser sessions, and the hosted pages (blueprints ``login`` and ``biometric``); DESIGN.md §3."""

from __future__ import annotations

from flask import Flask

from idp import lifecycle


def init_app(app: Flask) -> None:
    """Register the blueprints, the one "interaction expired" page, and the lifecycle subscriptions: a
    password change or an account reset ends the account's browser sessions and its logins in flight."""
    from idp.login.biometric_views import bp as biometric_bp
    from idp.login.interaction import InteractionExpired, end_logins_in_flight
    from idp.login.sessions import end_sessions
    from idp.login.views import bp, expired_page

    app.register_blueprint(bp)
    app.register_blueprint(biometric_bp)
    app.register_error_handler(InteractionExpired, expired_page)
    for event in lifecycle.CREDENTIAL_EVENTS:
        event.connect(end_sessions)
        event.connect(end_logins_in_flight)
