"""The advisors' console over HTTP: staff sign-in, session separation, search, actions, CSRF, roles."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from sqlalchemy import select

from idp.audit import AuditEvent
from idp.extensions import db
from tests.accounts.conftest import PASSWORD, RecordingSms, by_name, demo_records, make_account, submit
from tests.advisors.conftest import ADVISOR_PASSWORD, act, create_link, enrol, json_post, page_csrf, search, sign_in
from tests.conftest import csrf_from, proof_of
from tests.webauthn.authenticator import from_b64url

RECORDS = demo_records()
MARIE = by_name(RECORDS, "DUPONT")  # has a mobile number in the registry
SAMIR = by_name(RECORDS, "BENALI")  # has none


@pytest.fixture
def app_config(sms: RecordingSms) -> dict[str, Any]:
    return {"sms": sms}


def text(response: Any) -> str:
    """The page as a person reads it (HTML entities decoded)."""
    return html.unescape(response.get_data(as_text=True))


def events(app: Any, name: str) -> list[AuditEvent]:
    with app.app_context():
        rows = list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.id)))
        db.session.expunge_all()
        return rows


def dossier_of(client: Any, nir: str) -> str:
    found = search(client, nir)
    assert found.status_code == 303 and "/conseiller/dossier/" in found.location
    return found.location.replace("http://localhost", "")


# --- staff accounts and sign-in ---------------------------------------------------------------
def test_cli_creates_an_advisor_and_prints_a_one_time_enrolment_link(app: Any, monkeypatch: Any, tmp_path: Any) -> None:
    from click.testing import CliRunner

    from idp.cli import main
    from tests.conftest import TEST_SECRET

    monkeypatch.setenv("IDP_DATABASE_URL", f"sqlite:///{tmp_path}/cli.sqlite3")
    monkeypatch.setenv("IDP_SECRET_KEY", TEST_SECRET)
    from idp import create_app

    with create_app().app_context():
        db.create_all()
        db.engine.dispose()
    result = CliRunner().invoke(main, ["advisors", "create", "--email", "Paul@AM.fr", "--role", "supervisor", "--json"])
    assert result.exit_code == 0, result.output
    import json

    data = json.loads(result.output)
    assert data["email"] == "paul@am.fr" and data["role"] == "supervisor"
    assert re.fullmatch(r"http://127\.0\.0\.1:5000/conseiller/inscription/[A-Za-z0-9_-]{40,}", data["enrolment_link"])
    bad = CliRunner().invoke(main, ["advisors", "create", "--email", "x@am.fr", "--role", "admin"])
    assert bad.exit_code != 0


def test_enrolment_link_works_once_and_sign_in_needs_password_and_key(app: Any) -> None:
    client = app.test_client()
    link = create_link(app, "claire@am.fr")
    token = csrf_from(client.get(link).data)
    short = client.post(link, data={"csrf_token": token, "password": "court", "confirm": "court"})
    assert "au moins 12 caractères" in text(short)  # a refused password keeps the link
    staff_client = app.test_client()
    from tests.advisors.conftest import enrol as enrol_with

    # The link of an advisor re-issued by the operator replaces the first one.
    staff = enrol_with(app, staff_client, "claire@am.fr")
    assert client.get(link).status_code == 400  # old link
    assert staff_client.get("/conseiller/").status_code == 200  # enrolled and signed in

    # A new browser: the password alone does not open the console.
    other = app.test_client()
    token = csrf_from(other.get("/conseiller/connexion").data)
    step = other.post("/conseiller/connexion", data={"csrf_token": token, "email": staff.email,
                                                     "password": ADVISOR_PASSWORD})
    assert step.location.endswith("/conseiller/connexion/cle")
    assert other.get("/conseiller/").location.endswith("/conseiller/connexion")
    assert sign_in(other, staff).status_code == 200
    assert other.get("/conseiller/").status_code == 200
    (signed,) = [e for e in events(app, "advisor.signed_in") if e.data["advisor"] == staff.advisor_id][-1:]
    assert signed.data["method"] == "pwd+hwk"


def test_used_or_expired_enrolment_link_is_refused(app: Any, clock: Any) -> None:
    client = app.test_client()
    staff = enrol(app, client, "used@am.fr")
    assert staff.advisor_id
    link = create_link(app, "late@am.fr")
    clock.advance(hours=73)
    page = client.get(link)
    assert page.status_code == 400 and "inscription invalide" in text(page)


def test_wrong_passwords_lock_the_advisor_and_unknown_email_gets_the_same_answer(app: Any) -> None:
    client = app.test_client()
    staff = enrol(app, client, "lock@am.fr")
    fresh = app.test_client()
    answers = []
    for email in ("nobody@am.fr", staff.email, staff.email, staff.email, staff.email):
        token = csrf_from(fresh.get("/conseiller/connexion").data)
        answers.append(fresh.post("/conseiller/connexion", data={"csrf_token": token, "email": email,
                                                                 "password": "pas le bon mot de passe"}))
    assert "erronées" in text(answers[0]) and "erronées" in text(answers[1])
    assert "bloqué jusqu'au 05/01/2026 - 14h45 (heure de Paris)" in text(answers[3])
    token = csrf_from(fresh.get("/conseiller/connexion").data)
    locked = fresh.post("/conseiller/connexion", data={"csrf_token": token, "email": staff.email,
                                                       "password": ADVISOR_PASSWORD})
    assert locked.status_code == 200 and "bloqué" in text(locked)


def test_a_key_of_another_advisor_or_a_replayed_challenge_is_refused(app: Any) -> None:
    first = enrol(app, app.test_client(), "a@am.fr")
    second = enrol(app, app.test_client(), "b@am.fr")
    client = app.test_client()
    token = csrf_from(client.get("/conseiller/connexion").data)
    client.post("/conseiller/connexion", data={"csrf_token": token, "email": first.email, "password": ADVISOR_PASSWORD})
    csrf = page_csrf(client, "/conseiller/connexion/cle")
    options = json_post(client, "/conseiller/connexion/cle/options", csrf=csrf).get_json()["publicKey"]
    challenge = from_b64url(options["challenge"])
    wrong_key = json_post(client, "/conseiller/connexion/cle/verifier", second.key.authenticate(challenge), csrf=csrf)
    assert wrong_key.status_code == 400 and wrong_key.get_json()["error"] == "advisor_key_refused"
    replay = json_post(client, "/conseiller/connexion/cle/verifier", first.key.authenticate(challenge), csrf=csrf)
    assert replay.status_code == 400  # the challenge was consumed by the refused attempt
    assert client.get("/conseiller/").status_code == 303


def test_the_key_must_prove_user_verification_and_this_origin(app: Any) -> None:
    staff = enrol(app, app.test_client(), "uv@am.fr")
    for tamper in ({"uv": False}, {"origin": "http://phishing.example"}):
        client = app.test_client()
        token = csrf_from(client.get("/conseiller/connexion").data)
        client.post("/conseiller/connexion", data={"csrf_token": token, "email": staff.email,
                                                   "password": ADVISOR_PASSWORD})
        csrf = page_csrf(client, "/conseiller/connexion/cle")
        options = json_post(client, "/conseiller/connexion/cle/options", csrf=csrf).get_json()["publicKey"]
        answer = json_post(client, "/conseiller/connexion/cle/verifier",
                           staff.key.authenticate(from_b64url(options["challenge"]), **tamper), csrf=csrf)
        assert answer.status_code == 400, tamper
        assert client.get("/conseiller/").status_code == 303


def test_idle_and_absolute_timeouts_end_the_advisor_session(app: Any, clock: Any) -> None:
    client = app.test_client()
    enrol(app, client, "idle@am.fr")
    clock.advance(minutes=14)
    assert client.get("/conseiller/").status_code == 200
    clock.advance(minutes=15)
    assert client.get("/conseiller/").status_code == 303


# --- separation from people's sessions --------------------------------------------------------
def test_sessions_are_never_mixed_between_people_and_advisors(app: Any, advisor: Any) -> None:
    from idp.login.sessions import sessions

    client, _staff = advisor
    advisor_cookie = client.get_cookie("idp_advisor").value
    with app.app_context():
        person = sessions.create(account_id="00000000-0000-0000-0000-000000000001",
                                 proof=proof_of(["pwd", "mail"], at=0))
    # A person's session (cookie under its own name or under the advisor's) cannot reach the console.
    people = app.test_client()
    people.set_cookie("idp_session", person.id, domain="localhost")
    assert people.get("/conseiller/").location.endswith("/conseiller/connexion")
    people.set_cookie("idp_advisor", person.id, domain="localhost")
    assert people.get("/conseiller/").location.endswith("/conseiller/connexion")
    # An advisor's session cannot reach a person's pages.
    staff_only = app.test_client()
    staff_only.set_cookie("idp_advisor", advisor_cookie, domain="localhost")
    assert staff_only.get("/compte/biometrie").status_code == 401
    staff_only.set_cookie("idp_session", advisor_cookie, domain="localhost")
    assert staff_only.get("/compte/biometrie").status_code == 401


# --- search and state -------------------------------------------------------------------------
def test_search_shows_the_state_masked_and_is_audited_without_the_nir(registry: Any, advisor: Any) -> None:
    from idp.mfa import limits

    client, staff = advisor
    account_id = make_account(registry, MARIE["nir"])
    with registry.app_context():
        for _ in range(3):
            limits.register_failure("pwd", account_id)
        for _ in range(2):
            assert limits.take_quota("code", account_id, quota=5, window=3600, block=3600).allowed
    page = text(client.get(dossier_of(client, MARIE["nir"])))
    assert re.search(r"Codes de sécurité demandés \(dernière heure\)</dt>\s*<dd>2\b", page)
    assert MARIE["nir"] not in page and MARIE["nir"][:13] not in page
    from idp.nir import Nir

    assert Nir.parse(MARIE["nir"]).masked() in page
    assert "marie.dupont@example.fr" in page and "(validée)" in page
    assert "bloqué jusqu'au 05/01/2026 - 14h45 (heure de Paris)" in page
    (event,) = events(registry, "advisor.search")
    assert event.account_id == account_id and event.data == {"advisor": staff.advisor_id, "outcome": "found"}
    assert MARIE["nir"] not in str(event.data)


def test_searches_are_rate_limited_per_advisor(registry: Any, advisor: Any, app_config: Any) -> None:
    client, _staff = advisor
    with registry.app_context():
        limit = registry.extensions["idp.settings"].advisor_search_limit
    for _ in range(limit):
        assert search(client, MARIE["nir"]).status_code == 303
    refused = search(client, MARIE["nir"])
    assert refused.status_code == 429 and "nombre maximum de recherches" in text(refused)
    assert events(registry, "advisor.search")[-1].data["outcome"] == "limit"


def test_a_dossier_handle_is_worthless_in_another_advisor_session(registry: Any, advisor: Any) -> None:
    client, _staff = advisor
    make_account(registry, MARIE["nir"])
    dossier = dossier_of(client, MARIE["nir"])
    other = app_client = registry.test_client()
    enrol(registry, app_client, "other@am.fr")
    assert other.get(dossier).status_code == 400


# --- actions ------------------------------------------------------------------------------------
def test_unlock_needs_a_reason_and_lets_the_person_sign_in_at_once(registry: Any, advisor: Any) -> None:
    from idp.accounts import service
    from idp.mfa import limits

    client, staff = advisor
    account_id = make_account(registry, MARIE["nir"])
    with registry.app_context():
        for _ in range(3):
            limits.register_failure("pwd", account_id)
    dossier = dossier_of(client, MARIE["nir"])
    empty = act(client, dossier, "unlock", reason="  ")
    assert "Indiquez le motif" in text(empty) and 'aria-invalid="true"' in text(empty)
    with registry.app_context():
        assert limits.account_lock(account_id).locked
    done = act(client, dossier, "unlock", reason="Assurée au 3646, NIR 2 85 05 78 006 048 bloquée")
    assert done.status_code == 303 and "fait=unlock" in done.location
    with registry.app_context():
        assert not limits.account_lock(account_id).locked
        assert service.authenticate(MARIE["nir"], PASSWORD) is not None
    (event,) = events(registry, "advisor.unlock")
    assert event.account_id == account_id and event.data["advisor"] == staff.advisor_id
    assert event.data["reason"] == "Assurée au 3646, NIR [numéro masqué] bloquée"


def test_end_sessions_and_revoke_browsers_and_biometrics(registry: Any, advisor: Any) -> None:
    from idp.login.sessions import sessions
    from idp.mfa import trusted_browser

    client, _staff = advisor
    account_id = make_account(registry, MARIE["nir"])
    with registry.app_context():
        session = sessions.create(account_id=account_id, proof=proof_of(["pwd"], at=0))
        browser = trusted_browser.trust(account_id)
    dossier = dossier_of(client, MARIE["nir"])
    page = text(client.get(dossier))
    assert "Sessions ouvertes</dt><dd>1" in page
    for action in ("end_sessions", "revoke_browsers", "revoke_biometrics"):
        assert act(client, dossier, action).status_code == 303
    with registry.app_context():
        assert sessions.get(session.id) is None
        assert not trusted_browser.is_trusted(browser, account_id)
    assert events(registry, "advisor.end_sessions")[0].data["count"] == 1
    assert events(registry, "advisor.revoke_browsers")[0].data["count"] == 1


def test_disable_ends_the_sessions_and_refuses_the_password_until_a_supervisor_enables_it(
        registry: Any, advisor: Any, supervisor: Any) -> None:
    """Any advisor disables; only a supervisor enables again (the advisor's page points to one, and the
    advisor's POST is refused and audited)."""
    from idp.accounts import service
    from idp.login.sessions import sessions

    client, staff = advisor
    account_id = make_account(registry, MARIE["nir"])
    with registry.app_context():
        session = sessions.create(account_id=account_id, proof=proof_of(["pwd"], at=0))
    dossier = dossier_of(client, MARIE["nir"])
    assert "Désactiver le compte" in text(client.get(dossier)) and "Réactiver le compte" not in text(client.get(dossier))
    assert act(client, dossier, "disable", reason="usurpation signalée au 3646").status_code == 303
    page = text(client.get(dossier))
    assert "Statut</dt><dd>désactivé" in page and "Désactiver le compte" not in page
    assert "Réactiver le compte" not in page and "Seul un superviseur peut réactiver" in page
    with registry.app_context():
        assert sessions.get(session.id) is None
        assert service.authenticate(MARIE["nir"], PASSWORD) is None
    (disabled,) = events(registry, "account.disabled")
    assert disabled.account_id == account_id and disabled.data["actor"] == f"advisor:{staff.advisor_id}"
    assert events(registry, "advisor.disable")[0].data["reason"] == "usurpation signalée au 3646"
    refused = act(client, dossier, "enable", reason="l'assuré insiste au téléphone")
    assert refused.status_code == 403 and "Seul un superviseur peut réactiver" in text(refused)
    with registry.app_context():
        assert service.authenticate(MARIE["nir"], PASSWORD) is None
    assert events(registry, "account.enabled") == [] and events(registry, "advisor.enable") == []
    (attempt,) = events(registry, "advisor.refused")
    assert attempt.account_id == account_id and attempt.data == {"advisor": staff.advisor_id, "action": "enable"}
    boss, _boss_staff = supervisor
    supervised = dossier_of(boss, MARIE["nir"])
    assert "Réactiver le compte" in text(boss.get(supervised))
    journal = text(boss.get("/conseiller/journal"))
    assert "Refusé (réservé aux superviseurs) : Réactiver le compte" in journal and staff.email in journal
    assert act(boss, supervised, "enable", reason="identité vérifiée en agence").status_code == 303
    with registry.app_context():
        assert service.authenticate(MARIE["nir"], PASSWORD) is not None
    assert len(events(registry, "account.enabled")) == 1


def test_reset_then_provisional_sms_code_recreates_the_account(registry: Any, advisor: Any, sms: RecordingSms,
                                                               mailbox: Any) -> None:
    from idp.accounts import service

    client, staff = advisor
    account_id = make_account(registry, MARIE["nir"])
    dossier = dossier_of(client, MARIE["nir"])
    assert act(client, dossier, "reset", reason="plus accès à sa messagerie").status_code == 303
    with registry.app_context():
        assert service.find_account(MARIE["nir"]) is None
    page = text(client.get(dossier))
    assert "Aucun compte" in page and "+33 6 ** ** ** 01" in page
    sent = act(client, dossier, "send_sms", reason="recréation du compte")
    assert sent.status_code == 303
    assert "Code provisoire envoyé par SMS au +33 6 ** ** ** 01" in text(client.get(sent.location))
    assert sms.sent[-1][0] == MARIE["phone"]
    person = registry.test_client()
    assert submit(person, "/compte/recreation", {"nir": MARIE["nir"], "code": sms.code()}).status_code == 303
    submit(person, "/compte/creation/email", {"email": "marie.nouvelle@example.fr"})
    submit(person, "/compte/creation/code", {"code": mailbox.code()})
    assert submit(person, "/compte/creation/mot-de-passe", {"password": ADVISOR_PASSWORD}).status_code == 303
    with registry.app_context():
        assert service.authenticate(MARIE["nir"], ADVISOR_PASSWORD) is not None
    (reset,) = events(registry, "account.reset")
    assert reset.account_id == account_id and reset.data["actor"] == f"advisor:{staff.advisor_id}"
    assert [e.data["advisor"] for e in events(registry, "advisor.send_sms")] == [staff.advisor_id]


def test_without_a_mobile_number_the_console_points_to_carte_vitale_and_iban(registry: Any, advisor: Any) -> None:
    client, _staff = advisor
    page = text(client.get(dossier_of(client, SAMIR["nir"])))
    assert "carte Vitale et son IBAN" in page and "Envoyer un code provisoire" not in page


ACTION_POSTS = ["unlock", "end_sessions", "revoke_browsers", "revoke_biometrics", "disable", "enable", "reset", "send_sms"]


@pytest.mark.parametrize("action", ACTION_POSTS)
def test_every_action_without_its_csrf_token_is_refused_and_changes_nothing(registry: Any, advisor: Any,
                                                                            action: str) -> None:
    from idp.accounts import service

    client, _staff = advisor
    make_account(registry, MARIE["nir"])
    dossier = dossier_of(client, MARIE["nir"])
    for data in ({"reason": "sans jeton"}, {"reason": "jeton faux", "csrf_token": "forged"}):
        refused = client.post(f"{dossier}/{action}", data=data)
        assert refused.status_code == 400
    with registry.app_context():
        assert service.find_account(MARIE["nir"]) is not None
    assert events(registry, f"advisor.{action}") == [] and events(registry, "account.disabled") == []


def test_sign_in_search_and_sign_out_posts_need_the_csrf_token(registry: Any, advisor: Any) -> None:
    client, staff = advisor
    for url, data in (("/conseiller/recherche", {"nir": MARIE["nir"]}),
                      ("/conseiller/deconnexion", {}),
                      ("/conseiller/connexion", {"email": staff.email, "password": ADVISOR_PASSWORD})):
        assert client.post(url, data=data).status_code == 400, url
    assert client.post("/conseiller/connexion/cle/options", json={}).status_code == 400  # no X-CSRFToken
    assert events(registry, "advisor.search") == []


# --- roles --------------------------------------------------------------------------------------
def test_only_a_supervisor_lists_the_advisors_actions(registry: Any, advisor: Any, supervisor: Any) -> None:
    client, staff = advisor
    make_account(registry, MARIE["nir"])
    act(client, dossier_of(client, MARIE["nir"]), "unlock", reason="motif de test")
    refused = client.get("/conseiller/journal")
    assert refused.status_code == 403 and "superviseurs" in text(refused)
    assert "Journal des actions" not in text(client.get("/conseiller/"))
    boss, _ = supervisor
    journal = text(boss.get("/conseiller/journal"))
    assert staff.email in journal and "Débloquer le compte" in journal and "motif de test" in journal


def test_an_unknown_email_locks_like_an_advisor_so_the_lock_tells_no_staff_email(app: Any) -> None:
    """Three tries on an e-mail: the same "bloqué" answer whether an advisor has it or not."""
    client = app.test_client()
    staff = enrol(app, client, "existe@am.fr")
    answers: dict[str, list[str]] = {}
    for email in (staff.email, "personne@am.fr"):
        fresh = app.test_client()
        for _ in range(4):
            token = csrf_from(fresh.get("/conseiller/connexion").data)
            answer = fresh.post("/conseiller/connexion", data={"csrf_token": token, "email": email,
                                                               "password": "pas le bon mot de passe"})
            answers.setdefault(email, []).append(
                "bloqué jusqu'au" if "bloqué jusqu'au" in text(answer) else "erronées" if "erronées" in text(answer)
                else text(answer))
    assert answers[staff.email] == answers["personne@am.fr"] == ["erronées", "erronées", "bloqué jusqu'au",
                                                                 "bloqué jusqu'au"]
