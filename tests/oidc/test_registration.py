"""Client metadata under RFC 7591 / OIDC Registration names: ``idp clients create|update|show``, a JSON
metadata file, the FranceConnect profiles, clear errors (exit status 2), and what the profiles change
on the wire (no PKCE for the confidential FC client, verified when sent)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from click.testing import CliRunner, Result
from joserfc.jwk import ECKey, RSAKey

from tests.conftest import remember_secret
from tests.oidc.conftest import flow, login, make_rp, query_of, token_request

ENC_KEY = RSAKey.generate_key(2048, parameters={"use": "enc", "kid": "fc-enc"})
PUBLIC_JWKS = {"keys": [ENC_KEY.as_dict(private=False)]}


def idp(*args: str) -> Result:
    from idp.cli import main

    result = CliRunner().invoke(main, list(args))
    if result.exit_code == 0 and "--json" in args:
        data = json.loads(result.output)
        if isinstance(data, dict) and data.get("client_secret"):
            remember_secret(data["client_secret"])
    return result


def created(*args: str) -> dict[str, Any]:
    result = idp("clients", "create", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.usefixtures("cli_env")
def test_franceconnect_profile_registers_a_confidential_post_client_without_pkce() -> None:
    data = created("--profile", "franceconnect", "--name", "FranceConnect",
                   "--redirect-uri", "https://fcp.example/api/v2/oidc-callback",
                   "--post-logout-redirect-uri", "https://fcp.example/api/v2/client/logout-callback")
    assert data["kind"] == "federation" and data["token_endpoint_auth_method"] == "client_secret_post"
    assert len(data["client_secret"]) >= 32 and data["pkce_required"] is False
    assert data["grant_types"] == ["authorization_code"]
    assert {"given_name", "birthplace", "birthcountry", "preferred_username", "identite_pivot"} <= set(
        data["scope"].split())
    assert data["id_token_signed_response_alg"] == "RS256" and data["userinfo_signed_response_alg"] == "RS256"
    assert data["id_token_encrypted_response_alg"] is None
    # A generated client id is hexadecimal: never read as an option ("-F...") by `idp clients show <id>`.
    assert re.fullmatch(r"[0-9a-f]{32}", data["client_id"])
    shown = json.loads(idp("clients", "show", data["client_id"], "--json").output)
    assert shown == {k: v for k, v in data.items() if k != "client_secret"} and shown["client_secret_set"] is True
    assert data["client_secret"] not in idp("clients", "show", data["client_id"], "--json").output


@pytest.mark.usefixtures("cli_env")
def test_franceconnect_plus_profile_signs_and_encrypts_to_the_registered_keys(tmp_path: Any) -> None:
    refused = idp("clients", "create", "--profile", "franceconnect-plus", "--name", "FC+",
                  "--redirect-uri", "https://fcp-high.example/cb")
    assert refused.exit_code == 2 and "id_token_encrypted_response_alg needs the client's encryption keys" \
        in refused.output
    keys_file = tmp_path / "fc-plus.jwks"
    keys_file.write_text(json.dumps(PUBLIC_JWKS))
    data = created("--profile", "franceconnect-plus", "--name", "FC+", "--redirect-uri",
                   "https://fcp-high.example/cb", "--jwks-file", str(keys_file))
    assert data["id_token_signed_response_alg"] == "ES256" and data["userinfo_signed_response_alg"] == "ES256"
    for target in ("id_token", "userinfo"):
        assert data[f"{target}_encrypted_response_alg"] == "RSA-OAEP-256"
        assert data[f"{target}_encrypted_response_enc"] == "A256GCM"
    assert data["jwks"] == PUBLIC_JWKS


@pytest.mark.usefixtures("cli_env")
def test_every_setting_under_its_metadata_name_from_options_and_from_a_file(tmp_path: Any) -> None:
    ec = ECKey.generate_key("P-256", parameters={"use": "enc"})
    metadata = {
        "client_name": "Portail", "redirect_uris": ["https://portail.example/cb"],
        "post_logout_redirect_uris": ["https://portail.example/"], "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
        "scope": "openid email offline_access", "subject_type": "public",
        "id_token_signed_response_alg": "ES256", "id_token_encrypted_response_alg": "ECDH-ES",
        "id_token_encrypted_response_enc": "A256GCM", "userinfo_signed_response_alg": "RS256",
        "userinfo_encrypted_response_alg": "ECDH-ES", "jwks": {"keys": [ec.as_dict(private=False)]},
        "backchannel_logout_uri": "https://portail.example/bc", "code_ttl": 20, "access_token_ttl": 120,
    }
    path = tmp_path / "client.json"
    path.write_text(json.dumps(metadata))
    data = created("--metadata-file", str(path), "--client-name", "Portail (options win)", "--code-ttl", "25")
    expected = {**metadata, "client_name": "Portail (options win)", "code_ttl": 25,
                "userinfo_encrypted_response_enc": "A128CBC-HS256"}  # OIDC Registration §2 default enc
    del expected["response_types"]
    assert {k: data[k] for k in expected} == expected
    updated = json.loads(idp("clients", "update", data["client_id"], "--userinfo-signed-response-alg", "ES256",
                             "--backchannel-logout-uri", "", "--grant-type", "authorization_code",
                             "--json").output)
    assert updated["userinfo_signed_response_alg"] == "ES256" and updated["backchannel_logout_uri"] is None
    assert updated["grant_types"] == ["authorization_code"] and updated["id_token_encrypted_response_alg"] == "ECDH-ES"


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(("args", "message"), [
    (["--id-token-signed-response-alg", "HS256"], "id_token_signed_response_alg must be one of RS256, ES256"),
    (["--id-token-encrypted-response-enc", "A256GCM"], "id_token_encrypted_response_enc needs"),
    (["--userinfo-encrypted-response-alg", "RSA1_5", "--jwks-uri", "https://rp.example/jwks"], "must be one of"),
    (["--jwks", json.dumps({"keys": [ENC_KEY.as_dict(private=True)]})], "public keys only"),
    (["--jwks", json.dumps(PUBLIC_JWKS), "--jwks-uri", "https://rp.example/jwks"], "must not both"),
    (["--jwks", "{not json"], "must be JSON"),
    (["--grant-type", "implicit"], "no implicit or password"),
    (["--grant-type", "refresh_token"], "must include authorization_code"),
    (["--token-endpoint-auth-method", "private_key_jwt"], "needs the client's jwks or jwks_uri"),
    (["--id-token-encrypted-response-alg", "ECDH-ES", "--jwks", json.dumps(PUBLIC_JWKS)], "needs an EC encryption"),
    (["--kind", "mobile", "--auth-method", "client_secret_basic"], "mobile clients are public"),
    (["--code-ttl", "0"], "code_ttl must be a number of seconds"),
    (["--scope", "email"], "including openid"),
    (["--redirect-uri", "https://rp.example/cb#frag"], "without fragment"),
])
def test_inconsistent_metadata_is_a_clear_usage_error(args: list[str], message: str) -> None:
    result = idp("clients", "create", "--name", "X", "--redirect-uri", "https://rp.example/cb", *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("cli_env")
def test_metadata_file_errors_and_updates_that_cannot_apply(tmp_path: Any) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"client_name": "X", "redirect_uris": ["https://rp.example/cb"], "logo": "x"}))
    unknown = idp("clients", "create", "--metadata-file", str(path))
    assert unknown.exit_code == 2 and "unknown client metadata 'logo'" in unknown.output
    path.write_text("[1, 2]")
    assert idp("clients", "create", "--metadata-file", str(path)).exit_code == 2
    assert "client_name is required" in idp("clients", "create", "--redirect-uri", "https://rp.example/cb").output
    web = created("--name", "Web", "--redirect-uri", "https://rp.example/cb")
    switch = idp("clients", "update", web["client_id"], "--auth-method", "none")
    assert switch.exit_code == 2 and "register a new client" in switch.output
    assert idp("clients", "update", web["client_id"]).exit_code == 2
    assert idp("clients", "show", "inconnu").exit_code == 2


def test_the_franceconnect_client_needs_no_pkce_but_a_challenge_sent_is_verified(app: Any, client: Any,
                                                                                  person: Any) -> None:
    fc = make_rp(app, profile="franceconnect")
    f = flow(fc, code_challenge=None, code_challenge_method=None, prompt="login", acr_values="eidas1")
    code = login(app, client, person, f, amr=("pwd",))["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": f.params["redirect_uri"]}
    ok = token_request(client, fc, data)
    assert ok.status_code == 200 and "id_token" in ok.json and "refresh_token" not in ok.json
    with_pkce = flow(fc, prompt="login")
    code = login(app, app.test_client(), person, with_pkce, amr=("pwd",))["code"]
    wrong = token_request(client, fc, {**data, "code": code, "code_verifier": "v" * 50})
    assert wrong.json["error"] == "invalid_grant"


def test_public_clients_always_need_pkce_even_registered_without(app: Any, client: Any) -> None:
    mobile = make_rp(app, "mobile", pkce_required=False)
    response = client.get("/authorize", query_string=flow(mobile, code_challenge=None,
                                                          code_challenge_method=None).params)
    assert query_of(response)["error"] == "invalid_request"
