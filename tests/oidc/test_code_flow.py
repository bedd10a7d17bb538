"""The code flow with PKCE: authorization, token, ID token, iss (RFC 9207), single-use codes."""

from __future__ import annotations

from typing import Any

from tests.oidc.conftest import REDIRECT, decode_id_token, flow, login, redeem


def test_code_flow_issues_an_id_token_with_the_required_claims(app: Any, client: Any, person: Any,
                                                                web_rp: Any) -> None:
    f = flow(web_rp)
    answer = login(app, client, person, f)
    assert answer["iss"] == "http://localhost"
    assert answer["state"] == f.params["state"]
    response = redeem(client, web_rp, answer["code"], f)
    assert response.status_code == 200, response.json
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    tokens = response.json
    claims = decode_id_token(app, tokens["id_token"])
    assert claims["iss"] == "http://localhost"
    assert claims["aud"] == web_rp.client_id and claims["azp"] == web_rp.client_id
    assert claims["nonce"] == f.params["nonce"]
    assert claims["acr"] == "eidas2" and claims["amr"] == ["pwd", "mail", "mfa"]
    for name in ("sub", "exp", "iat", "auth_time", "at_hash", "sid"):
        assert name in claims
    assert claims["sub"] != person.account_id  # pairwise by default
    assert "refresh_token" in tokens
    assert REDIRECT
