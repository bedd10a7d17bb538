"""Fixtures of the OIDC provider tests: a person known to the RFI, registered clients, PKCE, and a
helper that finishes the login interaction programmatically (the login pages have their own tests;
the end-to-end tests walk the real /connexion page)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import remember_secret

NIR = "285036938304242"
PASSWORD = "Velo-Rouge-Tartine-42"
EMAIL = "marie.dupont@example.org"
OTHER_NIR = "162117511402161"
remember_secret(NIR, "2 85 03 69 383 042 42", OTHER_NIR, PASSWORD)

REDIRECT = "https://rp.example/callback"
POST_LOGOUT = "https://rp.example/au-revoir"

IDENTITIES = [
    {"nir": NIR, "given_name": "Marie Claire", "family_name": "DUPONT", "preferred_username": "MOREAU",
     "birthdate": "1985-03-12", "gender": "female", "birthplace": "69383", "birthcountry": "99100",
     "phone": "+33612345601", "vitale_card_serial": "8250012345", "iban": "FR7630006000011234567890189"},
    {"nir": OTHER_NIR, "given_name": "Jean Pierre", "family_name": "MARTIN", "preferred_username": None,
     "birthdate": "1962-11-05", "gender": "male", "birthplace": "75114", "birthcountry": "99100",
     "phone": "+33612345602", "vitale_card_serial": "8250023456", "iban": "FR7620041010050500123456769"},
]


@dataclass
class Person:
    """An account whose identity is in the embedded RFI."""

    account_id: str
    nir: str
    password: str


@dataclass
class Rp:
    """A registered client and its secret (None for public clients)."""

    client_id: str
    secret: str | None
    kind: str


def make_person(app: Any, nir: str = NIR, email: str = EMAIL) -> Person:
    """Import the RFI identities (idempotent) and create the account of ``nir``."""
    from idp.accounts import service
    from idp.nir import Nir
    from idp.rfi_adapter.sql import import_records

    with app.app_context():
        import_records(IDENTITIES)
        account = service.create_account(Nir.parse(nir), PASSWORD, email=email, email_validated=True)
        return Person(account.id, nir, PASSWORD)


def make_rp(app: Any, kind: str = "web", **metadata: Any) -> Rp:
    """Register a client like ``idp clients create`` does (with ``profile=``: the profile's kind)."""
    from idp.oidc.clients import create_client

    metadata.setdefault("redirect_uris", [REDIRECT])
    metadata.setdefault("post_logout_redirect_uris", [POST_LOGOUT])
    with app.app_context():
        registered = create_client(name=f"RP {kind}", kind=None if metadata.get("profile") else kind, **metadata)
        if registered.client_secret:
            remember_secret(registered.client_secret)
        return Rp(registered.client.client_id, registered.client_secret, registered.client.kind)


@pytest.fixture
def cli_env(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment for the ``idp`` command on a fresh SQLite file."""
    from idp import create_app
    from idp.extensions import db

    monkeypatch.setenv("IDP_DATABASE_URL", f"sqlite:///{tmp_path}/cli.sqlite3")
    monkeypatch.setenv("IDP_SECRET_KEY", "cli-secret-key-0123456789abcdefghijklmnop")
    with create_app().app_context():
        db.create_all()


@pytest.fixture
def person(app: Any) -> Person:
    """Marie, on the SQLite app."""
    return make_person(app)


@pytest.fixture
def web_rp(app: Any) -> Rp:
    """A confidential web client (client_secret_basic, PKCE required)."""
    return make_rp(app, "web")


def pkce() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class Flow:
    """One authorization request's parameters and PKCE verifier."""

    params: dict[str, str]
    verifier: str


def flow(rp: Rp, **overrides: str | None) -> Flow:
    """Authorization parameters for ``rp`` (code + PKCE S256); ``None`` removes a parameter."""
    verifier, challenge = pkce()
    params: dict[str, Any] = {"response_type": "code", "client_id": rp.client_id, "redirect_uri": REDIRECT,
                              "scope": "openid profile email birth", "state": secrets.token_urlsafe(8),
                              "nonce": secrets.token_urlsafe(8), "code_challenge": challenge,
                              "code_challenge_method": "S256"}
    params.update(overrides)
    return Flow({k: v for k, v in params.items() if v is not None}, verifier)


def query_of(response: Any) -> dict[str, str]:
    """The query parameters of a redirect."""
    location = response.headers["Location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def finish_login(app: Any, client: Any, person: Person, *, amr: tuple[str, ...] = ("pwd", "mail"),
                 credential_factors: int = 2, trusted_browser: bool = False) -> Any:
    """What the login pages do at the end: record the factors proven, mark the interaction done, then GET
    /authorize/resume."""
    from idp.login.interaction import Step, interactions
    from tests.conftest import proof_of

    cookie = client.get_cookie("idp_interaction")
    assert cookie is not None, "no login interaction was started"
    with app.test_request_context():
        interaction = interactions.get(cookie.value)
        assert interaction is not None
        interaction.account_id, interaction.step = person.account_id, Step.DONE
        interaction.account_epoch = interactions.epoch(person.account_id)
        interaction.proof = proof_of(amr, credential_factors=credential_factors, trusted_browser=trusted_browser)
        interactions.save(interaction)
    return client.get("/authorize/resume")


def login(app: Any, client: Any, person: Person, f: Flow, **kwargs: Any) -> dict[str, str]:
    """Authorization request, programmatic login, and the redirect's parameters (code, state, iss)."""
    started = client.get("/authorize", query_string=f.params)
    assert started.status_code == 303, started.data
    done = finish_login(app, client, person, **kwargs)
    assert done.status_code == 302, done.data
    assert done.headers["Location"].startswith(f.params["redirect_uri"])
    return query_of(done)


def redeem(client: Any, rp: Rp, code: str, f: Flow, **extra: str) -> Any:
    """The token request with client_secret_basic (or none for public clients)."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": f.params["redirect_uri"],
            "code_verifier": f.verifier, **extra}
    return token_request(client, rp, data)


def token_request(client: Any, rp: Rp, data: dict[str, str], path: str = "/token") -> Any:
    """POST to a token-like endpoint authenticating as ``rp`` with its registered method."""
    from idp.oidc.clients import get_client

    with client.application.app_context():
        method = get_client(rp.client_id).token_endpoint_auth_method
    if method == "client_secret_basic":
        return client.post(path, data=data, auth=(rp.client_id, rp.secret))
    if method == "client_secret_post":
        return client.post(path, data={**data, "client_id": rp.client_id, "client_secret": rp.secret})
    return client.post(path, data={**data, "client_id": rp.client_id})


def decode_id_token(app: Any, id_token: str) -> dict[str, Any]:
    """Verify an ID token against the published JWKS and return its claims."""
    from joserfc import jwt

    from idp.oidc.keys import public_keyset

    with app.app_context():
        return dict(jwt.decode(id_token, public_keyset()).claims)


def layer_above(app: Any, layer_class: type) -> Any:
    """The WSGI layer of ``app`` that wraps the fast-path layer of class ``layer_class``."""
    outer = app.wsgi_app
    while not isinstance(getattr(outer, "wrapped", None), layer_class):
        outer = outer.wrapped if hasattr(outer, "wrapped") else outer.app  # ProxyFix (proxy_hops) wraps .app
    return outer


@contextmanager
def without_layer(app: Any, layer_class: type) -> Iterator[None]:
    """The application without its fast-path layer of class ``layer_class`` (what Flask answers)."""
    above = layer_above(app, layer_class)
    layer = above.wrapped
    above.wrapped = layer.wrapped
    try:
        yield
    finally:
        above.wrapped = layer


def requests_passed_on(layer: Any, monkeypatch: Any) -> list[str]:
    """Record every request a WSGI fast-path ``layer`` passes on to what it wraps (``METHOD path``)."""
    reached: list[str] = []
    wrapped = layer.wrapped

    def spy(environ: dict[str, Any], start_response: Any) -> Any:
        reached.append(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
        return wrapped(environ, start_response)

    monkeypatch.setattr(layer, "wrapped", spy)
    return reached
