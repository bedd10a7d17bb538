"""``idp advisors disable|enable --email E`` replayed over HTTP: a leaving or compromised advisor's open console
sessions stop working at once (their Redis records are gone), their password, key and half-finished sign-ins are
refused, ``list`` shows the state, everything is audited; ``enable`` lets them back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.accounts.conftest import by_name, demo_records
from tests.advisors.conftest import ADVISOR_PASSWORD, create_link, enrol, json_post, page_csrf, search, sign_in
from tests.advisors.test_console import events, text
from tests.conftest import csrf_from

MARIE = by_name(demo_records(), "DUPONT")


@pytest.fixture
def idp(app: Any, monkeypatch: Any) -> Any:
    """Run ``idp ...`` (click's CliRunner) against this test's application (its database and Redis)."""
    from click.testing import CliRunner

    import idp.cli
    from idp.cli import main

    monkeypatch.setattr(idp.cli, "make_app", lambda: app)

    def run(*args: str) -> Any:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return run


def cookie(client: Any) -> str:
    return client.get_cookie("idp_advisor").value


def live(app: Any, session_id: str) -> bool:
    from idp.advisors import sessions

    with app.app_context():
        return sessions.get(session_id) is not None


def test_disable_ends_every_session_at_once_and_refuses_every_sign_in(registry: Any, advisor: Any, idp: Any) -> None:
    client, staff = advisor
    second = registry.test_client()  # the same advisor on another workstation (or a stolen cookie)
    assert sign_in(second, staff).status_code == 200
    halfway = registry.test_client()  # a sign-in in flight: password given, key not yet
    token = csrf_from(halfway.get("/conseiller/connexion").data)
    assert halfway.post("/conseiller/connexion", data={"csrf_token": token, "email": staff.email,
                                                       "password": ADVISOR_PASSWORD}).status_code == 303
    halfway_csrf = page_csrf(halfway, "/conseiller/connexion/cle")
    ids = [cookie(client), cookie(second), cookie(halfway)]
    assert search(client, MARIE["nir"]).status_code == 303

    result = idp("advisors", "disable", "--email", staff.email.upper(), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["disabled"] is True and data["sessions_ended"] == 3 and data["email"] == staff.email

    assert not any(live(registry, session_id) for session_id in ids)  # gone from Redis, not only refused
    for stolen in (client, second):
        answer = stolen.get("/conseiller/")
        assert answer.status_code == 303 and answer.location.endswith("/conseiller/connexion")
    assert json_post(halfway, "/conseiller/connexion/cle/options", csrf=halfway_csrf).status_code == 401
    fresh = registry.test_client()
    token = csrf_from(fresh.get("/conseiller/connexion").data)
    refused = fresh.post("/conseiller/connexion", data={"csrf_token": token, "email": staff.email,
                                                        "password": ADVISOR_PASSWORD})
    assert refused.status_code == 200 and "Les informations saisies sont erronées" in text(refused)
    assert fresh.get_cookie("idp_advisor") is None  # no session at all: the key step is never reached
    (disabled,) = events(registry, "advisor.disabled")
    assert disabled.data == {"advisor": staff.advisor_id, "actor": "operator"}
    assert events(registry, "advisor.sessions_ended")[0].data["count"] == 3


def test_the_key_ceremony_itself_refuses_a_disabled_advisor(registry: Any, advisor: Any, idp: Any) -> None:
    """Defence in depth: the domain refuses, whatever a view forgets to check."""
    from idp.advisors import service

    _client, staff = advisor
    assert idp("advisors", "disable", "--email", staff.email).exit_code == 0
    with registry.app_context():
        found = service.find_by_email(staff.email)
        assert found is not None
        with pytest.raises(service.KeyRefused):
            service.start_key_sign_in(found, "any-session")
        with pytest.raises(service.KeyRefused):
            service.finish_key_sign_in(found, "any-session", {})


def test_list_shows_the_state_and_enable_lets_the_advisor_back(registry: Any, advisor: Any, idp: Any) -> None:
    client, staff = advisor
    assert "DISABLED" not in idp("advisors", "list").output
    assert idp("advisors", "disable", "--email", staff.email).exit_code == 0
    listed = {row["email"]: row for row in json.loads(idp("advisors", "list", "--json").output)}
    assert listed[staff.email]["disabled"] is True and listed[staff.email]["disabled_at"]
    assert f"{staff.email}  advisor  enrolled=True  DISABLED" in idp("advisors", "list").output

    enabled = idp("advisors", "enable", "--email", staff.email, "--json")
    assert enabled.exit_code == 0 and json.loads(enabled.output)["disabled"] is False
    assert sign_in(client, staff).status_code == 200
    assert client.get("/conseiller/").status_code == 200
    assert [e.data["actor"] for e in events(registry, "advisor.enabled")] == ["operator"]


def test_an_unknown_email_is_an_error(registry: Any, idp: Any) -> None:
    result = idp("advisors", "disable", "--email", "personne@assurance-maladie.fr", "--json")
    assert result.exit_code == 1 and json.loads(result.output)["error"] == "advisor_unknown"


def test_a_disabled_advisor_gets_no_new_enrolment_link(registry: Any, idp: Any) -> None:
    """Disabling before enrolment kills the link, and ``create`` does not hand out another one."""
    link = create_link(registry, "nouveau@assurance-maladie.fr")
    assert idp("advisors", "disable", "--email", "nouveau@assurance-maladie.fr").exit_code == 0
    assert registry.test_client().get(link).status_code == 400
    again = idp("advisors", "create", "--email", "nouveau@assurance-maladie.fr", "--json")
    assert again.exit_code == 1 and "disabled" in json.loads(again.output)["message"]


def test_disabling_one_advisor_leaves_the_others_signed_in(registry: Any, advisor: Any, idp: Any) -> None:
    client, staff = advisor
    colleague = registry.test_client()
    enrol(registry, colleague, "paul.conseil@assurance-maladie.fr")
    result = json.loads(idp("advisors", "disable", "--email", staff.email, "--json").output)
    assert result["sessions_ended"] == 1
    assert colleague.get("/conseiller/").status_code == 200
    assert client.get("/conseiller/").status_code == 303
