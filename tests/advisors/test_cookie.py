"""The advisor-session cookie's attributes, as a browser receives them from an https deployment: ``__Host-``
prefixed, Secure, HttpOnly, SameSite=Lax, path ``/``, no Domain, the console's absolute life; cleared with the
same attributes (set in :mod:`idp.login.cookies`, like the people's login cookies)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.advisors.conftest import ADVISOR_PASSWORD
from tests.conftest import base_config, csrf_from, running_app

HTTPS = "https://localhost"
EMAIL = "claire.conseil@assurance-maladie.fr"


@pytest.fixture
def https_app(tmp_path: Any, clock: Any) -> Iterator[Any]:
    import fakeredis

    config = base_config(clock, None, issuer=HTTPS, database_url=f"sqlite:///{tmp_path}/idp.sqlite3",
                         redis_url="memory://", redis=fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    with running_app(config) as app:
        yield app


@contextlib.contextmanager
def _password_set(app: Any) -> Iterator[None]:
    """An advisor whose enrolment link was used (password set): the password step answers with the cookie."""
    from idp.advisors import service

    with app.app_context():
        _advisor, token = service.create_advisor(EMAIL, "advisor")
        service.begin_enrolment(token, ADVISOR_PASSWORD)
    yield


def attributes(header: str) -> tuple[str, dict[str, str]]:
    first, *rest = [part.strip() for part in header.split(";")]
    return first.split("=", 1)[0], {k.lower(): v for k, _, v in (p.partition("=") for p in rest)}


def test_the_advisor_cookie_is_host_prefixed_secure_httponly_lax_and_cleared_alike(https_app: Any) -> None:
    with _password_set(https_app):
        client = https_app.test_client()
        token = csrf_from(client.get("/conseiller/connexion", base_url=HTTPS).data)
        answer = client.post("/conseiller/connexion", base_url=HTTPS,
                             data={"csrf_token": token, "email": EMAIL, "password": ADVISOR_PASSWORD})
        assert answer.status_code == 303
        (header,) = [h for h in answer.headers.getlist("Set-Cookie") if "idp_advisor" in h]
        name, attrs = attributes(header)
        assert name == "__Host-idp_advisor"
        assert {"secure", "httponly"} <= set(attrs) and attrs["samesite"] == "Lax" and attrs["path"] == "/"
        assert "domain" not in attrs
        with https_app.app_context():
            assert int(attrs["max-age"]) == https_app.extensions["idp.settings"].advisor_session_absolute_timeout
        # The browser sends it back over https: the key step of this sign-in opens.
        assert client.get("/conseiller/connexion/cle", base_url=HTTPS).status_code == 200
        token = csrf_from(client.get("/conseiller/connexion", base_url=HTTPS).data)
        out = client.post("/conseiller/deconnexion", base_url=HTTPS, data={"csrf_token": token})
        (cleared,) = [h for h in out.headers.getlist("Set-Cookie") if "idp_advisor" in h]
        name, attrs = attributes(cleared)
        assert name == "__Host-idp_advisor" and {"secure", "httponly"} <= set(attrs)
        assert attrs["path"] == "/" and attrs["samesite"] == "Lax" and "domain" not in attrs
        assert "expires=thu, 01 jan 1970" in cleared.lower()


def test_the_people_cookies_and_the_advisor_cookie_share_one_writer() -> None:
    """No view writes a login cookie by hand: ``.set_cookie(`` appears only in idp/login/cookies.py."""
    import re
    from pathlib import Path

    import idp

    root = Path(idp.__file__).parent
    writers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                     if re.search(r"\.(set|delete)_cookie\(", p.read_text(encoding="utf-8")) and p.name != "cookies.py")
    assert writers == [], writers
