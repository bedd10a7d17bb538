"""The ``idp`` command (DESIGN.md §6): serving, demo, database, registry, clients, accounts, terms, keys.

Each area defines its own command group next to its code; this module assembles them and turns
configuration errors into one clear line and exit status 2 instead of a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from flask import Flask

from idp.errors import SettingsError

F = TypeVar("F", bound=Callable[..., Any])


def make_app() -> Flask:
    """create_app() with configuration errors reported as one line (exit status 2)."""
    from idp import create_app

    try:
        return create_app()
    except SettingsError as exc:
        click.echo(f"Configuration error: {exc.setting}: {exc.message}", err=True)
        sys.exit(2)


def with_app(func: F) -> F:
    """Run the command inside an application context."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        app = make_app()
        with app.app_context():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    """Print ``data`` as JSON (``--json``) or ``text`` for people."""
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        click.echo(text if text is not None else data)


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Identity provider for Mon compte ameli (OpenID Connect)."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Serve with the development server (production: gunicorn, see README)."""
    app = make_app()
    if app.extensions["idp.settings"].is_production:
        click.echo("Use gunicorn in production: gunicorn 'idp:create_app()' -c config/gunicorn.conf.py", err=True)
    app.run(host=host, port=port, threaded=True, use_reloader=False)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def demo(host: str, port: int) -> None:
    """Development: migrate, load the demo data, start an SMTP sink and serve on HOST:PORT."""
    from idp.demo import prepare_demo

    # The demo RP and the tokens must name the address actually served, unless told otherwise.
    os.environ.setdefault("IDP_ISSUER", f"http://{host}:{port}")
    app = make_app()
    settings = app.extensions["idp.settings"]
    if settings.is_production:
        click.echo("idp demo is for development only (IDP_ENV=production).", err=True)
        sys.exit(2)
    sink = prepare_demo(app)
    click.echo(f"Demo identity provider on http://{host}:{port}/  (mailbox: http://{host}:{port}/dev/mailbox)")
    try:
        app.run(host=host, port=port, threaded=True, use_reloader=False)
    finally:
        if sink is not None:
            sink.stop()


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@with_app
def db_upgrade() -> None:
    """Apply the Alembic migrations up to the newest."""
    upgrade_database()
    click.echo("Database is up to date.")


def upgrade_database() -> None:
    """Run ``alembic upgrade head`` for the current application."""
    from flask_migrate import upgrade

    upgrade(directory=os.path.join(os.path.dirname(__file__), "migrations"))


@main.command("settings")
@json_option
def show_settings(as_json: bool) -> None:
    """Show every setting with its documentation (secrets hidden)."""
    import dataclasses

    app = make_app()
    s = app.extensions["idp.settings"]
    hidden = {"secret_key", "data_key", "smtp_password", "staff_oidc_client_secret"}
    rows = {f.name: ("***" if f.name in hidden else getattr(s, f.name)) for f in dataclasses.fields(s)}
    emit(rows, as_json, "\n".join(f"IDP_{k.upper()}={v}    # {s.doc()[k]}" for k, v in rows.items()))


def _attach_area_commands() -> None:
    from idp.accounts.cli import accounts_group, terms_group
    from idp.advisors.cli import advisors_group
    from idp.audit_cli import audit_group
    from idp.oidc.cli import clients_group, keys_group, tokens_group
    from idp.rfi_adapter.cli import rfi_group

    for group in (accounts_group, terms_group, advisors_group, clients_group, keys_group, tokens_group, rfi_group,
                  audit_group):
        main.add_command(group)


_attach_area_commands()
