"""oidc: the OpenID Connect provider on Authlib (DESIGN.md §3, §4)."""

from __future__ import annotations

from flask import Flask

from idp import lifecycle


def init_app(app: Flask) -> None:
    """Register the models, the authorization server, the blueprints and (in development) the demo RP."""
    import idp.oidc.models  # noqa: F401 - tables known to the metadata (create_all, migrations)
    from idp.extensions import csrf
    from idp.oidc.logout import notify_ended_sessions
    from idp.oidc.server import init_server
    from idp.oidc.tokens import revoke_on_event
    from idp.oidc.views import api_bp, authorize, logout, oidc_bp

    init_server(app)
    for event in lifecycle.CREDENTIAL_EVENTS:  # tokens issued before a password change or a reset
        event.connect(revoke_on_event)
    lifecycle.sessions_ended.connect(notify_ended_sessions)  # their relying parties: back-channel logout
    # RPs post to these without our CSRF token (RFC 6749 §3.1, RP-Initiated Logout §2); the logout
    # confirmation form checks its token itself.
    csrf.exempt(api_bp)
    csrf.exempt(authorize)
    csrf.exempt(logout)
    app.register_blueprint(oidc_bp)
    app.register_blueprint(api_bp)
    if not app.extensions["idp.settings"].is_production:
        from idp.oidc.demo import demo_bp

        app.register_blueprint(demo_bp)
