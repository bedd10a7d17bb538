"""The code flow with PKCE: authorization, token, ID token, iss (RFC 9207), single-use codes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.oidc.conftest import (
    OTHER_NIR,
    REDIRECT,
    decode_id_token,
    finish_login,
    flow,
    login,
    make_person,
    make_rp,
    query_of,
    redeem,
    token_request,
)


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
    assert claims["acr"] == "eidas1" and claims["amr"] == ["pwd", "mail", "mfa"]  # default mapping (NIST)
    for name in ("sub", "exp", "iat", "auth_time", "at_hash", "sid"):
        assert name in claims
    assert claims["sub"] != person.account_id  # pairwise by default
    assert "refresh_token" in tokens


def test_id_token_header_names_its_key(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    from joserfc import jws

    f = flow(web_rp)
    tokens = redeem(client, web_rp, login(app, client, person, f)["code"], f).json
    header = jws.extract_compact(tokens["id_token"].encode()).headers()
    assert header["alg"] == "RS256" and header["kid"]
    published = client.get("/jwks").json["keys"]
    assert header["kid"] in {k["kid"] for k in published}
    assert all("d" not in k for k in published)


def test_replayed_code_is_refused_and_revokes_what_it_issued(app: Any, client: Any, person: Any,
                                                            web_rp: Any) -> None:
    f = flow(web_rp)
    code = login(app, client, person, f)["code"]
    first = redeem(client, web_rp, code, f).json
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {first['access_token']}"}).status_code == 200
    replay = redeem(client, web_rp, code, f)
    assert replay.status_code == 400 and replay.json["error"] == "invalid_grant"
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {first['access_token']}"}).status_code == 401
    refreshed = token_request(client, web_rp, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert refreshed.json["error"] == "invalid_grant"


def test_code_expires(app: Any, client: Any, clock: Any, person: Any, web_rp: Any) -> None:
    f = flow(web_rp)
    code = login(app, client, person, f)["code"]
    clock.advance(61)
    assert redeem(client, web_rp, code, f).json["error"] == "invalid_grant"


def test_code_of_another_client_is_refused(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    other = make_rp(app, "web")
    f = flow(web_rp)
    code = login(app, client, person, f)["code"]
    assert redeem(client, other, code, f).json["error"] == "invalid_grant"


def test_another_clients_presentation_neither_burns_a_fresh_code_nor_revokes_a_used_one(
        any_app: Any) -> None:
    """The client is checked in the atomic take: a wrong client leaves the code and sets no marker; only the
    client the code was issued to can trigger the replay revocation."""
    person, rp, other = make_person(any_app), make_rp(any_app, "web"), make_rp(any_app, "web")
    client = any_app.test_client()
    f = flow(rp)
    code = login(any_app, client, person, f)["code"]
    assert redeem(client, other, code, f).json["error"] == "invalid_grant"
    first = redeem(client, rp, code, f)
    assert first.status_code == 200, first.json
    bearer = {"Authorization": f"Bearer {first.json['access_token']}"}
    assert redeem(client, other, code, f).json["error"] == "invalid_grant"
    assert client.get("/userinfo", headers=bearer).status_code == 200, "another client's replay revokes nothing"
    assert redeem(client, rp, code, f).json["error"] == "invalid_grant"
    assert client.get("/userinfo", headers=bearer).status_code == 401, "the owner's replay revokes"


@pytest.mark.parametrize("params", [
    {"client_id": "inconnu"},
    {"redirect_uri": "https://evil.example/callback"},
    {"redirect_uri": REDIRECT + "/extra"},
    {"redirect_uri": None},
], ids=["unknown-client", "other-host", "prefix-match", "missing"])
def test_unknown_client_or_unregistered_redirect_uri_shows_a_french_page(client: Any, web_rp: Any,
                                                                         params: dict[str, Any]) -> None:
    response = client.get("/authorize", query_string=flow(web_rp, **params).params,
                          headers={"Accept": "text/html"})
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "Demande de connexion invalide" in response.get_data(as_text=True)


def test_prompt_none_without_a_session_gives_login_required(client: Any, web_rp: Any) -> None:
    f = flow(web_rp, prompt="none")
    response = client.get("/authorize", query_string=f.params)
    assert response.status_code == 302
    answer = query_of(response)
    assert answer == {"error": "login_required", "state": f.params["state"], "iss": "http://localhost"}


def test_existing_session_answers_prompt_none_without_a_login(app: Any, client: Any, person: Any,
                                                             web_rp: Any) -> None:
    login(app, client, person, flow(web_rp))
    response = client.get("/authorize", query_string=flow(web_rp, prompt="none").params)
    assert response.status_code == 302 and "code" in query_of(response)


def test_max_age_forces_a_new_login_and_moves_auth_time(app: Any, client: Any, clock: Any, person: Any,
                                                        web_rp: Any) -> None:
    f1 = flow(web_rp)
    first = decode_id_token(app, redeem(client, web_rp, login(app, client, person, f1)["code"], f1).json["id_token"])
    clock.advance(300)
    within = client.get("/authorize", query_string=flow(web_rp, max_age="600").params)
    assert within.status_code == 302, "a recent enough session answers at once"
    f2 = flow(web_rp, max_age="60")
    started = client.get("/authorize", query_string=f2.params)
    assert started.status_code == 303, "too old: a new login"
    done = finish_login(app, client, person)
    second = decode_id_token(app, redeem(client, web_rp, query_of(done)["code"], f2).json["id_token"])
    assert second["auth_time"] == first["auth_time"] + 300


def test_prompt_login_forces_a_new_login_even_with_a_session(app: Any, client: Any, person: Any,
                                                             web_rp: Any) -> None:
    login(app, client, person, flow(web_rp))
    response = client.get("/authorize", query_string=flow(web_rp, prompt="login").params)
    assert response.status_code == 303 and response.headers["Location"].endswith("/connexion")


def test_id_token_hint_of_the_session_user_is_honoured(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    f = flow(web_rp)
    id_token = redeem(client, web_rp, login(app, client, person, f)["code"], f).json["id_token"]
    response = client.get("/authorize", query_string=flow(web_rp, prompt="none", id_token_hint=id_token).params)
    assert "code" in query_of(response)


def test_id_token_hint_of_someone_else_needs_a_login(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    other = make_person(app, OTHER_NIR, "jean@example.org")
    f = flow(web_rp)
    login(app, client, person, f)
    # Jean logs in on another browser; his ID token is then used as hint in Marie's browser.
    browser2 = app.test_client()
    f2 = flow(web_rp)
    hint = redeem(browser2, web_rp, login(app, browser2, other, f2)["code"], f2).json["id_token"]
    response = client.get("/authorize", query_string=flow(web_rp, prompt="none", id_token_hint=hint).params)
    assert query_of(response)["error"] == "login_required"


def test_forged_id_token_hint_is_invalid_request(client: Any, web_rp: Any) -> None:
    forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."
    response = client.get("/authorize", query_string=flow(web_rp, id_token_hint=forged).params)
    assert query_of(response)["error"] == "invalid_request"


def test_claims_parameter_adds_claims_to_id_token_and_userinfo(app: Any, client: Any, person: Any,
                                                               web_rp: Any) -> None:
    requested = json.dumps({"id_token": {"given_name": {"essential": True}, "birthdate": None},
                            "userinfo": {"gender": None, "birthcountry": None}})
    f = flow(web_rp, scope="openid profile birth", claims=requested)
    tokens = redeem(client, web_rp, login(app, client, person, f)["code"], f).json
    claims = decode_id_token(app, tokens["id_token"])
    assert claims["given_name"] == "Marie Claire" and claims["birthdate"] == "1985-03-12"
    assert "gender" not in claims and "email" not in claims
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).json
    assert info["gender"] == "female" and info["birthcountry"] == "99100" and "email" not in info


def test_claims_parameter_cannot_reach_claims_outside_the_scopes_granted_in_this_request(
        app: Any, client: Any, person: Any, web_rp: Any) -> None:
    """The client is registered for every scope, but this request was granted ``openid email`` only."""
    requested = json.dumps({"id_token": {"given_name": {"essential": True}, "birthdate": None, "email": None},
                            "userinfo": {"gender": None, "birthcountry": None, "family_name": None}})
    f = flow(web_rp, scope="openid email", claims=requested)
    tokens = redeem(client, web_rp, login(app, client, person, f)["code"], f).json
    claims = decode_id_token(app, tokens["id_token"])
    assert claims["email"] == "marie.dupont@example.org"
    assert not {"given_name", "birthdate"} & set(claims)
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).json
    assert info == {"sub": claims["sub"], "email": "marie.dupont@example.org", "email_verified": True}


def test_claims_parameter_cannot_reach_claims_outside_the_clients_allowed_scopes(app: Any, client: Any,
                                                                                person: Any) -> None:
    rp = make_rp(app, "web", scope="openid email")
    requested = json.dumps({"id_token": {"given_name": {"essential": True}, "birthdate": None, "email": None},
                            "userinfo": {"gender": None, "birthplace": None, "email_verified": None}})
    f = flow(rp, scope="openid email profile identite_pivot", claims=requested)
    tokens = redeem(client, rp, login(app, client, person, f)["code"], f).json
    claims = decode_id_token(app, tokens["id_token"])
    assert claims["email"] == "marie.dupont@example.org"
    assert not {"given_name", "birthdate", "gender", "birthplace"} & set(claims)
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).json
    assert info == {"sub": claims["sub"], "email": "marie.dupont@example.org", "email_verified": True}


def test_malformed_claims_parameter_is_invalid_request(client: Any, web_rp: Any) -> None:
    response = client.get("/authorize", query_string=flow(web_rp, claims="{pas du json").params)
    assert query_of(response)["error"] == "invalid_request"


@pytest.mark.parametrize(("name", "error"), [("request", "request_not_supported"),
                                             ("request_uri", "request_uri_not_supported")])
def test_request_objects_are_not_supported(client: Any, web_rp: Any, name: str, error: str) -> None:
    response = client.get("/authorize", query_string={**flow(web_rp).params, name: "eyJ.x.y"})
    assert query_of(response)["error"] == error and query_of(response)["iss"] == "http://localhost"


def test_unknown_parameters_and_ui_locales_are_ignored(client: Any, web_rp: Any) -> None:
    params = {**flow(web_rp).params, "ui_locales": "fr-FR en", "foo": "bar", "display": "page"}
    assert client.get("/authorize", query_string=params).status_code == 303


def test_authorization_request_by_post_is_accepted(client: Any, web_rp: Any) -> None:
    response = client.post("/authorize", data=flow(web_rp).params)
    assert response.status_code == 303


def test_response_type_other_than_code_is_refused_by_redirect(client: Any, web_rp: Any) -> None:
    response = client.get("/authorize", query_string=flow(web_rp, response_type="id_token").params)
    assert query_of(response)["error"] == "unsupported_response_type"


def test_discovery_document_describes_the_profile(client: Any) -> None:
    meta = client.get("/.well-known/openid-configuration").json
    assert meta["issuer"] == "http://localhost"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["end_session_endpoint"] == "http://localhost/logout"
    assert meta["response_types_supported"] == ["code"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic", "client_secret_post", "private_key_jwt", "none"}
