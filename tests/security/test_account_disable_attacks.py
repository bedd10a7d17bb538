"""Disabling an account, attacked (review of the disable/enable feature, replayed over HTTP).

Each hole the review found is replayed and shown closed: a clean-up interrupted by an outage is finished by
running the command again; a grant in flight across the disable, or a code waiting in Redis, is refused
after it (the account's status at userinfo and introspection, its cut-off ``grants_not_before`` wherever a
grant is used), even once the account is enabled again; a session
opened by a login that finished during the disable answers nothing; the relying parties of the ended sessions
get a back-channel logout; a disabled account cannot be reset into an active one; the console audits only
what changed.
"""

from __future__ import annotations

import html
import threading
from typing import Any

import pytest

from tests.accounts.conftest import RecordingSms, by_name, demo_records, make_account
from tests.advisors.conftest import act, advisor, registry, search, sms, supervisor
from tests.oidc.conftest import flow, login, make_person, make_rp, query_of, redeem, token_request

MARIE = by_name(demo_records(), "DUPONT")
__all__ = ["advisor", "registry", "sms", "supervisor"]  # fixtures, imported for pytest


def _set_status(app: Any, account_id: str, status: str) -> bool:
    from idp.accounts import service

    with app.app_context():
        return service.set_status(service.get_account(account_id), status)


def _status(app: Any, account_id: str) -> str:
    from idp.accounts import service

    with app.app_context():
        return str(service.get_account(account_id).status)


def _userinfo(client: Any, access_token: str) -> int:
    return int(client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"}).status_code)


def _introspect(client: Any, rp: Any, token: str) -> bool:
    return bool(token_request(client, rp, {"token": token}, "/introspect").json["active"])


def _refresh(client: Any, rp: Any, refresh_token: str) -> Any:
    return token_request(client, rp, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def test_a_clean_up_interrupted_by_an_outage_is_finished_by_disabling_again(app: Any, monkeypatch: Any) -> None:
    """Redis blips while the receivers run: the status is committed, the tokens are not revoked yet. The
    operator runs the command again: nothing changes (False) but the clean-up runs again to its end."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from idp.oidc import tokens

    person, rp = make_person(app), make_rp(app)
    browser, client = app.test_client(), app.test_client()
    f = flow(rp)
    issued = redeem(browser, rp, login(app, browser, person, f)["code"], f).json
    real, failed = tokens.revoke_all_for_account, []

    def blip(account_id: str) -> int:
        if not failed:
            failed.append(account_id)
            raise RedisConnectionError("Redis blip")
        return real(account_id)

    monkeypatch.setattr(tokens, "revoke_all_for_account", blip)
    with pytest.raises(RedisConnectionError):
        _set_status(app, person.account_id, "disabled")
    assert _status(app, person.account_id) == "disabled"
    assert _set_status(app, person.account_id, "disabled") is False  # the retry: nothing changed...
    assert _userinfo(client, issued["access_token"]) == 401  # ...and everything is revoked
    assert _introspect(client, rp, issued["access_token"]) is False
    assert _refresh(client, rp, issued["refresh_token"]).json["error"] == "invalid_grant"


@pytest.mark.postgres
def test_tokens_of_a_code_exchange_in_flight_across_the_disable_are_refused_even_once_enabled(
        pg_app: Any, clock: Any, monkeypatch: Any) -> None:
    """Worker A exchanges a code: its INSERT ... SELECT reads the owner active and inserts the refresh family
    (uncommitted). Worker B disables the account meanwhile: commit, then the revocation (which cannot see
    A's row nor A's access token, not stored yet). A commits. Both escaped the revocation, but the account's
    status and cut-off refuse them: at userinfo, at introspection, at the refresh grant, and the family still
    after the account is enabled again."""
    from idp.accounts import service
    from idp.oidc import tokens

    person, rp = make_person(pg_app), make_rp(pg_app)
    browser, client = pg_app.test_client(), pg_app.test_client()
    f = flow(rp)
    code = login(pg_app, browser, person, f)["code"]
    clock.advance(seconds=5)  # the RP exchanges its code a few seconds after the login
    real, done, errors = tokens.store_access_token, [], []

    def other_worker() -> None:
        try:
            with pg_app.app_context():
                assert service.set_status(service.get_account(person.account_id), "disabled") is True
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def disable_meanwhile(*args: Any, **kwargs: Any) -> Any:
        if not done:
            done.append(True)
            worker = threading.Thread(target=other_worker)
            worker.start()
            worker.join(30)
            assert not worker.is_alive() and not errors, errors
        return real(*args, **kwargs)

    monkeypatch.setattr(tokens, "store_access_token", disable_meanwhile)
    issued = redeem(browser, rp, code, f)
    monkeypatch.setattr(tokens, "store_access_token", real)
    assert done and _status(pg_app, person.account_id) == "disabled"
    assert issued.status_code == 200  # issued across the disable: the race this test is about
    escaped = issued.json
    assert _userinfo(client, escaped["access_token"]) == 401  # the fast path in front of Flask...
    by_flask = client.post("/userinfo", data={"access_token": escaped["access_token"]})  # ...and the route
    assert by_flask.status_code == 401 and by_flask.json["error"] == "invalid_token"
    assert _introspect(client, rp, escaped["access_token"]) is False
    assert _introspect(client, rp, escaped["refresh_token"]) is False
    assert _refresh(client, rp, escaped["refresh_token"]).json["error"] == "invalid_grant"
    assert _set_status(pg_app, person.account_id, "active") is True
    assert _introspect(client, rp, escaped["refresh_token"]) is False
    assert _refresh(client, rp, escaped["refresh_token"]).json["error"] == "invalid_grant"


def test_a_code_issued_before_the_disable_is_refused_after_a_quick_enable(app: Any, clock: Any) -> None:
    person, rp = make_person(app), make_rp(app)
    browser = app.test_client()
    f = flow(rp)
    code = login(app, browser, person, f)["code"]
    clock.advance(seconds=2)
    assert _set_status(app, person.account_id, "disabled") is True
    assert _set_status(app, person.account_id, "active") is True
    answer = redeem(browser, rp, code, f)
    assert answer.status_code == 400 and answer.json["error"] == "invalid_grant"


def test_a_login_that_finishes_during_the_disable_opens_a_session_that_answers_nothing(
        app: Any, monkeypatch: Any) -> None:
    """/authorize/resume consumes the interaction (still current), the disable ends the sessions and the
    logins in flight, and only then is the new session created: it gives no code (prompt=none:
    login_required) and opens no account page."""
    from idp.login.interaction import interactions

    person, rp = make_person(app), make_rp(app)
    browser = app.test_client()
    real, done = interactions.consume, []

    def consume_then_disable(interaction_id: str) -> Any:
        found = real(interaction_id)
        if not done:
            done.append(True)
            _set_status(app, person.account_id, "disabled")
        return found

    monkeypatch.setattr(interactions, "consume", consume_then_disable)
    login(app, browser, person, flow(rp))
    monkeypatch.setattr(interactions, "consume", real)
    assert done and _status(app, person.account_id) == "disabled"
    silent = browser.get("/authorize", query_string=flow(rp, prompt="none").params)
    assert silent.status_code == 302 and query_of(silent)["error"] == "login_required"
    assert browser.get("/compte/biometrie").status_code == 401


def test_disabling_sends_a_backchannel_logout_to_the_clients_of_the_ended_sessions(app: Any,
                                                                                   monkeypatch: Any) -> None:
    from joserfc import jwt

    import idp.oidc.logout as logout
    from idp.notify import outbox

    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(logout.requests, "post", lambda url, data, **_: sent.append((url, data["logout_token"]))
                        or type("Answer", (), {"status_code": 200})())
    person = make_person(app)
    rp = make_rp(app, "web", backchannel_logout_uri="https://rp.example/backchannel")
    browser = app.test_client()
    f = flow(rp)
    assert redeem(browser, rp, login(app, browser, person, f)["code"], f).status_code == 200
    assert _set_status(app, person.account_id, "disabled") is True
    outbox.drain()
    assert [url for url, _ in sent] == ["https://rp.example/backchannel"]
    claims = jwt.decode(sent[0][1], _verification_keys(app)).claims
    assert claims["aud"] == rp.client_id and "sid" in claims and "nonce" not in claims


def _verification_keys(app: Any) -> Any:
    from joserfc.jwk import KeySet

    with app.app_context():
        answer = app.test_client().get("/jwks")
    return KeySet.import_key_set(answer.json)


# --- the advisors' console ----------------------------------------------------------------------------------
@pytest.fixture
def app_config(sms: RecordingSms) -> dict[str, Any]:
    return {"sms": sms}



def _dossier(client: Any, nir: str) -> str:
    found = search(client, nir)
    assert found.status_code == 303
    return str(found.location.replace("http://localhost", ""))


def test_a_disabled_account_cannot_be_reset_into_an_active_one(registry: Any, advisor: Any,
                                                               sms: RecordingSms) -> None:
    """Disabled for identity theft, then "mot de passe oublié" at 3646: the reset (which would let a provisional
    SMS code re-create an active account without anyone enabling it) is refused until the account is enabled
    (the CLI refuses it too: tests/accounts/test_lifecycle.py)."""
    client, _staff = advisor
    account_id = make_account(registry, MARIE["nir"])
    dossier = _dossier(client, MARIE["nir"])
    assert act(client, dossier, "disable", reason="usurpation signalée au 3646").status_code == 303
    page = client.get(dossier).get_data(as_text=True)
    assert "Réinitialiser le compte" not in page and "Seul un superviseur peut réactiver" in html.unescape(page)
    refused = act(client, dossier, "reset", reason="mot de passe oublié")
    assert refused.status_code == 200 and "il doit être réactivé avant d'être réinitialisé" in \
        html.unescape(refused.get_data(as_text=True))
    assert act(client, dossier, "send_sms", reason="recréation du compte").status_code == 400  # an account exists
    assert sms.sent == []
    assert _status(registry, account_id) == "disabled"


def test_the_console_audits_whether_a_disable_or_enable_changed_anything(registry: Any, supervisor: Any) -> None:
    from sqlalchemy import select

    from idp.audit import AuditEvent
    from idp.extensions import db

    client, _staff = supervisor
    make_account(registry, MARIE["nir"])
    dossier = _dossier(client, MARIE["nir"])
    # A stale page (or a second supervisor) posts "enable" on an active account.
    assert act(client, dossier, "enable", reason="identité vérifiée en agence").status_code == 303
    assert act(client, dossier, "disable", reason="usurpation signalée").status_code == 303
    assert act(client, dossier, "disable", reason="révoquer à nouveau").status_code == 303
    with registry.app_context():
        rows = db.session.execute(select(AuditEvent.event, AuditEvent.data).where(AuditEvent.event.in_(
            ("advisor.enable", "advisor.disable", "account.enabled", "account.disabled"))).order_by(AuditEvent.id))
        seen = [(event, data.get("changed")) for event, data in rows]
    assert seen == [("advisor.enable", False), ("account.disabled", None), ("advisor.disable", True),
                    ("advisor.disable", False)]


@pytest.mark.parametrize("scope", ["openid", "openid email"])
def test_userinfo_refuses_a_token_of_a_disabled_account_whatever_its_scope(app: Any, clock: Any, scope: str) -> None:
    """An access token the revocation missed (stored after it, as an exchange in flight would): userinfo
    reads the account at every call, ``sub``-only answers included, and its login stays older than the
    account's cut-off once the account is enabled again."""
    from idp.clock import timestamp
    from idp.oidc import tokens
    from idp.oidc.clients import get_client

    person, rp = make_person(app), make_rp(app)
    logged_in_at = timestamp(clock.now())
    clock.advance(seconds=3)
    assert _set_status(app, person.account_id, "disabled") is True
    with app.app_context():
        client = get_client(rp.client_id)
        assert client is not None
        tokens.store_access_token("escaped-access-token-0123456789", client=client, scope=scope, expires_in=600,
                                  family_id=None, user=tokens.EndUser(account_id=person.account_id, acr="eidas1",
                                                                      auth_time=logged_in_at, amr=["pwd", "mail"]))
    answer = app.test_client().get("/userinfo", headers={"Authorization": "Bearer escaped-access-token-0123456789"})
    assert answer.status_code == 401 and 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
    assert _set_status(app, person.account_id, "active") is True
    assert _userinfo(app.test_client(), "escaped-access-token-0123456789") == 401


def test_a_trusted_browser_and_a_biometric_credential_do_not_outlive_a_disable(app: Any, mailbox: Any) -> None:
    """Whoever held the account trusted their browser and enrolled their own phone; an advisor disables the
    account, later enables it: the password alone on that browser is asked the e-mailed code again (the trusted
    cookie replayed is worthless), and the phone's credential is revoked (audited ``webauthn.revoked_all``,
    reason ``account_disabled``), not given back by the enable."""
    from datetime import timedelta

    from sqlalchemy import select

    from idp.audit import AuditEvent
    from idp.extensions import clock, db
    from idp.webauthn import service as webauthn
    from idp.webauthn.models import WebAuthnCredential
    from tests.login.conftest import bind, new_interaction, post_code, post_identify
    from tests.login.conftest import make_account as make_login_account

    account = make_login_account(app)
    attacker = app.test_client()
    bind(attacker, new_interaction(app))
    post_identify(attacker, trusted_browser="1")
    assert post_code(attacker, mailbox.code()).status_code == 303
    assert attacker.get_cookie("idp_trusted", domain="localhost") is not None
    bind(attacker, new_interaction(app))
    mailbox.clear()
    assert post_identify(attacker).headers["Location"] != "/connexion/code"  # trusted: no code asked
    with app.app_context():
        now = clock().now()
        db.session.add(WebAuthnCredential(account_id=account.account_id, credential_id="attacker-phone",
                                          public_key=b"\x01", created_at=now, expires_at=now + timedelta(days=180),
                                          activated_with_mfa=True))
        db.session.commit()
        assert webauthn.has_usable_credential(account.account_id, for_web=True)
    assert _set_status(app, account.account_id, "disabled") is True
    assert _set_status(app, account.account_id, "active") is True
    bind(attacker, new_interaction(app))
    assert post_identify(attacker).headers["Location"] == "/connexion/code"
    with app.app_context():
        assert webauthn.list_credentials(account.account_id) == []
        assert not webauthn.has_usable_credential(account.account_id, for_web=True)
        reasons = [e.data.get("reason") for e in db.session.scalars(
            select(AuditEvent).where(AuditEvent.account_id == account.account_id,
                                     AuditEvent.event == "webauthn.revoked_all"))]
        assert reasons == ["account_disabled"]
