"""A credential activated after a password-only (mobile) login serves the app only; activation is
e-mailed to the owner; a parallel duplicate activation is a French refusal (review findings 4, 15)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from idp.audit import AuditEvent
from idp.extensions import db
from idp.login import assurance
from idp.login.biometric_views import ceremony_of
from idp.webauthn import challenges, service
from idp.webauthn.service import BiometricRefused
from tests.webauthn.conftest import challenge_of, make_account, make_interaction, recorded


def _activate(account: Any, amr: list[str], *, client_kind: str = "web", trusted_browser: bool = False) -> Any:
    """Activation from the offer of a login that proved ``amr`` (and a trusted browser), as the login area
    calls it: the credential gets that login's level."""
    interaction = make_interaction(account=account, amr=amr, client_kind=client_kind)
    if trusted_browser:
        interaction.proof.add(assurance.trusted_browser_factor(0))
    factors, acr = assurance.activation_level(interaction.proof)
    challenges.keep("register", interaction.id, challenge_of("registration"), account_id=account.id)
    return service.finish_registration(ceremony=ceremony_of(interaction), account=account,
                                       response=recorded("registration")["credential"], device_label="Chrome sur Android",
                                       activation_factors=factors, activation_acr=acr)


def _sign_in(client_kind: str) -> assurance.Proof:
    """A sign-in with the credential; the proof the login records from it."""
    interaction = make_interaction(client_kind=client_kind)
    challenges.keep("login", interaction.id, challenge_of("authentication"))
    credential = service.verify_sign_in(ceremony=ceremony_of(interaction),
                                        response=recorded("authentication")["credential"])
    proof = assurance.Proof()
    proof.add(assurance.platform_factor(1, activation_factors=credential.activation_factors,
                                        activation_acr=credential.activation_acr))
    return proof


def _web() -> assurance.Requirement:
    return assurance.requirement(client_kind="web", client_requires_code=True, acr_values=None, claims_request={})


def test_credential_activated_after_a_mobile_password_only_login_is_not_usable_on_web(ctx: Any) -> None:
    account = make_account(login_count=1)
    credential = _activate(account, ["pwd"], client_kind="mobile")
    assert credential.activated_with_mfa is False
    assert service.has_usable_credential(account.id)
    assert not service.has_usable_credential(account.id, for_web=True)


def test_web_policy_does_not_offer_an_app_only_credential_as_second_factor(ctx: Any) -> None:
    from idp.login.policy import biometric_available, next_step

    account = make_account(login_count=1)
    _activate(account, ["pwd"], client_kind="mobile")
    web = make_interaction(account=account, amr=["pwd"])
    assert not biometric_available(web)
    assert next_step(web, account) == "code"
    assert biometric_available(make_interaction(account=account, amr=["pwd"], client_kind="mobile"))


def test_web_sign_in_with_an_app_only_credential_is_refused_in_french(ctx: Any) -> None:
    account = make_account(login_count=1)
    _activate(account, ["pwd"], client_kind="mobile")
    with pytest.raises(BiometricRefused) as info:
        _sign_in("web")
    assert "ne remplace pas le code" in info.value.description
    reasons = [e.data.get("reason") for e in db.session.scalars(
        select(AuditEvent).where(AuditEvent.event == "webauthn.sign_in_refused"))]
    assert reasons == ["credential activated without two factors"]


def test_mobile_sign_in_with_an_app_only_credential_works_but_gives_no_web_second_factor(ctx: Any) -> None:
    account = make_account(login_count=1)
    _activate(account, ["pwd"], client_kind="mobile")
    proof = _sign_in("mobile")
    assert assurance.amr(proof) == ["hwk", "user"] and assurance.acr(proof) == "eidas1"
    assert not assurance.second_factor_satisfied(_web(), proof)
    proof.add(assurance.password_factor(0))
    assert not assurance.second_factor_satisfied(_web(), proof)  # password + a one-factor credential


@pytest.mark.parametrize(("amr", "trusted"), [(["pwd", "mail"], False), (["pwd"], True)])
def test_credential_activated_with_two_factors_replaces_the_code_on_web(ctx: Any, amr: list[str],
                                                                       trusted: bool) -> None:
    account = make_account(login_count=1)
    credential = _activate(account, amr, trusted_browser=trusted)
    assert credential.activated_with_mfa is True and credential.activation_acr == "eidas1"
    assert service.has_usable_credential(account.id, for_web=True)
    proof = _sign_in("web")
    assert assurance.amr(proof) == ["hwk", "user", "mfa"] and assurance.acr(proof) == "eidas1"
    # On the web the password comes first (the policy asks it before the credential): with it, web SSO;
    # without it (the app, where the credential replaces the password), none.
    assert not assurance.second_factor_satisfied(_web(), proof)
    proof.add(assurance.password_factor(0))
    assert assurance.second_factor_satisfied(_web(), proof)


def test_activation_e_mails_the_account_owner_in_french(app: Any, mailbox: Any) -> None:
    with app.app_context():
        account = make_account(login_count=1)
        _activate(account, ["pwd", "mail"])
    message = mailbox.last("assure@example.fr")
    assert "biométrie activée" in message["subject"]
    assert "Chrome sur Android" in message["body"] and "n'êtes pas à l'origine" in message["body"]


def test_activation_succeeds_and_logs_a_warning_when_the_notice_cannot_be_sent(
        app: Any, monkeypatch: Any, caplog: Any) -> None:
    from idp.notify import mail

    def down(*_: Any, **__: Any) -> None:
        raise mail.MailNotSent(detail="test")

    monkeypatch.setattr(mail, "send_mail", down)
    with app.app_context():
        account = make_account(login_count=1)
        credential = _activate(account, ["pwd", "mail"])
        assert service.has_usable_credential(account.id, for_web=True) and credential.id
    assert "biometric activation notice not sent" in caplog.text


def test_parallel_activation_of_the_same_credential_id_is_a_french_refusal_not_a_500(ctx: Any,
                                                                                   monkeypatch: Any) -> None:
    first, second = make_account(), make_account()
    _activate(first, ["pwd", "mail"])
    # The other request inserted the row between our check and our insert: the unique index decides.
    monkeypatch.setattr(db.session, "scalar", lambda *_a, **_k: None)
    with pytest.raises(BiometricRefused) as info:
        _activate(second, ["pwd", "mail"])
    assert "L'activation de la biométrie n'a pas abouti" in info.value.description
    monkeypatch.undo()
    assert not service.has_usable_credential(second.id)
