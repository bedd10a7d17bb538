"""accounts: accounts, passwords (argon2id), lifecycle (creation, re-creation, forgotten password,
advisor reset) and terms of use; see DESIGN.md §3 and :mod:`idp.accounts.service` for the API."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the models (metadata), the French pages and the demo step."""
    import idp.accounts.models  # noqa: F401  (tables known to create_all and migrations)
    import idp.accounts.demo  # noqa: F401  (registers its step in idp.demo.DEMO_STEPS once)

    try:
        from idp.accounts.views import init_views
    except ImportError:  # pragma: no cover - pages land in a later commit
        return
    init_views(app)
