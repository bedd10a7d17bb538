"""accounts: accounts, passwords (argon2id), lifecycle (creation, re-creation, forgotten password,
advisor reset) and terms of use; see DESIGN.md §3 and :mod:`idp.accounts.service` for the API."""

from __future__ import annotations

from flask import Flask

from idp import lifecycle


def init_app(app: Flask) -> None:
    """Register the models (metadata), the French pages, the demo step and the area's lifecycle receivers
    (reset links die with a password change, a reset or an e-mail change; the previous address is told of an
    e-mail change)."""
    # Imported for their side effects: the tables join the metadata, the demo step registers once.
    import idp.accounts.demo
    import idp.accounts.models  # noqa: F401
    from idp.accounts.recovery import forget_links_on_event
    from idp.accounts.security_views import bp as security_bp
    from idp.accounts.service import forget_account_state, tell_previous_address
    from idp.accounts.views import init_views

    init_views(app)
    app.register_blueprint(security_bp)
    for event in lifecycle.CREDENTIAL_EVENTS:
        event.connect(forget_links_on_event)
    lifecycle.account_reset.connect(forget_account_state)
    lifecycle.email_changed.connect(tell_previous_address)
    lifecycle.email_changed.connect(forget_links_on_event)  # a link went to the previous address
