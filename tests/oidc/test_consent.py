"""prompt=consent (OIDC Core §3.1.2.1, §3.1.2.4): the consent page, "Autoriser" and "Refuser"."""

from __future__ import annotations

from typing import Any

from tests.conftest import csrf_from, proof_of
from tests.oidc.conftest import REDIRECT, Person, decode_id_token, flow, login, query_of, redeem


def authenticate(app: Any, client: Any, person: Person) -> Any:
    """The login pages' authentication steps, done programmatically (password and security code) but
    not finished: the policy decides what comes next. Returns the answer to GET /connexion."""
    from idp.login.interaction import interactions

    cookie = client.get_cookie("idp_interaction")
    assert cookie is not None, "no login interaction was started"
    with app.test_request_context():
        interaction = interactions.get(cookie.value)
        assert interaction is not None
        interaction.account_id, interaction.proof = person.account_id, proof_of(["pwd", "mail"])
        interactions.save(interaction)
    return client.get("/connexion")


def consent_page(client: Any, response: Any) -> str:
    """Follow the redirect to the consent page and return its HTML."""
    assert response.status_code == 303 and response.headers["Location"].endswith("/connexion/autorisation")
    page = client.get("/connexion/autorisation")
    assert page.status_code == 200
    return page.get_data(as_text=True)


def choose(client: Any, html: str, choice: str) -> Any:
    """Press "Autoriser" (allow) or "Refuser" (deny): the RP is answered at once (a 303 to its callback)."""
    posted = client.post("/connexion/autorisation", data={"csrf_token": csrf_from(html), "choice": choice})
    assert posted.status_code == 303
    assert posted.headers["Location"].startswith(REDIRECT), posted.headers["Location"]
    return posted


def test_prompt_consent_after_a_fresh_login_shows_the_page_and_allow_gives_a_code(
        app: Any, client: Any, person: Any, web_rp: Any) -> None:
    f = flow(web_rp, prompt="consent", scope="openid profile email birth")
    assert client.get("/authorize", query_string=f.params).status_code == 303
    html = consent_page(client, authenticate(app, client, person))
    assert "RP web" in html
    for item in ("Votre identité", "Votre adresse e-mail", "Votre date et votre lieu de naissance"):
        assert item in html
    assert "identité pivot" not in html  # not requested
    assert "Autoriser" in html and "Refuser" in html
    done = choose(client, html, "allow")
    assert done.status_code == 303 and done.headers["Location"].startswith(REDIRECT)
    answer = query_of(done)
    assert answer["state"] == f.params["state"] and answer["iss"] == "http://localhost"
    tokens = redeem(client, web_rp, answer["code"], f)
    assert tokens.status_code == 200, tokens.json
    assert decode_id_token(app, tokens.json["id_token"])["amr"] == ["pwd", "mail", "mfa"]


def test_refuse_gives_access_denied_with_state_and_iss_and_ends_the_interaction(
        app: Any, client: Any, person: Any, web_rp: Any) -> None:
    f = flow(web_rp, prompt="consent")
    client.get("/authorize", query_string=f.params)
    html = consent_page(client, authenticate(app, client, person))
    refused = choose(client, html, "deny")
    assert refused.status_code == 303 and refused.headers["Location"].startswith(REDIRECT)
    answer = query_of(refused)
    assert answer["error"] == "access_denied"
    assert answer["state"] == f.params["state"] and answer["iss"] == "http://localhost"
    assert client.get_cookie("idp_interaction") is None
    assert client.get_cookie("idp_session") is None, "no session opened"
    assert client.get("/connexion/autorisation").status_code == 400, "the interaction is over"


def test_prompt_consent_with_a_session_asks_no_password_and_keeps_the_authentication(
        app: Any, client: Any, clock: Any, person: Any, web_rp: Any) -> None:
    f1 = flow(web_rp)
    first = decode_id_token(app, redeem(client, web_rp, login(app, client, person, f1)["code"], f1).json["id_token"])
    session_before = client.get_cookie("idp_session").value
    clock.advance(120)
    f2 = flow(web_rp, prompt="consent", scope="openid identite_pivot")
    started = client.get("/authorize", query_string=f2.params)
    assert started.status_code == 303, "consent is needed even with a session"
    html = consent_page(client, client.get("/connexion"))
    assert 'name="password"' not in html
    assert "Votre identité pivot" in html and "Votre adresse e-mail" not in html
    done = choose(client, html, "allow")
    assert done.status_code == 303, done.data
    answer = query_of(done)
    assert answer["state"] == f2.params["state"]
    second = decode_id_token(app, redeem(client, web_rp, answer["code"], f2).json["id_token"])
    assert second["auth_time"] == first["auth_time"]
    assert second["amr"] == first["amr"] and second["acr"] == first["acr"] and second["sid"] == first["sid"]
    assert client.get_cookie("idp_session").value == session_before


def test_refuse_within_a_session_keeps_the_session(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    login(app, client, person, flow(web_rp))
    f = flow(web_rp, prompt="consent")
    client.get("/authorize", query_string=f.params)
    refused = choose(client, consent_page(client, client.get("/connexion")), "deny")
    assert query_of(refused)["error"] == "access_denied"
    again = client.get("/authorize", query_string=flow(web_rp, prompt="none").params)
    assert again.status_code == 302 and "code" in query_of(again)


def test_without_prompt_consent_there_is_no_consent_page(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    f = flow(web_rp)
    client.get("/authorize", query_string=f.params)
    finished = authenticate(app, client, person)
    assert finished.status_code == 303 and finished.headers["Location"].startswith(REDIRECT)
    assert "code" in query_of(finished)  # no consent page: the last step answered the RP
    with_session = client.get("/authorize", query_string=flow(web_rp).params)
    assert with_session.status_code == 302 and "code" in query_of(with_session)


def test_prompt_none_with_consent_is_invalid_request(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    f = flow(web_rp, prompt="none consent")
    assert query_of(client.get("/authorize", query_string=f.params))["error"] == "invalid_request"
    login(app, client, person, flow(web_rp))
    answer = query_of(client.get("/authorize", query_string=f.params))
    assert answer["error"] == "invalid_request" and answer["state"] == f.params["state"]
