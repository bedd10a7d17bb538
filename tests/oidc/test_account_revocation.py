"""A password change, a reset or disabling the account takes back every grant of the account (review findings
5, 10), and a
code replayed while its first exchange is still running revokes what that exchange issues (finding 8)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.oidc.conftest import PASSWORD, flow, login, make_person, make_rp, redeem, token_request

NEW_PASSWORD = "Train-Bleu-Confiture-77"


def _tokens(app: Any, person: Any, rp: Any) -> dict[str, str]:
    browser = app.test_client()
    f = flow(rp)
    response = redeem(browser, rp, login(app, browser, person, f)["code"], f)
    assert response.status_code == 200, response.json
    return response.json


def _userinfo(client: Any, access_token: str) -> int:
    return int(client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"}).status_code)


def _trust_a_browser(app: Any, account_id: str) -> None:
    from idp.mfa import trusted_browser

    with app.app_context():
        trusted_browser.trust(account_id)
        assert len(trusted_browser.list_for(account_id)) == 1


def test_password_change_revokes_trusted_browsers_refresh_families_and_access_tokens(any_app: Any) -> None:
    from idp.accounts import service
    from idp.mfa import trusted_browser

    person, rp = make_person(any_app), make_rp(any_app)
    client = any_app.test_client()
    first, second = _tokens(any_app, person, rp), _tokens(any_app, person, rp)
    _trust_a_browser(any_app, person.account_id)
    with any_app.app_context():
        service.set_password(service.get_account(person.account_id), NEW_PASSWORD)
        assert trusted_browser.list_for(person.account_id) == []
    for issued in (first, second):
        assert _userinfo(client, issued["access_token"]) == 401
        assert token_request(client, rp, {"token": issued["access_token"]}, "/introspect").json == {"active": False}
        refreshed = token_request(client, rp, {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]})
        assert refreshed.json["error"] == "invalid_grant"
    assert PASSWORD != NEW_PASSWORD


def test_tokens_issued_after_a_password_change_keep_working(any_app: Any) -> None:
    from idp.accounts import service

    person, rp = make_person(any_app), make_rp(any_app)
    with any_app.app_context():
        service.set_password(service.get_account(person.account_id), NEW_PASSWORD)
    issued = _tokens(any_app, person, rp)
    assert _userinfo(any_app.test_client(), issued["access_token"]) == 200


def test_advisor_reset_makes_introspection_inactive_and_userinfo_401(any_app: Any) -> None:
    from idp.accounts import service

    person, rp = make_person(any_app), make_rp(any_app)
    client = any_app.test_client()
    issued = _tokens(any_app, person, rp)
    assert token_request(client, rp, {"token": issued["access_token"]}, "/introspect").json["active"] is True
    with any_app.app_context():
        service.reset_account(service.get_account(person.account_id))
    assert token_request(client, rp, {"token": issued["access_token"]}, "/introspect").json == {"active": False}
    assert token_request(client, rp, {"token": issued["refresh_token"]}, "/introspect").json == {"active": False}
    assert _userinfo(client, issued["access_token"]) == 401


def test_reset_revokes_only_that_accounts_tokens(any_app: Any) -> None:
    from idp.accounts import service
    from tests.oidc.conftest import OTHER_NIR

    marie, jean, rp = make_person(any_app), make_person(any_app, OTHER_NIR, "jean@example.org"), make_rp(any_app)
    kept = _tokens(any_app, jean, rp)
    _tokens(any_app, marie, rp)
    with any_app.app_context():
        service.reset_account(service.get_account(marie.account_id))
    assert _userinfo(any_app.test_client(), kept["access_token"]) == 200


def _disable(app: Any, account_id: str, status: str = "disabled") -> bool:
    from idp.accounts import service

    with app.app_context():
        return service.set_status(service.get_account(account_id), status)


def test_disabling_an_account_revokes_its_tokens_and_its_browser_session_at_once(any_app: Any) -> None:
    """What it proved before must not stay usable while it cannot sign in: userinfo 401, introspection
    inactive, refresh invalid_grant, and the browser's session no longer answers ``prompt=none``."""
    from tests.oidc.conftest import OTHER_NIR

    marie, jean, rp = make_person(any_app), make_person(any_app, OTHER_NIR, "jean@example.org"), make_rp(any_app)
    client, browser = any_app.test_client(), any_app.test_client()
    f = flow(rp)
    issued = redeem(browser, rp, login(any_app, browser, marie, f)["code"], f).json
    kept = _tokens(any_app, jean, rp)
    assert _disable(any_app, marie.account_id) is True
    assert _userinfo(client, issued["access_token"]) == 401
    for token in (issued["access_token"], issued["refresh_token"]):
        assert token_request(client, rp, {"token": token}, "/introspect").json == {"active": False}
    refreshed = token_request(client, rp, {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]})
    assert refreshed.status_code == 400 and refreshed.json["error"] == "invalid_grant"
    silent = browser.get("/authorize", query_string=flow(rp, prompt="none").params)
    assert silent.status_code == 302 and "error=login_required" in silent.headers["Location"]
    assert _userinfo(client, kept["access_token"]) == 200  # another account is untouched


def test_enabling_again_gives_back_nothing_revoked_and_a_new_login_works(any_app: Any) -> None:
    from sqlalchemy import select

    from idp.audit import AuditEvent
    from idp.extensions import db

    person, rp = make_person(any_app), make_rp(any_app)
    client = any_app.test_client()
    old = _tokens(any_app, person, rp)
    assert _disable(any_app, person.account_id) is True
    assert _disable(any_app, person.account_id) is False  # already disabled: nothing changes, nothing audited
    assert _disable(any_app, person.account_id, "active") is True
    assert _userinfo(client, old["access_token"]) == 401
    refreshed = token_request(client, rp, {"grant_type": "refresh_token", "refresh_token": old["refresh_token"]})
    assert refreshed.json["error"] == "invalid_grant"
    assert _userinfo(client, _tokens(any_app, person, rp)["access_token"]) == 200
    with any_app.app_context():
        events = db.session.scalars(select(AuditEvent.event).where(AuditEvent.account_id == person.account_id)
                                    .where(AuditEvent.event.in_(("account.disabled", "account.enabled")))
                                    .order_by(AuditEvent.id)).all()
    assert events == ["account.disabled", "account.enabled"]


def test_an_unknown_account_status_is_refused(app: Any) -> None:
    import pytest

    person = make_person(app)
    with pytest.raises(ValueError, match="unknown account status"):
        _disable(app, person.account_id, "suspended")


def test_code_replayed_while_the_first_exchange_runs_revokes_what_it_then_issues(any_app: Any) -> None:
    """The two steps interleaved: redeem, replay (nothing recorded yet), then the first exchange stores
    its tokens and records them: they are revoked at once."""
    from idp.extensions import db
    from idp.oidc import tokens
    from idp.oidc.clients import get_client

    person, rp = make_person(any_app), make_rp(any_app)
    browser = any_app.test_client()
    f = flow(rp)
    code = login(any_app, browser, person, f)["code"]
    with any_app.app_context():
        record = tokens.redeem_code(code, rp.client_id)  # first exchange takes the code...
        assert record is not None
        assert tokens.redeem_code(code, rp.client_id) is None  # ...a replay arrives before it saved anything
        client = get_client(rp.client_id)
        user = record.end_user()
        family = tokens.issue_refresh_token("rt-value-123456", client=client, scope=record.scope, user=user,
                                            family=None, lifetime=3600)
        tokens.store_access_token("at-value-123456", client=client, scope=record.scope, user=user, expires_in=600,
                                  family_id=family.family_id)
        db.session.commit()
        assert tokens.remember_code_issue(code, "at-value-123456", family.family_id) is True
        assert tokens.find_access_token("at-value-123456") is None
        db.session.refresh(family)
        assert family.revoked is True


def test_code_exchange_without_replay_keeps_its_tokens(any_app: Any) -> None:
    from idp.oidc import tokens

    person, rp = make_person(any_app), make_rp(any_app)
    browser = any_app.test_client()
    f = flow(rp)
    code = login(any_app, browser, person, f)["code"]
    with any_app.app_context():
        record = tokens.redeem_code(code, rp.client_id)
        assert record is not None
        assert tokens.remember_code_issue(code, "at-value-654321", None) is False


def test_replay_of_an_unknown_code_leaves_nothing_in_redis(app: Any) -> None:
    from idp.crypto import hash_token
    from idp.extensions import redis_client, rkey
    from idp.oidc import tokens

    with app.app_context():
        assert tokens.redeem_code("never-issued", "any-client") is None
        assert not redis_client().exists(rkey("code-used", hash_token("never-issued")))


def _add_credential(app: Any, account_id: str, credential_id: str) -> int:
    from datetime import timedelta

    from idp.extensions import clock, db
    from idp.webauthn.models import WebAuthnCredential

    with app.app_context():
        now = clock().now()
        row = WebAuthnCredential(account_id=account_id, credential_id=credential_id, public_key=b"cose",
                                 created_at=now, expires_at=now + timedelta(days=180), activated_with_mfa=True)
        db.session.add(row)
        db.session.commit()
        return row.id


def test_password_change_or_reset_revokes_every_webauthn_credential_of_the_account_only(any_app: Any) -> None:
    """Whoever had the password could have activated their own phone (on the app it replaces the password
    for 6 months): a password change or reset revokes every credential of the account, audited."""
    from sqlalchemy import select

    from idp.accounts import service
    from idp.audit import AuditEvent
    from idp.extensions import db
    from idp.webauthn import service as webauthn
    from idp.webauthn.models import WebAuthnCredential
    from tests.oidc.conftest import OTHER_NIR

    marie, jean = make_person(any_app), make_person(any_app, OTHER_NIR, "jean@example.org")
    mine = [_add_credential(any_app, marie.account_id, f"marie-{i}") for i in range(2)]
    kept = _add_credential(any_app, jean.account_id, "jean-0")
    with any_app.app_context():
        assert webauthn.has_usable_credential(marie.account_id)
        service.set_password(service.get_account(marie.account_id), NEW_PASSWORD)
        assert not webauthn.has_usable_credential(marie.account_id)
        assert all(db.session.get(WebAuthnCredential, pk).revoked_at is not None for pk in mine)
        assert db.session.get(WebAuthnCredential, kept).revoked_at is None
        assert webauthn.has_usable_credential(jean.account_id)
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "webauthn.revoked_all")).all()
        assert [(e.account_id, e.data["count"]) for e in events] == [(marie.account_id, 2)]


def _password_changed_without_revocation(app: Any, account_id: str) -> None:
    """What a revocation racing a refresh in flight (or a code waiting in Redis) leaves: the password changed,
    the grant still there."""
    from idp.accounts.models import Account
    from idp.extensions import clock, db

    with app.app_context():
        db.session.get(Account, account_id).password_changed_at = clock().now()
        db.session.commit()


def test_refresh_of_a_grant_older_than_the_password_is_invalid_grant(any_app: Any, clock: Any) -> None:
    person, rp = make_person(any_app), make_rp(any_app)
    issued = _tokens(any_app, person, rp)
    clock.advance(seconds=30)
    _password_changed_without_revocation(any_app, person.account_id)
    client = any_app.test_client()
    refreshed = token_request(client, rp, {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]})
    assert refreshed.status_code == 400 and refreshed.json["error"] == "invalid_grant"


def test_code_from_a_login_older_than_the_password_is_invalid_grant(any_app: Any, clock: Any) -> None:
    person, rp = make_person(any_app), make_rp(any_app)
    browser = any_app.test_client()
    f = flow(rp)
    code = login(any_app, browser, person, f)["code"]
    clock.advance(seconds=30)
    _password_changed_without_revocation(any_app, person.account_id)
    response = redeem(browser, rp, code, f)
    assert response.status_code == 400 and response.json["error"] == "invalid_grant"


def test_grants_from_a_login_after_the_password_change_are_honoured(any_app: Any, clock: Any) -> None:
    person, rp = make_person(any_app), make_rp(any_app)
    _password_changed_without_revocation(any_app, person.account_id)
    clock.advance(seconds=1)
    issued = _tokens(any_app, person, rp)
    refreshed = token_request(any_app.test_client(), rp,
                              {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.json


def test_code_exchange_for_a_disabled_or_deleted_account_is_invalid_grant_and_stores_nothing(any_app: Any) -> None:
    """A code whose account was disabled or deleted while it waited in Redis: invalid_grant, with or without a
    refresh token to issue (the owner is then checked by the INSERT of the family, which is rolled back)."""
    from sqlalchemy import func, select

    from idp.accounts.models import Account
    from idp.extensions import db, redis_client, rkey
    from idp.oidc.models import RefreshToken

    def rows() -> int:
        with any_app.app_context():
            return int(db.session.scalar(select(func.count()).select_from(RefreshToken)) or 0)

    def access_tokens() -> int:
        with any_app.app_context():
            return len(list(redis_client().scan_iter(rkey("at", "*"))))

    for grant_types, change in ((None, "disable"), (["authorization_code"], "disable"), (None, "delete")):
        person = make_person(any_app)
        rp = make_rp(any_app, **({"grant_types": grant_types} if grant_types else {}))
        browser = any_app.test_client()
        f = flow(rp)
        code = login(any_app, browser, person, f)["code"]
        before_rows, before_access = rows(), access_tokens()
        with any_app.app_context():
            account = db.session.get(Account, person.account_id)
            if change == "disable":
                account.status = "disabled"
            else:
                db.session.delete(account)
            db.session.commit()
        response = redeem(browser, rp, code, f)
        assert response.status_code == 400 and response.json["error"] == "invalid_grant", (grant_types, change)
        assert rows() == before_rows and access_tokens() == before_access, (grant_types, change)
        with any_app.app_context():
            account = db.session.get(Account, person.account_id)
            if account is not None:
                db.session.delete(account)
                db.session.commit()


def test_code_issue_recorded_with_the_access_token_sees_a_replay_either_side(any_app: Any) -> None:
    """A code exchange records what it issued in the access token's round trip (no script of its own): a replay
    that came first is read back there (and what was issued is revoked), one that comes after finds the record."""
    from idp.extensions import db
    from idp.oidc import tokens
    from idp.oidc.clients import get_client

    person, rp = make_person(any_app), make_rp(any_app)
    for replay_first in (True, False):
        browser = any_app.test_client()
        f = flow(rp)
        code = login(any_app, browser, person, f)["code"]
        with any_app.app_context():
            record = tokens.redeem_code(code, rp.client_id)
            assert record is not None
            if replay_first:
                assert tokens.redeem_code(code, rp.client_id) is None
            client, user = get_client(rp.client_id), record.end_user()
            value = f"rt-value-{replay_first}-123456"
            family = tokens.issue_refresh_token(value, client=client, scope=record.scope, user=user, family=None,
                                                lifetime=3600)
            access = f"at-value-{replay_first}-123456"
            stored = tokens.store_access_token(access, client=client, scope=record.scope, user=user, expires_in=600,
                                               family_id=family.family_id, code=code)
            db.session.commit()
            assert stored.code_replayed is replay_first
            if replay_first:
                tokens.revoke_replayed_issue(access, family.family_id)
            else:
                assert tokens.find_access_token(access) is not None
                assert tokens.redeem_code(code, rp.client_id) is None  # the replay comes after the record
            assert tokens.find_access_token(access) is None
            db.session.refresh(family)
            assert family.revoked is True


@pytest.mark.postgres
def test_a_code_replayed_before_its_first_exchange_commits_revokes_the_family_it_issues(pg_app: Any,
                                                                                      monkeypatch: Any) -> None:
    """Attack: the code is presented again (same client, over HTTP) while its first exchange has recorded what it
    issues (the "used" marker names the access token and the new family) but has not committed the family yet
    (it is signing the ID token). The replay revokes what the marker names: the family is revoked once the first
    exchange commits, not left alive because its rows were not visible yet."""
    import threading

    from sqlalchemy import select

    from idp.extensions import db
    from idp.oidc import tokens
    from idp.oidc.models import RefreshToken

    person, rp = make_person(pg_app), make_rp(pg_app)
    browser = pg_app.test_client()
    f = flow(rp)
    code = login(pg_app, browser, person, f)["code"]
    replays: list[Any] = []
    threads: list[threading.Thread] = []
    store = tokens.store_access_token

    def storing_then_replayed(*args: Any, **kwargs: Any) -> Any:
        stored = store(*args, **kwargs)  # the marker names what this exchange issues; nothing committed yet
        if not threads:
            replay = threading.Thread(target=lambda: replays.append(redeem(pg_app.test_client(), rp, code, f)))
            threads.append(replay)
            replay.start()
            replay.join(0.5)  # the replay runs now (it may wait for this exchange's commit)
        return stored

    monkeypatch.setattr(tokens, "store_access_token", storing_then_replayed)
    first = redeem(browser, rp, code, f)
    threads[0].join(10)
    assert first.status_code == 200 and replays[0].status_code == 400 and replays[0].json["error"] == "invalid_grant"
    with pg_app.app_context():
        family = db.session.scalars(select(RefreshToken).where(
            RefreshToken.token_hash == tokens.hash_token(first.json["refresh_token"]))).one()
        assert family.revoked, "the replay revoked the family the first exchange was issuing"
    refreshed = token_request(pg_app.test_client(), rp,
                              {"grant_type": "refresh_token", "refresh_token": first.json["refresh_token"]})
    assert refreshed.status_code == 400 and refreshed.json["error"] == "invalid_grant"
    assert _userinfo(pg_app.test_client(), first.json["access_token"]) == 401
