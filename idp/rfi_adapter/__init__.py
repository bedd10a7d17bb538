"""Identity registry (RFI) adapters behind one Protocol; ``IDP_RFI_BACKEND`` chooses sql or http."""

from __future__ import annotations

from typing import cast

from flask import Flask, current_app

from idp.rfi_adapter.base import Identity, IdentityNotFound, RegistryUnavailable, RfiAdapter

__all__ = ["Identity", "IdentityNotFound", "RegistryUnavailable", "RfiAdapter", "get_rfi", "init_app"]


def init_app(app: Flask, adapter: RfiAdapter | None = None) -> None:
    """Attach the configured adapter (or an injected one, for tests)."""
    if adapter is None:
        settings = app.extensions["idp.settings"]
        if settings.rfi_backend == "http":
            from idp.rfi_adapter.http import HttpRfiAdapter

            adapter = HttpRfiAdapter.from_settings(settings)
        else:
            from idp.rfi_adapter.sql import SqlRfiAdapter

            adapter = SqlRfiAdapter()
    else:
        # The sql adapter's table must still be known to the metadata.
        import idp.rfi_adapter.sql  # noqa: F401
    app.extensions["idp.rfi"] = adapter


def get_rfi() -> RfiAdapter:
    """The application's RFI adapter."""
    return cast(RfiAdapter, current_app.extensions["idp.rfi"])
