"""``idp rfi``."""

from __future__ import annotations

import click


@click.group("rfi")
def rfi_group() -> None:
    """The embedded identity registry."""
