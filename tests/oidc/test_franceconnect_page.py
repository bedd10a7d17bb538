"""The login page of a FranceConnect login follows FC's rules for an identity provider's page: it says
the login goes through FranceConnect, offers the way back to FranceConnect (access_denied with FC's state,
so FC shows its choice of providers again), help, account creation and forgotten password."""

from __future__ import annotations

from typing import Any

from tests.conftest import csrf_from
from tests.oidc.conftest import flow, make_rp, query_of


def _login_page(client: Any, rp: Any) -> tuple[Any, str]:
    """/authorize as the client sends it (FranceConnect: no PKCE), then the login page."""
    no_pkce = {"code_challenge": None, "code_challenge_method": None} if rp.kind == "federation" else {}
    f = flow(rp, prompt="login", acr_values="eidas1", **no_pkce)
    assert client.get("/authorize", query_string=f.params).status_code == 303
    return f, client.get("/connexion").get_data(as_text=True)


def test_a_franceconnect_login_page_shows_the_way_back_help_creation_and_forgotten_password(app: Any,
                                                                                            client: Any) -> None:
    fc = make_rp(app, profile="franceconnect")
    f, html = _login_page(client, fc)
    assert "via FranceConnect" in html and "Revenir à FranceConnect" in html
    for link in ("Mot de passe oublié ?", "Créer mon compte ameli", "Besoin d'aide pour vous connecter ?"):
        assert link in html
    back = client.post("/authorize/abandon", data={"csrf_token": csrf_from(html)})
    assert back.status_code == 302 and back.headers["Location"].startswith(f.params["redirect_uri"])
    answer = query_of(back)
    assert answer["error"] == "access_denied" and answer["state"] == f.params["state"]
    assert answer["iss"] == "http://localhost"
    assert client.post("/authorize/abandon", data={"csrf_token": csrf_from(html)}).status_code == 400, \
        "the abandoned login is over"


def test_the_way_back_needs_the_csrf_token_and_is_not_offered_to_other_clients(app: Any, client: Any) -> None:
    fc = make_rp(app, profile="franceconnect")
    _login_page(client, fc)
    forged = client.post("/authorize/abandon", data={})
    assert forged.status_code != 302 or "error=access_denied" not in forged.headers.get("Location", "")
    _f, web_page = _login_page(app.test_client(), make_rp(app, "web"))
    assert "FranceConnect" not in web_page and "Créer mon compte ameli" in web_page
