"""``idp accounts`` and ``idp terms``."""

from __future__ import annotations

import click


@click.group("accounts")
def accounts_group() -> None:
    """Accounts: create, show, unlock, reset."""


@click.group("terms")
def terms_group() -> None:
    """Terms of use."""
