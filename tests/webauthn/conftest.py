"""Fixtures of the WebAuthn tests: recorded JSON, an account, a login interaction."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from idp.accounts.models import Account
from idp.crypto import encrypt, lookup_hmac
from idp.extensions import clock, db
from idp.login.interaction import Interaction, interactions
from idp.nir import Nir
from tests.conftest import proof_of, register_identity, test_requirement
from tests.webauthn.authenticator import from_b64url

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "webauthn"


def recorded(name: str) -> dict[str, Any]:
    """A recorded fixture (see ``record_fixtures.py``)."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def challenge_of(name: str) -> bytes:
    """The challenge a recorded response answers."""
    return from_b64url(recorded(name)["challenge"])


def random_nir() -> Nir:
    """A valid NIR (key computed) unique to this test run."""
    body = f"1850575{secrets.randbelow(10**6):06d}"
    return Nir.parse(body + f"{97 - int(body) % 97:02d}")


def make_account(*, login_count: int = 0, optout: bool = False) -> Account:
    """An active account stored directly, with a NIR of its own that the registry knows."""
    nir = random_nir()
    register_identity(nir.value)
    account = Account(nir_hmac=lookup_hmac(nir.value), nir_enc=encrypt(nir.value, "nir"), email="assure@example.fr",
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
