"""Advisors signing in through the organisation's staff OpenID provider (a small real provider served on a
free port: discovery, authorization, token endpoint checking PKCE, JWKS, RS256 ID tokens)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.conftest import free_port, remember_secret

remember_secret("s3cret-staff-client")


ISSUED: dict[str, dict[str, Any]] = {}


class StaffProvider:
    """The organisation's provider; ``claims`` are what the next ID token says about the staff member."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "staff-1", "use": "sig", "alg": "RS256"})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.claims: dict[str, Any] = {}
        self.server = make_server("127.0.0.1", self.port, self.wsgi, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wsgi(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        handler = {"/.well-known/openid-configuration": self.discovery, "/authorize": self.authorize,
                   "/token": self.token, "/jwks": self.jwks}.get(request.path)
        response = handler(request) if handler else Response("not found", 404)
        return response(environ, start_response)

    def discovery(self, _request: Request) -> Response:
        return _json({"issuer": self.url, "authorization_endpoint": f"{self.url}/authorize",
                      "token_endpoint": f"{self.url}/token", "jwks_uri": f"{self.url}/jwks",
                      "response_types_supported": ["code"], "id_token_signing_alg_values_supported": ["RS256"],
                      "code_challenge_methods_supported": ["S256"]})

    def authorize(self, request: Request) -> Response:
        args = request.args
        code = f"code-{len(ISSUED)}"
        ISSUED[code] = {"nonce": args["nonce"], "challenge": args["code_challenge"],
                        "method": args["code_challenge_method"], "client_id": args["client_id"]}
        return Response(status=302, headers={"Location": f"{args['redirect_uri']}?"
                                             + urlencode({"code": code, "state": args["state"]})})

    def token(self, request: Request) -> Response:
        grant = ISSUED.pop(request.form["code"], None)
        verifier = request.form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if grant is None or grant["method"] != "S256" or digest != grant["challenge"]:
            return _json({"error": "invalid_grant"}, 400)
        now = int(time.time())
        claims = {"iss": self.url, "aud": grant["client_id"], "sub": "staff-42", "iat": now, "exp": now + 300,
                  "nonce": grant["nonce"], **self.claims}
        id_token = jwt.encode({"alg": "RS256", "kid": "staff-1"}, claims, self.key)
        return _json({"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": id_token})

    def jwks(self, _request: Request) -> Response:
        return _json({"keys": [self.key.as_dict(private=False)]})


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status, content_type="application/json")


@pytest.fixture(scope="module")
def provider() -> Iterator[StaffProvider]:
    served = StaffProvider()
    yield served
    served.server.shutdown()


@pytest.fixture
def app_config(provider: StaffProvider) -> dict[str, Any]:
    return {"staff_oidc_metadata_url": f"{provider.url}/.well-known/openid-configuration",
            "staff_oidc_client_id": "espace-conseiller", "staff_oidc_client_secret": "s3cret-staff-client",
            "staff_oidc_role_claim": "groups", "staff_oidc_supervisor_role": "cpam-superviseurs",
            "staff_oidc_advisor_role": "cpam-conseillers"}


def through_provider(client: Any) -> Any:
    """Click "Se connecter avec le compte de l'organisation", let the provider answer, come back."""
    assert "compte de l'organisation" in client.get("/conseiller/connexion").get_data(as_text=True)
    start = client.get("/conseiller/connexion/organisation")
    assert start.status_code == 302
    query = parse_qs(urlsplit(start.location).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    answer = requests.get(start.location, allow_redirects=False, timeout=5)
    back = urlsplit(answer.headers["Location"])
    return client.get(f"{back.path}?{back.query}")


def test_role_from_the_configured_claim_signs_a_supervisor_in(app: Any, provider: StaffProvider) -> None:
    provider.claims = {"email": "Sophie@CPAM.fr", "email_verified": True, "groups": ["staff", "cpam-superviseurs"]}
    client = app.test_client()
    back = through_provider(client)
    assert back.status_code == 303 and back.location.endswith("/conseiller/")
    assert client.get("/conseiller/journal").status_code == 200
    from idp.advisors.service import find_by_email

    with app.app_context():
        advisor = find_by_email("sophie@cpam.fr")
        assert advisor is not None and advisor.role == "supervisor" and advisor.source == "oidc"


@pytest.mark.parametrize("claims", [
    {"email": "x@cpam.fr", "email_verified": True, "groups": ["staff"]},  # no console role
    {"email": "x@cpam.fr", "email_verified": False, "groups": ["cpam-conseillers"]},  # unverified e-mail
    {"groups": ["cpam-conseillers"]},  # no e-mail
])
def test_without_role_or_verified_email_the_provider_does_not_open_the_console(app: Any, provider: StaffProvider,
                                                                              claims: dict[str, Any]) -> None:
    provider.claims = claims
    client = app.test_client()
    back = through_provider(client)
    assert back.status_code == 403
    assert client.get("/conseiller/").status_code == 303


def test_a_callback_with_a_forged_state_is_refused(app: Any, provider: StaffProvider) -> None:
    provider.claims = {"email": "a@cpam.fr", "email_verified": True, "groups": ["cpam-conseillers"]}
    client = app.test_client()
    client.get("/conseiller/connexion/organisation")
    refused = client.get("/conseiller/connexion/organisation/retour?code=code-x&state=forged")
    assert refused.status_code in (400, 403)
    assert client.get("/conseiller/").status_code == 303


def test_a_disabled_advisor_is_cut_off_and_the_provider_does_not_let_them_back(app: Any,
                                                                              provider: StaffProvider) -> None:
    from idp.advisors import service

    provider.claims = {"email": "leo@cpam.fr", "email_verified": True, "groups": ["cpam-conseillers"]}
    client = app.test_client()
    assert through_provider(client).status_code == 303 and client.get("/conseiller/").status_code == 200
    with app.app_context():
        assert service.set_disabled("leo@cpam.fr", True)[1] == 1  # what `idp advisors disable` runs
    assert client.get("/conseiller/").status_code == 303
    again = app.test_client()
    assert through_provider(again).status_code == 403
    assert again.get("/conseiller/").status_code == 303
