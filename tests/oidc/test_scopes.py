"""Scopes: unknown ones are ignored, never refused (RFC 6749 §3.3, OIDC Core §3.1.2.1); offline_access
per OIDC Core §11; FranceConnect's one-claim scopes."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc import jwt

from tests.oidc.conftest import decode_id_token, flow, login, make_rp, redeem, token_request


def test_an_unknown_scope_is_ignored_not_refused(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    f = flow(web_rp, scope="openid email inconnu https://api.example/lecture")
    answer = login(app, client, person, f)
    assert "error" not in answer
    tokens = redeem(client, web_rp, answer["code"], f).json
    assert tokens["scope"] == "openid email"
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).json
    assert info["email"] == "marie.dupont@example.org" and "family_name" not in info


def test_a_scope_the_client_is_not_registered_for_is_ignored(app: Any, client: Any, person: Any) -> None:
    rp = make_rp(app, "web", scope="openid email")
    f = flow(rp, scope="openid email identite_pivot")
    tokens = redeem(client, rp, login(app, client, person, f)["code"], f).json
    assert tokens["scope"] == "openid email"


def test_franceconnect_plus_scopes_give_each_claim_in_fc_formats(app: Any, client: Any, person: Any) -> None:
    fc = make_rp(app, profile="franceconnect")
    f = flow(fc, scope="openid profile email preferred_username birthplace birthcountry", prompt="login",
             code_challenge=None, code_challenge_method=None)
    answer = login(app, client, person, f, amr=("pwd",))
    assert "code" in answer, answer
    tokens = token_request(client, fc, {"grant_type": "authorization_code", "code": answer["code"],
                                        "redirect_uri": f.params["redirect_uri"]}).json
    assert set(tokens["scope"].split()) == {"openid", "profile", "email", "preferred_username", "birthplace",
                                            "birthcountry"}
    info_jwt = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info_jwt.mimetype == "application/jwt"
    from idp.oidc.keys import public_keyset

    with app.app_context():
        info = jwt.decode(info_jwt.data, public_keyset()).claims
    assert info["given_name"] == "Marie Claire" and info["family_name"] == "DUPONT"
    assert info["preferred_username"] == "MOREAU" and info["birthplace"] == "69383"
    assert info["birthcountry"] == "99100" and info["email"] == "marie.dupont@example.org"


@pytest.mark.parametrize("scope", ["given_name", "family_name", "birthdate", "gender", "birthplace",
                                   "birthcountry", "preferred_username"])
def test_each_one_claim_scope_gives_that_claim(app: Any, client: Any, person: Any, scope: str) -> None:
    rp = make_rp(app, "web", scope=f"openid {scope}")
    f = flow(rp, scope=f"openid {scope}")
    tokens = redeem(client, rp, login(app, client, person, f)["code"], f).json
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).json
    assert set(info) == {"sub", scope}


def test_offline_access_from_the_app_gives_a_refresh_token(app: Any, client: Any, person: Any) -> None:
    app_rp = make_rp(app, "mobile")
    f = flow(app_rp, scope="openid profile offline_access")
    tokens = redeem(client, app_rp, login(app, client, person, f, amr=("pwd",))["code"], f).json
    assert tokens["refresh_token"] and "offline_access" in tokens["scope"].split()


def test_no_refresh_token_without_the_refresh_token_grant_even_with_offline_access(app: Any, client: Any,
                                                                                   person: Any) -> None:
    app_rp = make_rp(app, "mobile", grant_types=["authorization_code"])
    f = flow(app_rp, scope="openid offline_access")
    tokens = redeem(client, app_rp, login(app, client, person, f, amr=("pwd",))["code"], f).json
    assert "refresh_token" not in tokens and tokens["scope"] == "openid"


def test_a_third_party_client_needs_offline_access_with_prompt_consent(app: Any, client: Any, person: Any) -> None:
    rp = make_rp(app, "federation", grant_types=["authorization_code", "refresh_token"],
                 scope="openid profile offline_access")
    plain = flow(rp, scope="openid profile")
    without = redeem(client, rp, login(app, client, person, plain)["code"], plain).json
    assert "refresh_token" not in without, "no offline_access: no refresh token for a third party"
    silent = flow(rp, scope="openid profile offline_access", prompt="login")
    dropped = redeem(client, rp, login(app, client, person, silent)["code"], silent).json
    assert "refresh_token" not in dropped and "offline_access" not in dropped["scope"].split()
    asked = flow(rp, scope="openid profile offline_access", prompt="consent")
    granted = redeem(client, rp, login(app, client, person, asked)["code"], asked).json  # consent given
    assert granted["refresh_token"] and "offline_access" in granted["scope"].split()
    assert decode_id_token(app, granted["id_token"])["aud"] == rp.client_id
