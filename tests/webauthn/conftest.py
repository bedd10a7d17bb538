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
from tests.conftest import proof_of, test_requirement
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
                     client_kind: str = "web", credential_factors: int = 2) -> Interaction:
    """A login interaction, optionally already authenticated (``amr``: the factors proven in it)."""
    interaction = interactions.create(client_id="rp-test", request={"scope": "openid"},
                                      requirement=test_requirement(client_kind))
    if account is not None:
        interaction.account_id = account.id
        interaction.email_known = account.email if account.email_validated else None
        interaction.proof = proof_of(amr or [], credential_factors=credential_factors)
        interactions.save(interaction)
    return interaction


@pytest.fixture
def ctx(any_app: Any) -> Any:
    """An application context on both backends (SQLite + fakeredis, PostgreSQL + Redis)."""
    with any_app.app_context():
        yield any_app
