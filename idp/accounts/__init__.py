"""accounts: accounts, passwords (argon2id), lifecycle (creation, re-creation, forgotten password,
advisor reset) and terms of use; see DESIGN.md §3 and :mod:`idp.accounts.service` for the API."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the models (metadata), the French pages and the demo step."""
    # Imported for their side effects: the tables join the metadata, the demo step registers once.
    import idp.accounts.demo
    import idp.accounts.models  # noqa: F401
    from idp.accounts.views import init_views

    init_views(app)
