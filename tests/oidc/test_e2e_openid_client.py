"""End to end with an independent, strict RP: node ``openid-client`` 6 (tests/oidc/rp/rp.mjs) against
the IdP served on a real port, a person walking the REAL login page at /connexion with ``requests``.

The RP does discovery, code + PKCE S256, checks ``iss`` in the authorization response (RFC 9207),
validates the ID token (signature from the JWKS, iss, aud, exp, iat, nonce, at_hash...), calls
userinfo (sub check), refreshes (rotation), revokes, and builds the end-session URL; the test then
follows the logout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

from idp.clock import FrozenClock
from tests.conftest import csrf_from, free_port
from tests.oidc.conftest import NIR, PASSWORD, make_person, make_rp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RP_SCRIPT = os.path.join(ROOT, "tests", "oidc", "rp", "rp.mjs")
PORT = free_port()
ISSUER = f"http://127.0.0.1:{PORT}"
CALLBACK = f"{ISSUER}/rp/callback"  # never served: the test reads the code from the redirect
GOODBYE = f"{ISSUER}/rp/au-revoir"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("node") is None or not os.path.isdir(
                  os.path.join(ROOT, "node_modules", "openid-client")), reason="node or openid-client missing")]


@pytest.fixture
def clock() -> FrozenClock:
    """openid-client checks iat/exp against the real time: freeze the clock at the real now."""
    return FrozenClock(datetime.now(UTC))


@pytest.fixture
def app_config() -> dict[str, Any]:
    """The issuer is the live server's URL."""
    return {"issuer": ISSUER}


@pytest.fixture
def live(app: Any) -> Iterator[str]:
    """The app on ISSUER's port."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", PORT, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield ISSUER
    server.shutdown()


def rp(**command: Any) -> dict[str, Any]:
    """Run one step of the node RP."""
    return run_node_rp(RP_SCRIPT, command)


def run_node_rp(script: str, command: dict[str, Any]) -> dict[str, Any]:
    """Run one step of a node RP script; its last output line is the JSON result, never a failure."""
    done = subprocess.run(["node", script, json.dumps({"issuer": ISSUER, **command})], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, check=False)
    assert done.stdout, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert "failure" not in result, result
    return result


def walk_login(browser: requests.Session, url: str, *, nir: str = NIR, password: str = PASSWORD,
               mailbox: Any = None) -> str:
    """Follow redirects like a browser, fill the real /connexion form (and, when asked, the security code
    read from the SMTP server), stop at the RP's callback."""
    response = browser.get(url, allow_redirects=False)
    for _ in range(20):
        location = response.headers.get("Location")
        if location is None and "/biometrie/proposition" in response.url:  # from the 2nd login on
            response = browser.post(response.url, allow_redirects=False, data={
                "csrf_token": csrf_from(response.text), "choice": "later"})
            continue
        if location is None and "/connexion/code" in response.url:
            assert mailbox is not None, "the login asked for the security code"
            response = browser.post(response.url, allow_redirects=False, data={
                "csrf_token": csrf_from(response.text), "code": mailbox.code()})
            continue
        if location is None:
            assert "/connexion" in response.url, response.text[:500]
            response = browser.post(response.url, allow_redirects=False, data={
                "csrf_token": csrf_from(response.text), "nir": nir, "password": password})
            continue
        target = urljoin(response.url, location)
        if target.startswith(CALLBACK):
            return target
        response = browser.get(target, allow_redirects=False)
    raise AssertionError("the login did not come back to the RP")


def test_strict_rp_mobile_app_full_cycle(app: Any, live: str) -> None:
    person = make_person(app)
    client = make_rp(app, "mobile", redirect_uris=[CALLBACK], post_logout_redirect_uris=[GOODBYE])
    common = {"client_id": client.client_id, "auth": "none", "redirect_uri": CALLBACK}
    started = rp(step="start", scope="openid profile email birth offline_access inconnu", **common)
    browser = requests.Session()
    callback = walk_login(browser, started["url"])
    assert parse_qs(urlsplit(callback).query)["iss"] == [ISSUER]
    result = rp(step="finish", callback_url=callback, verifier=started["verifier"], state=started["state"],
                nonce=started["nonce"], post_logout_redirect_uri=GOODBYE, **common)
    claims = result["claims"]
    assert claims["iss"] == ISSUER and claims["aud"] == client.client_id
    assert claims["amr"] == ["pwd"] and claims["acr"] == "eidas1"
    assert claims["sub"] != person.account_id and NIR not in json.dumps(result)
    assert result["userinfo"]["family_name"] == "DUPONT" and result["userinfo"]["birthcountry"] == "99100"
    assert result["scope"].split() == ["openid", "profile", "email", "birth", "offline_access"], "unknown: ignored"
    assert result["refreshed_sub"] == claims["sub"] and result["rotated"] is True, "offline_access: refresh token"
    assert result["after_revocation"] == "invalid_grant"
    logout = browser.get(result["end_session_url"], allow_redirects=False)
    assert logout.status_code == 302 and logout.headers["Location"] == f"{GOODBYE}?state=fin-de-session"
    again = browser.get(rp(step="start", scope="openid", extra={"prompt": "none"}, **common)["url"],
                        allow_redirects=False)
    assert parse_qs(urlsplit(again.headers["Location"]).query)["error"] == ["login_required"]


def test_franceconnect_style_rp(app: Any, live: str) -> None:
    """client_secret_post, prompt=login, acr_values=eidas1, scopes openid profile email birth, FC claim
    formats, and the end_session round trip."""
    make_person(app)
    fc = make_rp(app, "federation", require_email_code=False, redirect_uris=[CALLBACK],
                 post_logout_redirect_uris=[GOODBYE])
    common = {"client_id": fc.client_id, "client_secret": fc.secret, "auth": "post", "redirect_uri": CALLBACK}
    browser = requests.Session()
    for _ in range(2):  # the second time, the session exists but prompt=login asks again
        started = rp(step="start", scope="openid profile email birth",
                     extra={"prompt": "login", "acr_values": "eidas1"}, **common)
        first_hop = browser.get(started["url"], allow_redirects=False)
        assert first_hop.status_code == 303 and first_hop.headers["Location"].endswith("/connexion")
        callback = walk_login(browser, started["url"])
        result = rp(step="finish", callback_url=callback, verifier=started["verifier"], state=started["state"],
                    nonce=started["nonce"], post_logout_redirect_uri=GOODBYE, **common)
    claims, info = result["claims"], result["userinfo"]
    assert claims["acr"] == "eidas1"
    assert info["given_name"] == "Marie Claire" and info["family_name"] == "DUPONT"
    assert info["preferred_username"] == "MOREAU" and info["gender"] == "female"
    assert info["birthdate"] == "1985-03-12" and info["birthplace"] == "69383" and info["birthcountry"] == "99100"
    assert info["email"] == "marie.dupont@example.org"
    assert "refreshed_sub" not in result, "FranceConnect clients get no refresh token"
    logout = browser.get(result["end_session_url"], allow_redirects=False)
    assert logout.headers["Location"] == f"{GOODBYE}?state=fin-de-session"
