"""Fixtures of the login journey: accounts, interactions, and a test client bound to an interaction."""

from __future__ import annotations

import base64
import hashlib
import threading
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
    """What /authorize does when a login is needed, for a registered client of ``kind`` (made once per app);
    returns the interaction id. The login's last step answers that client (a redirect to ``RP_REDIRECT``)."""
    from idp.login.interaction import interactions
    from tests.conftest import test_requirement

    client_id = rp_test_client(app, kind)
    request = {"response_type": "code", "scope": "openid", "client_id": client_id, "redirect_uri": RP_REDIRECT,
               "state": "state-of-the-rp", "nonce": "nonce-of-the-rp", "code_challenge": RP_CHALLENGE,
               "code_challenge_method": "S256", **(request or {})}
    with app.test_request_context():
        interaction = interactions.create(client_id=client_id, request=request, reasons=["login_required"],
                                          requirement=test_requirement(kind, request,
                                                                       require_email_code=require_email_code))
        return interaction.id


RP_REDIRECT = "https://rp.example/callback"
RP_VERIFIER = "verifier-of-the-test-rp-0123456789-0123456789-0123456789"
RP_CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(RP_VERIFIER.encode()).digest()).rstrip(b"=").decode()


def rp_test_client(app: Any, kind: str) -> str:
    """The id of the test relying party of ``kind`` (``rp-test-web``...), registered once per app."""
    from idp.oidc.clients import create_client, get_client

    client_id = f"rp-test-{kind}"
    with _RP_TEST_LOCK, app.test_request_context():  # load tests make interactions from many threads
        if get_client(client_id) is None:
            create_client(name=f"RP de test ({kind})", kind=kind, redirect_uris=[RP_REDIRECT], client_id=client_id)
    return client_id


_RP_TEST_LOCK = threading.Lock()


def rp_answer(response: Any) -> dict[str, str]:
    """The login's last step (a POST) answered the test RP: a 303 to its callback; returns the query (code, state...)."""
    from urllib.parse import parse_qs, urlsplit

    location = response.headers.get("Location", "")
    assert response.status_code == 303 and location.startswith(RP_REDIRECT + "?"), \
        (response.status_code, location, response.get_data(as_text=True)[:300])
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def finished_session(app: Any, client: Any) -> Any:
    """The browser session the finished login opened (its ``proof``: the factors proven, as the interaction had)."""
    from idp.login.cookies import SESSION
    from idp.login.sessions import sessions

    cookie = client.get_cookie(SESSION, domain="localhost")
    assert cookie is not None, "no browser session was opened"
    with app.test_request_context():
        session = sessions.get(cookie.value)
    assert session is not None
    return session


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
