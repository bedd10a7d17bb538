"""ID tokens encrypted to the client (OIDC Core §10.2, FranceConnect+): signed by us, then a JWE to the
client's registered key (inline ``jwks`` or its cached, size-limited ``jwks_uri``)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, jsonify
from joserfc import jwe
from joserfc.jwk import ECKey, KeySet, RSAKey

from tests.conftest import serve_in_thread
from tests.oidc.conftest import decode_id_token, flow, login, make_rp, redeem


def _key(kty: str, kid: str = "fc-plus-enc") -> Any:
    parameters = {"kid": kid, "use": "enc"}
    return RSAKey.generate_key(2048, parameters=parameters) if kty == "RSA" else \
        ECKey.generate_key("P-256", parameters=parameters)


def _signed_inside(app: Any, encrypted: str, key: Any, alg: str, enc: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JWE protected header, claims of the signed ID token inside, checked against our JWKS)."""
    assert encrypted.count(".") == 4, "a JWE compact serialization has five parts"
    decrypted = jwe.decrypt_compact(encrypted, KeySet([key]), algorithms=[alg, enc])
    inner = decrypted.plaintext.decode()
    return dict(decrypted.headers()), decode_id_token(app, inner)


@pytest.mark.parametrize(("alg", "kty", "enc"), [("RSA-OAEP-256", "RSA", "A256GCM"), ("ECDH-ES", "EC", "A256GCM"),
                                                 ("RSA-OAEP-256", "RSA", "A128CBC-HS256")])
def test_id_token_is_signed_then_encrypted_to_the_registered_key(app: Any, client: Any, person: Any,
                                                                  alg: str, kty: str, enc: str) -> None:
    key = _key(kty)
    other = _key(kty, kid="signing-only")
    rp = make_rp(app, "federation", id_token_signed_response_alg="ES256", id_token_encrypted_response_alg=alg,
                 id_token_encrypted_response_enc=enc,
                 jwks={"keys": [{**other.as_dict(private=False), "use": "sig"}, key.as_dict(private=False)]})
    f = flow(rp, scope="openid given_name birthdate", claims='{"id_token": {"birthdate": null}}')
    tokens = redeem(client, rp, login(app, client, person, f)["code"], f).json
    header, claims = _signed_inside(app, tokens["id_token"], key, alg, enc)
    assert header["alg"] == alg and header["enc"] == enc and header["cty"] == "JWT" and header["kid"] == "fc-plus-enc"
    assert claims["aud"] == rp.client_id and claims["nonce"] == f.params["nonce"] and claims["birthdate"] == "1985-03-12"


def test_encryption_keys_from_jwks_uri_are_fetched_once_and_used(app: Any, client: Any, person: Any,
                                                                  monkeypatch: Any) -> None:
    from idp.oidc import server

    key = _key("RSA")
    hits: list[int] = []
    sink = Flask("fc-plus-jwks")

    @sink.get("/jwks")
    def _jwks() -> Any:
        hits.append(1)
        return jsonify(keys=[key.as_dict(private=False)])

    served = serve_in_thread(sink)
    monkeypatch.setattr(server, "_jwks_uri_cache", {})
    try:
        rp = make_rp(app, "federation", id_token_encrypted_response_alg="RSA-OAEP-256",
                     id_token_encrypted_response_enc="A256GCM", userinfo_encrypted_response_alg="RSA-OAEP-256",
                     userinfo_encrypted_response_enc="A256GCM", jwks_uri=f"{served.url}/jwks")
        for prompt in ("login", "login"):
            f = flow(rp, prompt=prompt)
            tokens = redeem(client, rp, login(app, client, person, f)["code"], f).json
            _header, claims = _signed_inside(app, tokens["id_token"], key, "RSA-OAEP-256", "A256GCM")
            assert claims["aud"] == rp.client_id
        info = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        decrypted = jwe.decrypt_compact(info.data, KeySet([key]), algorithms=["RSA-OAEP-256", "A256GCM"])
        assert b"birthcountry" in decrypted.plaintext
        assert len(hits) == 1, "the client's key set is cached"
    finally:
        served.stop()


def test_unencrypted_clients_keep_a_plain_signed_id_token(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    f = flow(web_rp)
    tokens = redeem(client, web_rp, login(app, client, person, f)["code"], f).json
    assert tokens["id_token"].count(".") == 2 and decode_id_token(app, tokens["id_token"])["aud"] == web_rp.client_id


def test_discovery_advertises_id_token_and_userinfo_encryption(client: Any) -> None:
    meta = client.get("/.well-known/openid-configuration").json
    for target in ("id_token", "userinfo"):
        assert meta[f"{target}_encryption_alg_values_supported"] == ["RSA-OAEP-256", "ECDH-ES"]
        assert "A256GCM" in meta[f"{target}_encryption_enc_values_supported"]


@pytest.mark.parametrize("path", ["/error", "/redirect", "/garbage", "/not-a-key-set"])
def test_an_unusable_jwks_uri_is_an_rfc_error_not_a_500(app: Any, client: Any, person: Any, monkeypatch: Any,
                                                        path: str) -> None:
    from flask import redirect

    from idp.oidc import server

    sink = Flask("broken-jwks")
    sink.add_url_rule("/error", "error", lambda: ("down", 500))
    sink.add_url_rule("/redirect", "redirect", lambda: redirect("https://evil.example/jwks"))
    sink.add_url_rule("/garbage", "garbage", lambda: "{pas du json")
    sink.add_url_rule("/not-a-key-set", "not_a_key_set", lambda: jsonify(keys=[{"kty": "RSA"}]))
    served = serve_in_thread(sink)
    monkeypatch.setattr(server, "_jwks_uri_cache", {})
    try:
        rp = make_rp(app, "federation", id_token_encrypted_response_alg="RSA-OAEP-256",
                     id_token_encrypted_response_enc="A256GCM", jwks_uri=f"{served.url}{path}")
        f = flow(rp)
        response = redeem(client, rp, login(app, client, person, f)["code"], f)
    finally:
        served.stop()
    assert response.status_code == 400 and response.json["error"] == "invalid_request"
