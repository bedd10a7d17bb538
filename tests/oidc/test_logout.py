"""RP-Initiated Logout and Back-Channel Logout."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask, request

from tests.conftest import csrf_from, serve_in_thread
from tests.oidc.conftest import POST_LOGOUT, decode_id_token, flow, login, make_rp, query_of, redeem, token_request


def _logged_in(app: Any, client: Any, person: Any, rp: Any) -> str:
    f = flow(rp)
    return str(redeem(client, rp, login(app, client, person, f)["code"], f).json["id_token"])


def _has_session(client: Any, rp: Any) -> bool:
    response = client.get("/authorize", query_string=flow(rp, prompt="none").params)
    return "code" in query_of(response)


def test_logout_with_a_valid_hint_redirects_to_the_registered_uri_with_state(app: Any, client: Any, person: Any,
                                                                              web_rp: Any) -> None:
    hint = _logged_in(app, client, person, web_rp)
    response = client.get("/logout", query_string={"id_token_hint": hint, "post_logout_redirect_uri": POST_LOGOUT,
                                                   "state": "etat-42"})
    assert response.status_code == 302
    assert response.headers["Location"] == f"{POST_LOGOUT}?state=etat-42"
    assert not _has_session(client, web_rp)


def test_logout_with_a_valid_hint_and_an_unregistered_uri_does_not_redirect(app: Any, client: Any, person: Any,
                                                                            web_rp: Any) -> None:
    hint = _logged_in(app, client, person, web_rp)
    response = client.get("/logout", query_string={"id_token_hint": hint,
                                                   "post_logout_redirect_uri": "https://evil.example/"})
    assert response.status_code == 200 and "Location" not in response.headers
    assert "Vous êtes déconnecté" in response.get_data(as_text=True)
    assert not _has_session(client, web_rp)


@pytest.mark.parametrize("hint", ["pas-un-jeton", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."])
def test_logout_with_a_bad_hint_shows_a_french_page_and_does_not_redirect(app: Any, client: Any, person: Any,
                                                                          web_rp: Any, hint: str) -> None:
    _logged_in(app, client, person, web_rp)
    response = client.get("/logout", query_string={"id_token_hint": hint, "post_logout_redirect_uri": POST_LOGOUT},
                          headers={"Accept": "text/html"})
    assert response.status_code == 400 and "Location" not in response.headers
    assert "Déconnexion impossible" in response.get_data(as_text=True)
    assert _has_session(client, web_rp), "nothing happens on a request we cannot trust"


def test_logout_without_a_hint_asks_for_confirmation_then_does_not_redirect(app: Any, client: Any, person: Any,
                                                                            web_rp: Any) -> None:
    _logged_in(app, client, person, web_rp)
    page = client.get("/logout", query_string={"client_id": web_rp.client_id, "post_logout_redirect_uri": POST_LOGOUT})
    assert page.status_code == 200 and "Se déconnecter" in page.get_data(as_text=True)
    assert _has_session(client, web_rp)
    missing_csrf = client.post("/logout", data={"confirm": "1"})
    assert missing_csrf.status_code == 400
    done = client.post("/logout", data={"confirm": "1", "csrf_token": csrf_from(page.data),
                                        "client_id": web_rp.client_id, "post_logout_redirect_uri": POST_LOGOUT})
    assert done.status_code == 303 and done.headers["Location"].endswith("/logout/termine")
    assert "Vous êtes déconnecté" in client.get(done.headers["Location"]).get_data(as_text=True)
    assert not _has_session(client, web_rp)


def test_backchannel_logout_token_is_sent_to_registered_clients(app: Any, client: Any, person: Any) -> None:
    from joserfc import jwt

    from idp.oidc.keys import public_keyset

    received: list[str] = []
    arrived = threading.Event()
    sink = Flask("rp-backchannel")

    @sink.post("/backchannel")
    def _backchannel() -> tuple[str, int]:
        received.append(request.form["logout_token"])
        arrived.set()
        return "", 200

    server = serve_in_thread(sink)
    try:
        rp = make_rp(app, "web", backchannel_logout_uri=f"{server.url}/backchannel")
        hint = _logged_in(app, client, person, rp)
        sid = decode_id_token(app, hint)["sid"]
        client.get("/logout", query_string={"id_token_hint": hint})
        assert arrived.wait(5)
    finally:
        server.stop()
    with app.app_context():
        token = jwt.decode(received[0], public_keyset())
    assert token.header["typ"] == "logout+jwt"
    claims = token.claims
    assert claims["aud"] == rp.client_id and claims["sid"] == sid and claims["sub"] == decode_id_token(app, hint)["sub"]
    assert "http://schemas.openid.net/event/backchannel-logout" in claims["events"] and "nonce" not in claims


def test_logout_with_someone_elses_hint_asks_for_confirmation_instead_of_logging_out(
        app: Any, client: Any, person: Any, web_rp: Any) -> None:
    from tests.oidc.conftest import OTHER_NIR, make_person

    _logged_in(app, client, person, web_rp)
    attacker = app.test_client()
    own_hint = _logged_in(app, attacker, make_person(app, OTHER_NIR, "jean@example.org"), web_rp)
    page = client.get("/logout", query_string={"id_token_hint": own_hint, "post_logout_redirect_uri": POST_LOGOUT,
                                               "state": "x"})
    assert page.status_code == 200 and "Location" not in page.headers
    assert "Se déconnecter" in page.get_data(as_text=True)
    assert _has_session(client, web_rp), "a forged cross-site logout must not end the session"
    done = client.post("/logout", data={"confirm": "1", "csrf_token": csrf_from(page.data),
                                        "client_id": web_rp.client_id, "post_logout_redirect_uri": POST_LOGOUT})
    assert done.status_code == 303 and not _has_session(client, web_rp)
    assert _has_session(attacker, web_rp), "only the confirming browser is logged out"


def test_logout_with_a_hint_of_an_earlier_session_of_the_same_person_still_logs_out(
        app: Any, client: Any, person: Any, web_rp: Any) -> None:
    old_hint = _logged_in(app, client, person, web_rp)
    client.get("/authorize", query_string=flow(web_rp, prompt="login").params)
    from tests.oidc.conftest import finish_login

    finish_login(app, client, person)  # a new session (new sid) for the same person
    response = client.get("/logout", query_string={"id_token_hint": old_hint, "post_logout_redirect_uri": POST_LOGOUT})
    assert response.status_code == 302 and not _has_session(client, web_rp)


def _franceconnect_login(app: Any, client: Any, person: Any) -> tuple[Any, str]:
    fc = make_rp(app, profile="franceconnect")
    f = flow(fc, code_challenge=None, code_challenge_method=None, prompt="login", acr_values="eidas1")
    code = login(app, client, person, f, amr=("pwd",))["code"]
    tokens = token_request(client, fc, {"grant_type": "authorization_code", "code": code,
                                        "redirect_uri": f.params["redirect_uri"]}).json
    return fc, str(tokens["id_token"])


def test_logout_as_franceconnect_calls_it_with_an_expired_hint(app: Any, client: Any, clock: Any,
                                                                person: Any) -> None:
    """FC's session lasts 30 minutes, our ID token 10: FC logs out with an expired hint, its state, its
    post_logout_redirect_uri and client_id. The signature is still checked; the expiry is not (RP-Initiated
    Logout §2: the OP accepts expired hints)."""
    fc, hint = _franceconnect_login(app, client, person)
    clock.advance(app.extensions["idp.settings"].id_token_ttl + 5 * 60)
    assert _has_session(client, fc), "the IdP session outlives the ID token"
    state = "a5" * 32
    response = client.get("/logout", query_string={"id_token_hint": hint, "state": state, "client_id": fc.client_id,
                                                   "post_logout_redirect_uri": POST_LOGOUT})
    assert response.status_code == 302 and response.headers["Location"] == f"{POST_LOGOUT}?state={state}"
    assert not _has_session(client, fc)


def test_an_expired_hint_signed_by_another_key_or_for_another_client_is_refused(app: Any, client: Any, clock: Any,
                                                                                 person: Any) -> None:
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    fc, hint = _franceconnect_login(app, client, person)
    claims = decode_id_token(app, hint)
    forged = jwt.encode({"alg": "RS256", "kid": "not-ours"}, claims, RSAKey.generate_key(2048))
    clock.advance(3600)
    other = make_rp(app, "web")
    for query in ({"id_token_hint": forged, "client_id": fc.client_id},
                  {"id_token_hint": hint, "client_id": other.client_id}):
        response = client.get("/logout", query_string={**query, "state": "x", "post_logout_redirect_uri": POST_LOGOUT},
                              headers={"Accept": "text/html"})
        assert response.status_code == 400 and "Location" not in response.headers
