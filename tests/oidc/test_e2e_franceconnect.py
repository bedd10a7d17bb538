"""FranceConnect (v2) and FranceConnect+ as they call an identity provider, end to end: node
``openid-client`` set up as FC's core sets up its client for an IdP (tests/oidc/rp/franceconnect.mjs:
client_secret_post, no PKCE, prompt=login, acr_values, FC's scopes, 64-hex state and nonce; FC+ with
ES256 signatures and the ID token and userinfo encrypted to its key), against the IdP on a real port,
clients registered with ``--profile franceconnect|franceconnect-plus``, people walking the REAL login
pages (the security code read from the SMTP server when the level asks for it). The identity is
checked twice: by the node RP with FC's format rules, and here against the registry's values.

People from the demo registry (config/rfi-demo.json): born in Corsica (COG 2A004), born abroad
(Morocco, 99350), "présumé né" (1980-00-00, Mali); plus one born abroad on an unknown day (YYYY-MM-00).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from joserfc.jwk import RSAKey

from tests.oidc import test_e2e_openid_client as e2e
from tests.oidc.conftest import PASSWORD
from tests.oidc.test_e2e_openid_client import CALLBACK, GOODBYE, ISSUER, ROOT, clock, live, walk_login  # noqa: F401 - live server fixtures

pytestmark = [*e2e.pytestmark, pytest.mark.usefixtures("live")]

FC_SCRIPT = os.path.join(ROOT, "tests", "oidc", "rp", "franceconnect.mjs")
FC_SCOPE = "openid given_name family_name birthdate gender birthplace birthcountry email preferred_username"
FC_PLUS_SCOPE = "openid profile email preferred_username birthplace birthcountry"  # issue 12's FC+ request
with open(os.path.join(ROOT, "config", "rfi-demo.json"), encoding="utf-8") as demo_file:
    DEMO = json.load(demo_file)
PEOPLE = {"born-in-corsica": "190072A00401746", "born-abroad": "278019935000783", "presume-ne": "180999934100334"}
UNKNOWN_DAY = {"nir": "275069935212337", "given_name": "Yasmina Nour", "family_name": "HADDAD",
               "birthdate": "1975-06-00", "gender": "female", "birthplace": "", "birthcountry": "99352",
               "vitale_card_serial": "8250078901", "iban": "FR7630006000011234567890189"}


@pytest.fixture
def app_config() -> dict[str, Any]:
    """The live server's issuer, and the trust framework FC+ needs: password + e-mail code counts as eidas2
    (``IDP_ACR_EMAIL_CODE``; eidas1 by default, see the README's assurance rules)."""
    return {"issuer": ISSUER, "acr_email_code": "eidas2"}


def fc(**command: Any) -> dict[str, Any]:
    """One step of the FranceConnect-style RP."""
    return e2e.run_node_rp(FC_SCRIPT, command)


def registry_record(nir: str) -> dict[str, Any]:
    return next(r for r in [*DEMO, UNKNOWN_DAY] if r["nir"] == nir)


def enrol(app: Any, nir: str) -> str:
    """The person's registry record and account (password, validated e-mail); returns the e-mail."""
    from idp.accounts import service
    from idp.nir import Nir
    from idp.rfi_adapter.sql import import_records
    from tests.conftest import remember_secret

    remember_secret(nir)
    email = f"{nir[-6:]}@example.org"
    with app.app_context():
        import_records([*DEMO, UNKNOWN_DAY])
        service.create_account(Nir.parse(nir), PASSWORD, email=email, email_validated=True)
    return email


def register(app: Any, profile: str, **metadata: Any) -> tuple[str, str]:
    from idp.oidc.clients import create_client
    from tests.conftest import remember_secret

    with app.app_context():
        registered = create_client(profile=profile, name="FranceConnect", redirect_uris=[CALLBACK],
                                   post_logout_redirect_uris=[GOODBYE], **metadata)
        client_id, secret = registered.client.client_id, registered.client_secret
    assert secret is not None
    remember_secret(secret)
    return client_id, secret


def expected_identity(record: dict[str, Any], scope: str) -> dict[str, Any]:
    """What FC receives: all first names, birth name, FC formats; birthplace "" for people born abroad."""
    wanted = set(scope.split()) | ({"given_name", "family_name", "preferred_username", "gender", "birthdate"}
                                   if "profile" in scope else set())
    values = {k: record[k] for k in ("given_name", "family_name", "birthdate", "gender", "birthplace",
                                     "birthcountry") if k in wanted}
    if "preferred_username" in wanted and record.get("preferred_username"):
        values["preferred_username"] = record["preferred_username"]
    return values


def login_and_finish(app: Any, mailbox: Any, nir: str, common: dict[str, Any], scope: str,
                     acr_values: str) -> tuple[requests.Session, dict[str, Any]]:
    email = enrol(app, nir)
    started = fc(step="start", scope=scope, acr_values=acr_values, **common)
    assert re.fullmatch(r"[0-9a-f]{64}", started["state"]) and re.fullmatch(r"[0-9a-f]{64}", started["nonce"])
    query = parse_qs(urlsplit(started["url"]).query)
    assert query["prompt"] == ["login"] and "code_challenge" not in query
    browser = requests.Session()
    callback = walk_login(browser, started["url"], nir=nir, mailbox=mailbox)
    result = fc(step="finish", callback_url=callback, state=started["state"], nonce=started["nonce"],
                acr_values=acr_values, **common)
    assert result["identity_errors"] == [], result["userinfo"]
    assert result["userinfo"].get("email", email) == email and nir not in json.dumps(result)
    assert result["refresh_token"] is False, "FranceConnect is registered for the code grant only"
    return browser, result


def logout_round_trip(browser: requests.Session, result: dict[str, Any]) -> None:
    """FC's logout: signed id_token_hint, state, post_logout_redirect_uri -> back to FC with the state."""
    assert "state" in parse_qs(urlsplit(result["end_session_url"]).query), result["end_session_url"]
    state = parse_qs(urlsplit(result["end_session_url"]).query)["state"][0]
    logout = browser.get(result["end_session_url"], allow_redirects=False)
    assert logout.status_code == 302 and logout.headers["Location"] == f"{GOODBYE}?state={state}"


@pytest.mark.parametrize("who", list(PEOPLE))
def test_franceconnect_v2_gets_the_pivot_identity_in_fc_formats(app: Any, mailbox: Any, who: str) -> None:
    client_id, secret = register(app, "franceconnect")
    common = {"client_id": client_id, "client_secret": secret, "redirect_uri": CALLBACK,
              "post_logout_redirect_uri": GOODBYE, "signing_alg": "RS256"}
    browser, result = login_and_finish(app, mailbox, PEOPLE[who], common, FC_SCOPE, "eidas1")
    record = registry_record(PEOPLE[who])
    info = result["userinfo"]
    assert {k: info[k] for k in expected_identity(record, FC_SCOPE)} == expected_identity(record, FC_SCOPE)
    assert result["claims"]["acr"] == "eidas1" and result["id_token_parts"] == 3
    assert set(result["scope"].split()) == set(FC_SCOPE.split())
    logout_round_trip(browser, result)


@pytest.mark.parametrize("who", [*PEOPLE, "unknown-day"])
def test_franceconnect_plus_decrypts_and_validates_id_token_and_userinfo(app: Any, mailbox: Any,
                                                                       who: str) -> None:
    nir = PEOPLE.get(who, UNKNOWN_DAY["nir"])
    key = RSAKey.generate_key(2048, parameters={"kid": "fcp-high-enc", "use": "enc", "alg": "RSA-OAEP-256"})
    client_id, secret = register(app, "franceconnect-plus", jwks={"keys": [key.as_dict(private=False)]})
    common = {"client_id": client_id, "client_secret": secret, "redirect_uri": CALLBACK,
              "post_logout_redirect_uri": GOODBYE, "signing_alg": "ES256",
              "decryption_jwk": key.as_dict(private=True), "encryption_alg": "RSA-OAEP-256"}
    browser, result = login_and_finish(app, mailbox, nir, common, FC_PLUS_SCOPE, "eidas2")
    assert result["id_token_parts"] == 5 and result["signed_id_token_parts"] == 3, "a JWE around a JWS"
    assert result["userinfo_was_encrypted"] is True and result["signed_userinfo_alg"] == "ES256"
    assert result["claims"]["acr"] == "eidas2" and "mail" in result["claims"]["amr"]
    record = registry_record(nir)
    info = result["userinfo"]
    assert {k: info[k] for k in expected_identity(record, FC_PLUS_SCOPE)} == expected_identity(record, FC_PLUS_SCOPE)
    logout_round_trip(browser, result)
