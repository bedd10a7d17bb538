"""mfa: the e-mailed security code, trusted browsers, lockouts and quotas (DESIGN.md §3)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Make the area's tables known to the metadata (``db.create_all`` and migrations)."""
    import idp.mfa.trusted_browser  # noqa: F401
