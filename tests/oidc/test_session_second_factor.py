"""Single sign-on only gives web clients a session whose login had a second factor (security review
finding 2): a mobile (password only) or federation-without-code login must not open the web."""

from __future__ import annotations

from typing import Any

from tests.oidc.conftest import finish_login, flow, make_rp, query_of


def _interaction(app: Any, client: Any) -> Any:
    from idp.login.interaction import interactions

    with app.test_request_context():
        return interactions.get(client.get_cookie("idp_interaction").value)


def test_mobile_password_login_then_web_authorize_redirects_to_the_login_page_not_a_code(
        app: Any, client: Any, person: Any, web_rp: Any) -> None:
    mobile = make_rp(app, "mobile")
    client.get("/authorize", query_string=flow(mobile).params)
    assert "code" in query_of(finish_login(app, client, person, amr=("pwd",)))
    response = client.get("/authorize", query_string=flow(web_rp).params)
    assert response.status_code == 303 and response.headers["Location"].endswith("/connexion")
    assert _interaction(app, client).reasons == ["second_factor"]


def test_mobile_password_login_then_web_prompt_none_gives_login_required(app: Any, client: Any, person: Any,
                                                                         web_rp: Any) -> None:
    mobile = make_rp(app, "mobile")
    client.get("/authorize", query_string=flow(mobile).params)
    finish_login(app, client, person, amr=("pwd",))
    response = client.get("/authorize", query_string=flow(web_rp, prompt="none").params)
    assert query_of(response)["error"] == "login_required"


def test_federation_login_without_code_does_not_satisfy_a_federation_client_requiring_the_code(
        app: Any, client: Any, person: Any) -> None:
    lax = make_rp(app, "federation", require_email_code=False)
    strict = make_rp(app, "federation")
    client.get("/authorize", query_string=flow(lax).params)
    assert "code" in query_of(finish_login(app, client, person, amr=("pwd",)))
    response = client.get("/authorize", query_string=flow(strict).params)
    assert response.status_code == 303 and _interaction(app, client).reasons == ["second_factor"]
    assert client.get("/authorize", query_string=flow(lax).params).status_code == 302, "the lax client: SSO"


def test_web_login_with_the_code_gives_mobile_and_web_sso(app: Any, client: Any, person: Any, web_rp: Any) -> None:
    client.get("/authorize", query_string=flow(web_rp).params)
    finish_login(app, client, person, amr=("pwd", "mail"))
    assert "code" in query_of(client.get("/authorize", query_string=flow(web_rp).params))
    assert "code" in query_of(client.get("/authorize", query_string=flow(make_rp(app, "mobile")).params))


def test_login_finished_on_a_trusted_browser_gives_web_sso_without_the_code(app: Any, client: Any, person: Any,
                                                                           web_rp: Any) -> None:
    client.get("/authorize", query_string=flow(web_rp).params)
    finish_login(app, client, person, amr=("pwd",), trusted_browser=True)
    assert "code" in query_of(client.get("/authorize", query_string=flow(web_rp).params))


def test_biometric_login_counts_for_web_only_with_a_credential_activated_with_two_factors(app: Any) -> None:
    from idp.login import assurance
    from tests.conftest import proof_of

    with app.app_context():
        web = assurance.requirement(client_kind="web", client_requires_code=True, acr_values=None,
                                    claims_request={})
        assert assurance.second_factor_satisfied(web, proof_of(["pwd", "hwk", "user"], credential_factors=2))
        assert not assurance.second_factor_satisfied(web, proof_of(["pwd", "hwk", "user"], credential_factors=1))
        assert assurance.second_factor_satisfied(web, proof_of(["pwd", "mail"]))
        assert not assurance.second_factor_satisfied(web, proof_of(["hwk", "user"], trusted_browser=True))


def test_mobile_biometric_only_session_sends_a_web_authorize_to_the_login_page(
        app: Any, client: Any, person: Any, web_rp: Any) -> None:
    """On the app a platform credential replaces the password: web clients must still ask the password."""
    mobile = make_rp(app, "mobile")
    client.get("/authorize", query_string=flow(mobile).params)
    assert "code" in query_of(finish_login(app, client, person, amr=("hwk", "user"), trusted_browser=True))
    response = client.get("/authorize", query_string=flow(web_rp).params)
    assert response.status_code == 303 and response.headers["Location"].endswith("/connexion")
    assert _interaction(app, client).reasons == ["second_factor"]


def test_web_login_with_password_and_a_two_factor_credential_gives_web_sso(
        app: Any, client: Any, person: Any, web_rp: Any) -> None:
    client.get("/authorize", query_string=flow(web_rp).params)
    finish_login(app, client, person, amr=("pwd", "hwk", "user"), credential_factors=2)
    assert "code" in query_of(client.get("/authorize", query_string=flow(web_rp).params))


def test_trusted_browser_flag_without_the_password_gives_no_web_sso(app: Any, client: Any, person: Any,
                                                                    web_rp: Any) -> None:
    mobile = make_rp(app, "mobile")
    client.get("/authorize", query_string=flow(mobile).params)
    finish_login(app, client, person, amr=("hwk", "user"), trusted_browser=True)
    response = client.get("/authorize", query_string=flow(web_rp, prompt="none").params)
    assert query_of(response)["error"] == "login_required"
