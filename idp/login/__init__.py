"""login: see DESIGN.md §3."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register this area's blueprints and services."""
