"""Fixtures of the advisors' console: staff accounts enrolled over HTTP with a software security key."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from tests.accounts.conftest import RecordingSms, demo_records
from tests.conftest import csrf_from, remember_secret
from tests.webauthn.authenticator import SoftAuthenticator, from_b64url

ADVISOR_PASSWORD = "conseiller-lampe-orange-2026"
remember_secret(ADVISOR_PASSWORD)


@pytest.fixture
def sms() -> RecordingSms:
    """The SMS gateway of the app, recording what it was asked to send (a module's app_config passes it)."""
    return RecordingSms()


@pytest.fixture
def registry(app: Any) -> Any:
    """The app with the demo registry (RFI) records imported."""
    from idp.rfi_adapter.sql import import_records

    with app.app_context():
        import_records(demo_records())
    return app


@dataclass
class Staff:
    """An enrolled advisor and the key it signs in with."""

    advisor_id: str
    email: str
    key: SoftAuthenticator


def json_post(client: Any, url: str, body: dict[str, Any] | None = None, *, csrf: str) -> Any:
    """What webauthn.js does: JSON with the CSRF token in X-CSRFToken."""
    return client.post(url, json=body or {}, headers={"X-CSRFToken": csrf, "Accept": "application/json"})


def page_csrf(client: Any, url: str) -> str:
    """The CSRF token of a page (the meta tag every page carries)."""
    html = client.get(url).get_data(as_text=True)
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def create_link(app: Any, email: str, role: str = "advisor") -> str:
    """``idp advisors create`` through the service: the enrolment path."""
    from idp.advisors import service

    with app.app_context():
        _advisor, token = service.create_advisor(email, role)
    remember_secret(token)
    return f"/conseiller/inscription/{token}"


def enrol(app: Any, client: Any, email: str, role: str = "advisor") -> Staff:
    """Enrol over HTTP: password, then a software security key; the client ends signed in."""
    link = create_link(app, email, role)
    token = csrf_from(client.get(link).data)
    done = client.post(link, data={"csrf_token": token, "password": ADVISOR_PASSWORD, "confirm": ADVISOR_PASSWORD})
    assert done.status_code == 303 and done.location.endswith("/conseiller/inscription/cle"), done.data[:300]
    csrf = page_csrf(client, "/conseiller/inscription/cle")
    options = json_post(client, "/conseiller/inscription/cle/options", csrf=csrf).get_json()["publicKey"]
    assert options["authenticatorSelection"]["userVerification"] == "required"
    key = SoftAuthenticator()
    verified = json_post(client, "/conseiller/inscription/cle/verifier",
                         key.register(from_b64url(options["challenge"])), csrf=csrf)
    assert verified.status_code == 200, verified.data
    with app.app_context():
        from idp.advisors.service import find_by_email

        advisor = find_by_email(email)
        assert advisor is not None
        return Staff(advisor.id, email, key)


def sign_in(client: Any, staff: Staff, password: str = ADVISOR_PASSWORD) -> Any:
    """Password then key; returns the key step's answer."""
    token = csrf_from(client.get("/conseiller/connexion").data)
    first = client.post("/conseiller/connexion", data={"csrf_token": token, "email": staff.email, "password": password})
    assert first.status_code == 303, first.data[:400]
    csrf = page_csrf(client, "/conseiller/connexion/cle")
    options = json_post(client, "/conseiller/connexion/cle/options", csrf=csrf).get_json()["publicKey"]
    return json_post(client, "/conseiller/connexion/cle/verifier",
                     staff.key.authenticate(from_b64url(options["challenge"])), csrf=csrf)


@pytest.fixture
def advisor(app: Any) -> tuple[Any, Staff]:
    """A signed-in advisor (role advisor) and its test client."""
    client = app.test_client()
    return client, enrol(app, client, "claire.conseil@assurance-maladie.fr")


@pytest.fixture
def supervisor(app: Any) -> tuple[Any, Staff]:
    """A signed-in supervisor and its test client."""
    client = app.test_client()
    return client, enrol(app, client, "sophie.superviseur@assurance-maladie.fr", "supervisor")


def search(client: Any, nir: str) -> Any:
    """Search an account; returns the answer (303 to the dossier)."""
    token = csrf_from(client.get("/conseiller/").data)
    return client.post("/conseiller/recherche", data={"csrf_token": token, "nir": nir})


def act(client: Any, dossier: str, action: str, reason: str = "appel 3646 de l'assuré") -> Any:
    """Run an action on the dossier with a fresh CSRF token."""
    token = csrf_from(client.get(dossier).data)
    return client.post(f"{dossier}/{action}", data={"csrf_token": token, "reason": reason})
