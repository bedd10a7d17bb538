"""private_key_jwt hardening (RFC 7523 §3, RFC 9700 §2.5): a client assertion is single use for as long
as it could be accepted, and an assertion valid for more than 5 minutes is refused."""

from __future__ import annotations

import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.oidc.conftest import Rp, flow, login, make_rp

KEY = RSAKey.generate_key(2048, parameters={"kid": "rp-key", "alg": "RS256", "use": "sig"})


@pytest.fixture
def jwt_rp(app: Any) -> Rp:
    return make_rp(app, "web", auth_method="private_key_jwt", jwks={"keys": [KEY.as_dict(private=False)]})


def _token_request(app: Any, client: Any, person: Any, rp: Rp, claims: dict[str, Any]) -> Any:
    f = flow(rp)
    code = login(app, app.test_client(), person, f)["code"]
    assertion = jwt.encode({"alg": "RS256", "kid": "rp-key"}, {
        "iss": rp.client_id, "sub": rp.client_id, "aud": "http://localhost/token", **claims}, KEY)
    return client.post("/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": f.params["redirect_uri"],
        "code_verifier": f.verifier, "client_id": rp.client_id,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion})


def test_the_jti_marker_lives_until_the_assertion_expires_plus_the_leeway(app: Any, client: Any, person: Any,
                                                                           jwt_rp: Rp) -> None:
    from idp.extensions import redis_client, rkey

    now = int(time.time())
    claims = {"iat": now, "exp": now + 240, "jti": "once-only"}
    assert _token_request(app, client, person, jwt_rp, claims).status_code == 200
    with app.app_context():
        ttl = redis_client().ttl(rkey("jti", jwt_rp.client_id, "once-only"))
    assert 240 + 60 - 5 <= ttl <= 240 + 60 + 2, ttl
    replay = _token_request(app, client, person, jwt_rp, claims)
    assert replay.status_code == 400 and replay.json["error"] == "invalid_client"


@pytest.mark.parametrize("claims", [
    {"iat": 0, "exp": 3600, "jti": "long"},  # times shifted below: a one-hour assertion
    {"exp": 3600, "jti": "no-iat"},  # no iat: measured from now
], ids=["one-hour", "one-hour-without-iat"])
def test_an_assertion_valid_for_more_than_five_minutes_is_refused(app: Any, client: Any, person: Any,
                                                                  jwt_rp: Rp, claims: dict[str, Any]) -> None:
    now = int(time.time())
    shifted = {k: v + now if k in ("iat", "exp") else v for k, v in claims.items()}
    response = _token_request(app, client, person, jwt_rp, shifted)
    assert response.status_code in (400, 401) and response.json["error"] == "invalid_client"
    assert "too long" in response.json["error_description"]
