"""Signing keys: rotation publishes the next key first, old tokens stay verifiable, ES256 per client,
and the ``idp clients`` / ``idp keys`` commands."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from tests.oidc.conftest import decode_id_token, flow, login, make_rp, redeem


def _kids(client: Any) -> set[str]:
    return {k["kid"] for k in client.get("/jwks").json["keys"]}


def test_rotation_keeps_old_tokens_verifiable_and_signs_with_the_published_next_key(
        app: Any, client: Any, clock: Any, person: Any, web_rp: Any) -> None:
    from joserfc import jws

    from idp.oidc import keys

    f = flow(web_rp)
    old_token = redeem(client, web_rp, login(app, client, person, f)["code"], f).json["id_token"]
    old_kid = jws.extract_compact(old_token.encode()).headers()["kid"]
    with app.app_context():
        upcoming = next(k.kid for k in keys.list_keys() if k.alg == "RS256" and k.state == "next")
    assert upcoming in _kids(client), "the next key is published before it signs"
    with app.app_context():
        keys.rotate()
    f2 = flow(web_rp, prompt="login")
    new_token = redeem(client, web_rp, login(app, client, person, f2)["code"], f2).json["id_token"]
    assert jws.extract_compact(new_token.encode()).headers()["kid"] == upcoming
    assert old_kid in _kids(client)
    assert decode_id_token(app, old_token)["aud"] == web_rp.client_id
    clock.advance(2 * 24 * 3600 + 1)
    assert old_kid not in _kids(client), "retired keys leave the JWKS after key_retire_after"


def test_es256_per_client(app: Any, client: Any, person: Any) -> None:
    from joserfc import jws

    rp = make_rp(app, "web", id_token_signed_response_alg="ES256")
    f = flow(rp)
    token = redeem(client, rp, login(app, client, person, f)["code"], f).json["id_token"]
    assert jws.extract_compact(token.encode()).headers()["alg"] == "ES256"
    assert decode_id_token(app, token)["aud"] == rp.client_id


def test_private_keys_are_encrypted_at_rest(app: Any) -> None:
    from idp.oidc import keys

    with app.app_context():
        keys.ensure_keys("RS256")
        record = keys.list_keys()[0]
        assert '"d"' not in record.private_jwk_enc and "d" not in record.public_jwk


@pytest.mark.usefixtures("cli_env")
def test_clients_create_prints_a_long_secret_stored_hashed() -> None:
    from idp import create_app
    from idp.cli import main
    from idp.oidc.clients import get_client
    from tests.conftest import remember_secret

    result = CliRunner().invoke(main, ["clients", "create", "--name", "Mon RP", "--redirect-uri",
                                       "https://rp.example/cb", "--post-logout-redirect-uri", "https://rp.example/",
                                       "--kind", "federation", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    remember_secret(data["client_secret"])
    assert len(data["client_secret"]) >= 32 and data["token_endpoint_auth_method"] == "client_secret_post"
    with create_app().app_context():
        stored = get_client(data["client_id"])
        assert stored is not None and stored.client_secret_hash != data["client_secret"]
        assert stored.check_client_secret(data["client_secret"])


@pytest.mark.usefixtures("cli_env")
def test_keys_rotate_and_list() -> None:
    from idp.cli import main

    runner = CliRunner()
    first = json.loads(runner.invoke(main, ["keys", "rotate", "--json"]).output)
    assert {(k["alg"], k["state"]) for k in first} == {("RS256", "current"), ("RS256", "next"),
                                                       ("ES256", "current"), ("ES256", "next")}
    runner.invoke(main, ["keys", "rotate", "--alg", "RS256"])
    listed = json.loads(runner.invoke(main, ["keys", "list", "--json"]).output)
    rs = {k["state"]: k for k in listed if k["alg"] == "RS256"}
    assert set(rs) == {"current", "next", "retired"} and rs["retired"]["published"] is True
    previous_next = next(k["kid"] for k in first if k["alg"] == "RS256" and k["state"] == "next")
    assert rs["current"]["kid"] == previous_next


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize("args", [["--kind", "desktop"], ["--auth-method", "tls_client_auth"],
                                  ["--redirect-uri", "pas-une-uri"]])
def test_clients_create_refuses_bad_input(args: list[str]) -> None:
    from idp.cli import main

    base = ["clients", "create", "--name", "X", "--redirect-uri", "https://rp.example/cb"]
    assert CliRunner().invoke(main, base + args).exit_code != 0
