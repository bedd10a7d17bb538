"""The FranceConnect profile of ``--kind federation`` and the policy inputs given to the login."""

from __future__ import annotations

from typing import Any

import pytest

from tests.oidc.conftest import decode_id_token, finish_login, flow, make_rp, query_of


def _interaction(app: Any, client: Any) -> Any:
    from idp.login.interaction import interactions

    with app.test_request_context():
        return interactions.get(client.get_cookie("idp_interaction").value)


@pytest.mark.parametrize(("kind", "setting", "expected"), [
    ("web", {}, True), ("mobile", {}, False), ("federation", {}, True),
    ("federation", {"require_email_code": False}, False),
])
def test_interaction_carries_the_request_and_the_step_up_setting(app: Any, client: Any, kind: str,
                                                                 setting: dict[str, Any], expected: bool) -> None:
    rp = make_rp(app, kind, **setting)
    f = flow(rp, login_hint="marie", acr_values="eidas1")
    assert client.get("/authorize", query_string=f.params).status_code == 303
    interaction = _interaction(app, client)
    assert interaction.client_kind == kind and interaction.reasons == ["login_required"]
    assert interaction.requirement.second_factor is expected
    assert interaction.request["login_hint"] == "marie" and interaction.request["nonce"] == f.params["nonce"]


@pytest.mark.parametrize("app_config", [{"acr_email_code": "eidas2"}])
def test_federation_requesting_eidas2_requires_the_code_even_when_the_client_does_not(app: Any, client: Any) -> None:
    rp = make_rp(app, "federation", require_email_code=False)
    client.get("/authorize", query_string=flow(rp, acr_values="eidas2").params)
    requirement = _interaction(app, client).requirement
    assert requirement.second_factor is True and requirement.acr == "eidas2" and requirement.binding


def test_federation_asking_an_unreachable_acr_gets_unmet_requirements_at_once(app: Any, client: Any) -> None:
    """Default mapping: nothing here reaches eidas2, so no login is started for nothing."""
    rp = make_rp(app, "federation")
    f = flow(rp, acr_values="eidas2")
    answer = query_of(client.get("/authorize", query_string=f.params))
    assert answer["error"] == "unmet_authentication_requirements" and answer["iss"] == "http://localhost"
    assert answer["state"] == f.params["state"] and client.get_cookie("idp_interaction") is None


@pytest.mark.parametrize("app_config", [{"acr_email_code": "eidas2"}])
def test_federation_never_gets_a_lower_acr_than_requested(app: Any, client: Any, person: Any) -> None:
    rp = make_rp(app, "federation")
    f = flow(rp, acr_values="eidas2")
    client.get("/authorize", query_string=f.params)
    answer = query_of(finish_login(app, client, person, amr=("pwd",)))
    assert answer["error"] == "unmet_authentication_requirements" and answer["iss"] == "http://localhost"
    assert answer["state"] == f.params["state"]


@pytest.mark.parametrize("app_config", [{"acr_email_code": "eidas2"}])
def test_federation_gets_the_acr_it_asked_for_or_higher(app: Any, client: Any, person: Any) -> None:
    rp = make_rp(app, "federation")
    f = flow(rp, acr_values="eidas1", prompt="login")
    client.get("/authorize", query_string=f.params)
    code = query_of(finish_login(app, client, person, amr=("pwd", "mail")))["code"]
    response = client.post("/token", data={"grant_type": "authorization_code", "code": code,
                                           "redirect_uri": f.params["redirect_uri"], "code_verifier": f.verifier,
                                           "client_id": rp.client_id, "client_secret": rp.secret})
    tokens = response.json
    assert decode_id_token(app, tokens["id_token"])["acr"] == "eidas2"
    assert tokens["expires_in"] == 60 and "refresh_token" not in tokens


@pytest.mark.parametrize("app_config", [{"acr_email_code": "eidas2"}])
def test_session_with_a_lower_acr_than_requested_starts_a_new_login(app: Any, client: Any, person: Any,
                                                                   web_rp: Any) -> None:
    client.get("/authorize", query_string=flow(web_rp).params)
    finish_login(app, client, person, amr=("pwd",))
    response = client.get("/authorize", query_string=flow(web_rp, acr_values="eidas2").params)
    assert response.status_code == 303
    assert "acr_values" in _interaction(app, client).reasons


def test_federation_code_lives_30_seconds(app: Any, client: Any, clock: Any, person: Any) -> None:
    rp = make_rp(app, "federation")
    f = flow(rp)
    client.get("/authorize", query_string=f.params)
    code = query_of(finish_login(app, client, person))["code"]
    clock.advance(31)
    late = client.post("/token", data={"grant_type": "authorization_code", "code": code,
                                       "redirect_uri": f.params["redirect_uri"], "code_verifier": f.verifier,
                                       "client_id": rp.client_id, "client_secret": rp.secret})
    assert late.json["error"] == "invalid_grant"


def test_resume_without_a_finished_login_is_refused(app: Any, client: Any, web_rp: Any) -> None:
    lost = client.get("/authorize/resume", headers={"Accept": "text/html"})
    assert lost.status_code == 400 and "Votre session a expiré" in lost.get_data(as_text=True)
    client.get("/authorize", query_string=flow(web_rp).params)
    unfinished = client.get("/authorize/resume")
    assert unfinished.status_code == 303 and unfinished.headers["Location"].endswith("/connexion")


def test_resume_is_single_use_and_opens_a_new_session(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    client.set_cookie("idp_session", "fixed-by-an-attacker", domain="localhost")
    client.get("/authorize", query_string=flow(web_rp).params)
    cookie = client.get_cookie("idp_interaction").value
    assert finish_login(app, client, person).status_code == 302
    assert client.get_cookie("idp_session").value != "fixed-by-an-attacker"
    client.set_cookie("idp_interaction", cookie, domain="localhost")
    assert client.get("/authorize/resume").status_code == 400


def test_demo_step_registers_the_demo_rp(app: Any, client: Any) -> None:
    from idp.demo import DEMO_STEPS
    from idp.oidc.clients import get_client

    step = dict(DEMO_STEPS)["oidc-demo-rp"]
    step(app)
    step(app)  # idempotent
    with app.app_context():
        assert get_client("demo-rp") is not None
    assert "Se connecter avec ameli" in client.get("/demo/").get_data(as_text=True)
    start = client.get("/demo/connexion")
    assert start.status_code == 303 and "/authorize?" in start.headers["Location"]
    assert client.get(start.headers["Location"].replace("http://localhost", "")).status_code == 303
