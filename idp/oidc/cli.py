"""``idp clients`` and ``idp keys``."""

from __future__ import annotations

import click


@click.group("clients")
def clients_group() -> None:
    """Relying-party clients."""


@click.group("keys")
def keys_group() -> None:
    """Signing keys: rotate, list."""
