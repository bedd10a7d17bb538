"""Fixtures of the accounts area: the demo registry, identities, accounts and a CLI runner."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import pytest

from tests.conftest import remember_secret

DEMO_FILE = pathlib.Path(__file__).resolve().parents[2] / "config" / "rfi-demo.json"
PASSWORD = "cheval-agrafe-batterie"


def demo_records() -> list[dict[str, Any]]:
    """The shipped demo registry (its NIRs registered as secrets, in every spelling)."""
    records = json.loads(DEMO_FILE.read_text(encoding="utf-8"))
    for record in records:
        nir = record["nir"]
        remember_secret(nir, nir[:13], " ".join([nir[0], nir[1:3], nir[3:5], nir[5:7], nir[7:10], nir[10:13], nir[13:]]))
    return records


remember_secret(PASSWORD)


@pytest.fixture
def records() -> list[dict[str, Any]]:
    """A fresh copy of the demo records."""
    return demo_records()


@pytest.fixture
def loaded(any_app: Any, records: list[dict[str, Any]]) -> Any:
    """``any_app`` (SQLite and PostgreSQL) with the demo registry imported."""
    from idp.rfi_adapter.sql import import_records

    with any_app.app_context():
        import_records(records)
    return any_app


def by_name(records: list[dict[str, Any]], family_name: str) -> dict[str, Any]:
    """The demo record with this birth name."""
    return next(r for r in records if r["family_name"] == family_name)


@pytest.fixture
def cli(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run ``idp ...`` with click's CliRunner against a fresh SQLite file (tables created first)."""
    from click.testing import CliRunner

    from idp import create_app
    from idp.cli import main
    from idp.extensions import db
    from tests.conftest import TEST_SECRET

    monkeypatch.setenv("IDP_DATABASE_URL", f"sqlite:///{tmp_path}/cli.sqlite3")
    monkeypatch.setenv("IDP_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("IDP_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("IDP_ARGON2_MEMORY_COST", "1024")
    monkeypatch.setenv("IDP_SMTP_PORT", "9")
    app = create_app()
    with app.app_context():
        db.create_all()
        db.engine.dispose()

    def run(*args: str) -> Any:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return run


def make_account(app: Any, nir: str, *, email: str = "marie.dupont@example.fr", validated: bool = True) -> str:
    """Create an account (password :data:`PASSWORD`) and return its id."""
    from idp.accounts import service
    from idp.nir import Nir

    with app.app_context():
        return service.create_account(Nir.parse(nir), PASSWORD, email=email, email_validated=validated).id


def submit(client: Any, url: str, data: dict[str, str], *, page: str | None = None) -> Any:
    """GET ``page`` (default ``url``) for its CSRF token, then POST ``data`` to ``url``."""
    from tests.conftest import csrf_from

    token = csrf_from(client.get(page or url).data)
    response = client.post(url, data={"csrf_token": token, **data})
    # Mail sent after the answer (the reset link) has left once the outbox is drained.
    from idp.notify import outbox

    outbox.drain()
    return response


class RecordingSms:
    """SMS gateway double: keeps what would have been sent (``code()``: the last 8-digit provisional code)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, phone: str, text: str) -> None:
        self.sent.append((phone, text))

    def code(self) -> str:
        match = re.search(r"\b(\d{8})\b", self.sent[-1][1])
        assert match
        remember_secret(match.group(1))
        return match.group(1)
