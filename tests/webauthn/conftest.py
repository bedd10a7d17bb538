"""Fixtures of the WebAuthn tests: recorded JSON, an account, a login interaction."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from idp.accounts.models import Account
from idp.extensions import clock, db
from idp.login.interaction import Interaction, interactions
from tests.webauthn.authenticator import from_b64url

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "webauthn"


def recorded(name: str) -> dict[str, Any]:
    """A recorded fixture (see ``record_fixtures.py``)."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def challenge_of(name: str) -> bytes:
    """The challenge a recorded response answers."""
    return from_b64url(recorded(name)["challenge"])


def make_account(*, login_count: int = 0, optout: bool = False) -> Account:
    """An active account stored directly (no NIR needed by these tests: the values are opaque)."""
    account = Account(nir_hmac=uuid.uuid4().hex, nir_enc="not-used", email="assure@example.fr",
                      email_validated=True, password_hash=None, status="active", created_at=clock().now(),
                      login_count=login_count, biometric_offer_optout=optout)
    db.session.add(account)
    db.session.commit()
    return account


def make_interaction(*, account: Account | None = None, amr: list[str] | None = None,
                     client_kind: str = "web") -> Interaction:
    """A login interaction, optionally already authenticated."""
    interaction = interactions.create(client_id="rp-test", client_kind=client_kind, request={"scope": "openid"})
    if account is not None:
        interaction.account_id = account.id
        for method in amr or []:
            interaction.complete(method)
        interactions.save(interaction)
    return interaction


@pytest.fixture
def ctx(any_app: Any) -> Any:
    """An application context on both backends (SQLite + fakeredis, PostgreSQL + Redis)."""
    with any_app.app_context():
        yield any_app
