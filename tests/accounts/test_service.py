"""The accounts service API used by the login: authentication, rehash, rules, e-mail, terms."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from idp.accounts import service
from idp.accounts.models import Account
from idp.extensions import db
from tests.accounts.conftest import PASSWORD, make_account
from tests.conftest import proof_of, remember_secret

NIR = "285036938304242"
remember_secret(NIR, "2850369383042", "2 85 03 69 383 042 42")


def test_authenticate_accepts_any_spelling_of_the_nir(any_app: Any) -> None:
    account_id = make_account(any_app, NIR)
    with any_app.app_context():
        for spelling in (NIR, "2 85 03 69 383 042 42", "2850369383042"):
            account = service.authenticate(spelling, PASSWORD)
            assert account is not None and account.id == account_id


@pytest.mark.parametrize(("nir", "password"), [
    (NIR, "wrong-password-here"),
    ("1010199999999", PASSWORD),  # unknown NIR
    ("not a nir", PASSWORD),
    (NIR, ""),
])
def test_authenticate_says_none_for_every_failure(any_app: Any, nir: str, password: str) -> None:
    make_account(any_app, NIR)
    with any_app.app_context():
        assert service.authenticate(nir, password) is None


def test_disabled_account_cannot_authenticate(app: Any) -> None:
    make_account(app, NIR)
    with app.app_context():
        account = service.find_account(NIR)
        assert account is not None
        account.status = "disabled"
        db.session.commit()
        assert service.authenticate(NIR, PASSWORD) is None


def test_hash_is_upgraded_when_argon2_parameters_change(app: Any) -> None:
    make_account(app, NIR)
    with app.app_context():
        old = service.find_account(NIR).password_hash  # type: ignore[union-attr]
        assert "m=1024,t=1" in old
        app.extensions["idp.settings"] = app.extensions["idp.settings"].__class__(
            **{**{f: getattr(app.extensions["idp.settings"], f)
                  for f in app.extensions["idp.settings"].__dataclass_fields__}, "argon2_time_cost": 2})
        account = service.authenticate(NIR, PASSWORD)
        assert account is not None and "m=1024,t=2" in account.password_hash
        assert service.authenticate(NIR, PASSWORD) is not None


@pytest.mark.parametrize(("password", "reason"), [
    ("court", "au moins 8 caractères"),
    ("azerty123", "trop courant"),
    ("Motdepasse2024!", "trop courant"),
    ("zzzzzzzzzz", "un seul caractère"),
    ("x" * 300, "ne doit pas dépasser 256"),
    (f"moi{NIR[:13]}", "numéro de sécurité sociale"),
])
def test_password_rules_give_french_reasons(app: Any, password: str, reason: str) -> None:
    from idp.nir import Nir

    with app.app_context():
        reasons = service.check_password_rules(password, Nir.parse(NIR))
    assert any(reason in r for r in reasons), reasons


@pytest.mark.parametrize("password", ["8 caract", "une longue phrase de passe " * 9, "Ça c'est très sûr ✓"])
def test_long_and_unicode_passwords_are_accepted_without_truncation(app: Any, password: str) -> None:
    remember_secret(password)
    with app.app_context():
        assert service.check_password_rules(password) == []
        from idp.nir import Nir

        account = service.create_account(Nir.parse(NIR), password, email="a@example.fr")
        assert service.authenticate(NIR, password) is account
        if len(password) > 72:  # bcrypt would have truncated here: argon2 must not
            assert service.authenticate(NIR, password[:-1]) is None


@pytest.mark.parametrize(("email", "masked"), [
    ("alice@gmail.com", "a***@g***.com"),
    ("jean.martin@mail.example.fr", "j***@m***.fr"),
    ("x@localhost", "x***@l***"),
    (None, ""),
])
def test_masked_email(email: str | None, masked: str) -> None:
    assert service.masked_email(email) == masked


def test_database_dump_holds_no_nir_in_clear(any_app: Any) -> None:
    make_account(any_app, NIR)
    with any_app.app_context():
        rows = db.session.execute(text("SELECT * FROM accounts")).all()
    dump = repr(rows)
    assert NIR not in dump and NIR[:13] not in dump
    with any_app.app_context():
        account = db.session.query(Account).one()
        assert service.account_nir(account).value == NIR


def test_email_verification_validates_the_address_with_the_mailed_code(any_app: Any, mailbox: Any) -> None:
    make_account(any_app, NIR, email="old@example.fr", validated=False)
    with any_app.app_context():
        account = service.find_account(NIR)
        assert account is not None
        service.start_email_verification(account, "Nouvelle@Example.FR")
        message = mailbox.last("Nouvelle@example.fr")
        assert "code de sécurité" in message["subject"]
        code = mailbox.code()
        assert not service.confirm_email(account, "autre@example.fr", code)  # bound to the address
        assert service.confirm_email(account, "Nouvelle@example.fr", code)
        assert account.email == "Nouvelle@example.fr" and account.email_validated
        assert not service.confirm_email(account, "Nouvelle@example.fr", code)  # single use


def test_email_code_is_burnt_after_three_wrong_tries(app: Any, mailbox: Any) -> None:
    make_account(app, NIR, validated=False)
    with app.app_context():
        account = service.find_account(NIR)
        assert account is not None
        service.start_email_verification(account, "a@example.fr")
        code = mailbox.code()
        wrong = "000000" if code != "000000" else "111111"
        for _ in range(3):
            assert not service.confirm_email(account, "a@example.fr", wrong)
        assert not service.confirm_email(account, "a@example.fr", code)


def test_email_code_expires(app: Any, mailbox: Any, clock: Any) -> None:
    make_account(app, NIR, validated=False)
    with app.app_context():
        account = service.find_account(NIR)
        assert account is not None
        service.start_email_verification(account, "a@example.fr")
        code = mailbox.code()
        clock.advance(15 * 60)
        assert not service.confirm_email(account, "a@example.fr", code)


def test_sixth_email_code_request_in_an_hour_is_refused_with_the_paris_time(app: Any, mailbox: Any) -> None:
    make_account(app, NIR, validated=False)
    with app.app_context():
        account = service.find_account(NIR)
        assert account is not None
        for _ in range(5):
            service.start_email_verification(account, "a@example.fr")
        with pytest.raises(service.EmailCodeQuotaExceeded) as excinfo:
            service.start_email_verification(account, "a@example.fr")
    assert "bloqué jusqu'au 05/01/2026 - 15h30 (heure de Paris)" in excinfo.value.description
    assert len(mailbox.messages) == 5


def test_published_terms_are_pending_until_accepted(any_app: Any) -> None:
    make_account(any_app, NIR)
    with any_app.app_context():
        account = service.find_account(NIR)
        assert account is not None and service.pending_terms(account) is None
        first = service.publish_terms("v1", "CGU", "texte 1")
        assert service.pending_terms(account) is first
        service.accept_terms(account, first)
        service.accept_terms(account, first)  # idempotent
        assert service.pending_terms(account) is None
        second = service.publish_terms("v2", "CGU", "texte 2")
        assert service.pending_terms(account) is second


def test_the_newest_terms_version_is_read_once_per_worker_period_and_a_publication_here_is_seen_at_once(
        any_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import event

    from idp.accounts.models import TermsVersion

    make_account(any_app, NIR)
    with any_app.app_context():
        account = service.find_account(NIR)
        assert account is not None
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            for _ in range(3):
                assert service.pending_terms(account) is None
            assert sum("terms_versions" in s for s in statements) == 1, "one query for three login steps"
            first = service.publish_terms("v1", "CGU", "texte 1")
            assert service.pending_terms(account) is first, "published in this worker: seen at once"
            # Published by another worker (or the CLI): seen once this worker's period is over.
            db.session.add(TermsVersion(version="v2", title="CGU", body="texte 2", published_at=first.published_at))
            db.session.commit()
            assert service.pending_terms(account) is first
            monkeypatch.setattr(service, "TERMS_CACHE_SECONDS", 0.0)
            pending = service.pending_terms(account)
            assert pending is not None and pending.version == "v2"
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)


def test_set_password_ends_the_other_sessions(app: Any) -> None:
    from idp.login.sessions import sessions

    account_id = make_account(app, NIR)
    with app.app_context():
        keep = sessions.create(account_id=account_id, proof=proof_of(["pwd"], at=0))
        other = sessions.create(account_id=account_id, proof=proof_of(["pwd"], at=0))
        account = service.get_account(account_id)
        assert account is not None
        service.set_password(account, "un tout nouveau secret", keep_session=keep.id)
        remember_secret("un tout nouveau secret")
        assert sessions.get(keep.id) is not None and sessions.get(other.id) is None
        assert service.authenticate(NIR, "un tout nouveau secret") is account
        with pytest.raises(service.PasswordRejected):
            service.set_password(account, "azerty")
