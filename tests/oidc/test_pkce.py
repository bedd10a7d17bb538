"""PKCE (RFC 7636) restricted to S256 (RFC 9700 §2.1.1)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.oidc.conftest import flow, login, make_rp, query_of, redeem


@pytest.mark.parametrize("overrides", [
    {"code_challenge_method": "plain"},
    {"code_challenge_method": None},
    {"code_challenge": None, "code_challenge_method": None},
    {"code_challenge": "trop-court"},
], ids=["plain", "no-method", "no-challenge", "malformed"])
@pytest.mark.parametrize("kind", ["web", "mobile"])
def test_authorization_without_a_valid_s256_challenge_is_refused(app: Any, client: Any, kind: str,
                                                                  overrides: dict[str, Any]) -> None:
    rp = make_rp(app, kind)
    response = client.get("/authorize", query_string=flow(rp, **overrides).params)
    assert response.status_code == 302
    assert query_of(response)["error"] == "invalid_request"


def test_wrong_verifier_is_invalid_grant(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    f = flow(web_rp)
    code = login(app, client, person, f)["code"]
    f.verifier = "x" * 50
    assert redeem(client, web_rp, code, f).json["error"] == "invalid_grant"


def test_public_client_must_send_the_verifier(app: Any, client: Any, person: Any) -> None:
    mobile = make_rp(app, "mobile")
    f = flow(mobile)
    code = login(app, client, person, f)["code"]
    response = client.post("/token", data={"grant_type": "authorization_code", "code": code,
                                           "redirect_uri": f.params["redirect_uri"], "client_id": mobile.client_id})
    assert response.json["error"] == "invalid_request"


def test_confidential_client_may_opt_out_but_a_verifier_without_challenge_is_refused(app: Any, client: Any,
                                                                                     person: Any) -> None:
    rp = make_rp(app, "web", pkce_required=False)
    f = flow(rp, code_challenge=None, code_challenge_method=None)
    code = login(app, client, person, f)["code"]
    assert redeem(client, rp, code, f).json["error"] == "invalid_request"
    f2 = flow(rp, code_challenge=None, code_challenge_method=None)
    code2 = login(app, app.test_client(), person, f2, amr=("pwd",))["code"]
    ok = client.post("/token", data={"grant_type": "authorization_code", "code": code2,
                                     "redirect_uri": f2.params["redirect_uri"]}, auth=(rp.client_id, rp.secret))
    assert ok.status_code == 200 and "id_token" in ok.json
