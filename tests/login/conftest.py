"""Fixtures of the login journey: accounts, interactions, and a test client bound to an interaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import csrf_from, register_identity, remember_secret

NIR = "185057800604830"
NIR_SPACED = "1 85 05 78 006 048 30"
OTHER_NIR = "295019912611146"
UNKNOWN_NIR = "169014905811503"
PASSWORD = "Velo-Rouge-Tartine-42"
EMAIL = "alice.martin@gmail.com"
remember_secret(NIR, NIR_SPACED, OTHER_NIR, UNKNOWN_NIR, PASSWORD)


@dataclass
class Person:
    """An account seeded for a test."""

    account_id: str
    nir: str
    password: str
    email: str | None


def make_account(app: Any, *, nir: str = NIR, password: str = PASSWORD, email: str | None = EMAIL,
                 validated: bool = True) -> Person:
    """Create an account through the accounts service."""
    from idp.accounts import service
    from idp.nir import Nir

    with app.app_context():
        register_identity(nir)  # the registry knows the person (asked at every login)
        account = service.create_account(Nir.parse(nir), password, email=email, email_validated=validated)
        return Person(account.id, nir, password, email)


def new_interaction(app: Any, *, kind: str = "web", request: dict[str, str] | None = None,
                    require_email_code: bool | None = None) -> str:
    """What /authorize does when a login is needed; returns the interaction id."""
    from idp.login.interaction import interactions
    from tests.conftest import test_requirement

    request = request or {"response_type": "code", "scope": "openid"}
    with app.test_request_context():
        interaction = interactions.create(client_id="rp-test", request=request, reasons=["login_required"],
                                          requirement=test_requirement(kind, request,
                                                                       require_email_code=require_email_code))
        return interaction.id


def bind(client: Any, interaction_id: str) -> None:
    """Put the interaction cookie in the test client's jar."""
    client.set_cookie("idp_interaction", interaction_id, domain="localhost")


@pytest.fixture
def person(app: Any) -> Person:
    """An account with a validated e-mail on the SQLite app."""
    return make_account(app)


@pytest.fixture
def login_client(app: Any, client: Any) -> Any:
    """A test client bound to a fresh web interaction."""
    bind(client, new_interaction(app))
    return client


def post_identify(client: Any, nir: str = NIR, password: str = PASSWORD, **extra: str) -> Any:
    """Submit the identify form with a fresh CSRF token."""
    token = csrf_from(client.get("/connexion").data)
    return client.post("/connexion", data={"csrf_token": token, "nir": nir, "password": password, **extra})


def post_code(client: Any, code: str) -> Any:
    """Submit the code form."""
    page = client.get("/connexion/code")
    return client.post("/connexion/code", data={"csrf_token": csrf_from(page.data), "code": code})


def post_resend(client: Any) -> Any:
    """Ask for a new code."""
    page = client.get("/connexion/code")
    return client.post("/connexion/code/nouveau", data={"csrf_token": csrf_from(page.data)})
