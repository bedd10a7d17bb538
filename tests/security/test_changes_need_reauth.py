"""Issue 14's rule replayed as attacks over HTTP: every change reachable from a person's pages needs the
security page's fresh re-authentication code, whatever the session's age, and its CSRF token; a refused change
is audited and changes nothing. The biometric revocation of ``/compte/biometrie`` was the gap (a session cookie,
stolen or left open, sufficed to remove the person's credentials)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from idp.audit import AuditEvent
from tests.conftest import csrf_from
from tests.security.test_security_page import NEW_EMAIL, NEW_PASSWORD, person, reauthenticate, signed_in, text

__all__ = ["person"]  # the fixture, imported for pytest

# POSTs under /compte/ that are not changes of a signed-in account: the creation and re-creation journeys (no
# account yet, no session) and the re-authentication itself.
NOT_CHANGES = re.compile(r"^/compte/(creation|recreation)(/|$)|^/compte/securite/verification(/envoi)?$")


def credential_of(app: Any, account_id: str) -> int:
    """A live biometric credential of the account, stored directly (its ceremony is tested in tests/webauthn)."""
    from idp.extensions import clock, db
    from idp.webauthn.models import WebAuthnCredential

    with app.app_context():
        now = clock().now()
        row = WebAuthnCredential(account_id=account_id, credential_id=f"cred-{account_id}", public_key=b"\x00",
                                 device_label="Chrome sur Android", created_at=now,
                                 expires_at=now + timedelta(days=180))
        db.session.add(row)
        db.session.commit()
        return row.id


def usable(app: Any, account_id: str) -> bool:
    from idp.webauthn import service

    with app.app_context():
        return service.has_usable_credential(account_id)


def audited(app: Any, name: str) -> list[AuditEvent]:
    from idp.extensions import db

    with app.app_context():
        rows = list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.id)))
        db.session.expunge_all()
        return rows


def revoke(client: Any, credential: int, *, csrf: bool = True) -> Any:
    page = client.get("/compte/biometrie")
    data = {"csrf_token": csrf_from(page.data)} if csrf else {}
    return client.post(f"/compte/biometrie/{credential}/revoquer", data=data)


def test_a_session_cookie_alone_cannot_revoke_the_biometrics(app: Any, person: Any) -> None:
    credential = credential_of(app, person.account_id)
    client, _ = signed_in(app, person.account_id)  # a brand-new session, both factors proven: still not enough
    listing = client.get("/compte/biometrie")
    assert listing.status_code == 200 and "un code de sécurité vous sera envoyé" in text(listing)
    answer = revoke(client, credential)
    assert answer.status_code == 303 and answer.location.endswith("/compte/securite/verification?suite=biometrie")
    assert usable(app, person.account_id)
    (refused,) = audited(app, "account.reauth_required")
    assert refused.account_id == person.account_id and refused.data["action"] == "webauthn.revoke"
    assert audited(app, "webauthn.revoked") == []


def test_after_the_code_the_revocation_works_and_is_audited(app: Any, person: Any, mailbox: Any) -> None:
    credential = credential_of(app, person.account_id)
    client, _ = signed_in(app, person.account_id)
    back = reauthenticate(client, mailbox, suite="biometrie")
    assert back.status_code == 303 and back.location.endswith("/compte/biometrie")
    answer = revoke(client, credential)
    assert answer.status_code == 303 and answer.location.endswith("/compte/biometrie?revoquee=1")
    assert not usable(app, person.account_id)
    assert [e.account_id for e in audited(app, "webauthn.revoked")] == [person.account_id]


def test_the_code_opens_the_window_of_its_own_session_only_and_for_its_ttl(app: Any, person: Any, mailbox: Any,
                                                                           clock: Any) -> None:
    credential = credential_of(app, person.account_id)
    mine, _ = signed_in(app, person.account_id)
    reauthenticate(mine, mailbox, suite="biometrie")
    thief, _ = signed_in(app, person.account_id, device="Chrome sur Windows")
    assert "/compte/securite/verification" in revoke(thief, credential).location
    clock.advance(seconds=301)  # security_reauth_ttl (5 min) passed
    assert "/compte/securite/verification" in revoke(mine, credential).location
    assert usable(app, person.account_id)


def test_the_revocation_without_its_csrf_token_is_refused_even_right_after_the_code(app: Any, person: Any,
                                                                                    mailbox: Any) -> None:
    credential = credential_of(app, person.account_id)
    client, _ = signed_in(app, person.account_id)
    reauthenticate(client, mailbox, suite="biometrie")
    assert revoke(client, credential, csrf=False).status_code == 400
    assert usable(app, person.account_id)


def _change_urls(app: Any) -> list[str]:
    """Every POST route under /compte/ that changes a signed-in account, with sample path arguments."""
    urls = []
    for rule in app.url_map.iter_rules():
        if "POST" in (rule.methods or ()) and rule.rule.startswith("/compte/") and not NOT_CHANGES.match(rule.rule):
            urls.append(re.sub(r"<int:[^>]+>", "1", re.sub(r"<(string:)?[a-z_]+>", "abc", rule.rule)))
    return sorted(urls)


def test_the_siblings_are_all_covered(app: Any) -> None:
    """A new POST under /compte/ shows up here and in the replay below (nothing is forgotten by hand)."""
    assert _change_urls(app) == sorted([
        "/compte/biometrie/1/revoquer", "/compte/biometrie/activation/options", "/compte/biometrie/activation/verifier",
        "/compte/securite/email", "/compte/securite/email/code",
        "/compte/securite/mot-de-passe", "/compte/securite/navigateurs/1/revoquer",
        "/compte/securite/navigateurs/revoquer", "/compte/securite/sessions/abc/fermer",
        "/compte/securite/sessions/fermer"])


def test_every_post_under_compte_of_a_signed_in_account_asks_the_code_first(app: Any, person: Any) -> None:
    from idp.mfa import trusted_browser

    with app.app_context():
        trusted_browser.trust(person.account_id, label="Chrome sur Windows")
    credential_of(app, person.account_id)
    client, _ = signed_in(app, person.account_id)
    other, _ = signed_in(app, person.account_id, device="Safari sur iPhone")
    token = csrf_from(client.get("/compte/securite").data)
    for url in _change_urls(app):
        answer = client.post(url, data={"csrf_token": token, "email": NEW_EMAIL, "password": NEW_PASSWORD,
                                        "confirm": NEW_PASSWORD, "code": "123456"})
        assert answer.status_code == 303 and "/compte/securite/verification?suite=" in answer.location, url
    with app.app_context():
        assert len(trusted_browser.list_for(person.account_id)) == 1
    assert usable(app, person.account_id)
    assert other.get("/compte/securite").status_code == 200  # the other session still lives
    assert len(audited(app, "account.reauth_required")) == len(_change_urls(app))
