"""Activation, sign-in and management through the service, on recorded JSON, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from idp.audit import AuditEvent
from idp.extensions import db, settings
from idp.login.interaction import interactions
from idp.webauthn import challenges, service
from idp.webauthn.models import WebAuthnCredential, as_utc
from idp.webauthn.service import BiometricRefused
from tests.webauthn.conftest import challenge_of, make_account, make_interaction, recorded


@contextmanager
def refused(words: str) -> Iterator[None]:
    """The block raises BiometricRefused whose French description contains ``words``."""
    with pytest.raises(BiometricRefused) as info:
        yield
    assert words in info.value.description


def _events(name: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


def _activate(account: Any) -> WebAuthnCredential:
    """Activation with the recorded registration (its challenge kept as if the options had been sent)."""
    interaction = make_interaction(account=account, amr=["pwd", "mail"])
    challenges.keep("register", interaction.id, challenge_of("registration"), account_id=account.id)
    return service.finish_registration(interaction=interaction, account=account,
                                       response=recorded("registration")["credential"], device_label="Chrome sur Android")


def _sign_in(name: str, interaction: Any = None) -> Any:
    interaction = interaction or make_interaction()
    challenges.keep("login", interaction.id, challenge_of(name))
    service.sign_in(interaction=interaction, response=recorded(name)["credential"])
    return interactions.get(interaction.id)


# --- activation ------------------------------------------------------------------------------
def test_activation_stores_the_credential_for_six_months(ctx: Any, clock: Any) -> None:
    account = make_account(login_count=1)
    credential = _activate(account)
    assert credential.credential_id == recorded("authenticator")["credential_id"]
    assert credential.transports == ["internal"]
    assert (credential.backup_eligible, credential.backup_state, credential.sign_count) == (False, False, 0)
    assert as_utc(credential.expires_at) - as_utc(credential.created_at) == timedelta(seconds=settings().biometric_ttl)
    assert settings().biometric_ttl == 6 * 30 * 24 * 3600
    assert service.has_usable_credential(account.id)
    assert [e.account_id for e in _events("webauthn.activated")] == [account.id]


def test_activation_options_exclude_the_accounts_usable_credentials(ctx: Any) -> None:
    account = make_account()
    credential = _activate(account)
    options = service.start_registration(interaction=make_interaction(account=account, amr=["pwd"]), account=account)
    assert [c["id"] for c in options["excludeCredentials"]] == [credential.credential_id]
    assert options["authenticatorSelection"]["userVerification"] == "required"


def test_replayed_activation_is_refused(ctx: Any) -> None:
    account = make_account()
    interaction = make_interaction(account=account, amr=["pwd"])
    challenges.keep("register", interaction.id, challenge_of("registration"), account_id=account.id)
    response = recorded("registration")["credential"]
    service.finish_registration(interaction=interaction, account=account, response=response, device_label="x")
    with refused("déjà été utilisée"):
        service.finish_registration(interaction=interaction, account=account, response=response, device_label="x")


def test_activation_challenge_expires_by_the_clock(ctx: Any, clock: Any) -> None:
    account = make_account()
    interaction = make_interaction(account=account, amr=["pwd"])
    challenges.keep("register", interaction.id, challenge_of("registration"), account_id=account.id)
    clock.advance(settings().webauthn_challenge_ttl)
    with pytest.raises(BiometricRefused):
        service.finish_registration(interaction=interaction, account=account,
                                    response=recorded("registration")["credential"], device_label="x")
    assert not service.has_usable_credential(account.id)


def test_activation_challenge_is_bound_to_the_account(ctx: Any) -> None:
    account, other = make_account(), make_account()
    interaction = make_interaction(account=account, amr=["pwd"])
    challenges.keep("register", interaction.id, challenge_of("registration"), account_id=other.id)
    with pytest.raises(BiometricRefused):
        service.finish_registration(interaction=interaction, account=account,
                                    response=recorded("registration")["credential"], device_label="x")


@pytest.mark.parametrize("fixture", ["registration_no_uv", "registration_wrong_origin", "registration_wrong_rp_id"])
def test_bad_activation_is_refused_and_audited(ctx: Any, fixture: str) -> None:
    account = make_account()
    interaction = make_interaction(account=account, amr=["pwd"])
    challenges.keep("register", interaction.id, challenge_of(fixture), account_id=account.id)
    with refused("L'activation de la biométrie n'a pas abouti"):
        service.finish_registration(interaction=interaction, account=account, response=recorded(fixture)["credential"],
                                    device_label="x")
    assert [e.account_id for e in _events("webauthn.activation_refused")] == [account.id]
    assert not service.has_usable_credential(account.id)


# --- sign-in ---------------------------------------------------------------------------------
def test_sign_in_marks_the_interaction_and_advances_the_counter(ctx: Any, clock: Any) -> None:
    account = make_account()
    credential = _activate(account)
    interaction = _sign_in("authentication")
    assert interaction.account_id == account.id
    assert interaction.amr == ["hwk", "user"]
    db.session.refresh(credential)
    assert credential.sign_count == 1
    assert as_utc(credential.last_used_at) == clock.now()
    assert [e.account_id for e in _events("webauthn.sign_in")] == [account.id]


def test_replayed_assertion_is_refused(ctx: Any) -> None:
    account = make_account()
    _activate(account)
    interaction = _sign_in("authentication")
    with refused("déjà été utilisée"):
        service.sign_in(interaction=interaction, response=recorded("authentication")["credential"])


def test_sign_in_challenge_of_another_interaction_is_refused(ctx: Any) -> None:
    account = make_account()
    _activate(account)
    mine, theirs = make_interaction(), make_interaction()
    challenges.keep("login", theirs.id, challenge_of("authentication"))
    with pytest.raises(BiometricRefused):
        service.sign_in(interaction=mine, response=recorded("authentication")["credential"])


@pytest.mark.parametrize("fixture", ["authentication_no_uv", "authentication_wrong_origin",
                                     "authentication_wrong_rp_id"])
def test_bad_assertion_is_refused_and_audited(ctx: Any, fixture: str) -> None:
    account = make_account()
    _activate(account)
    interaction = make_interaction()
    with pytest.raises(BiometricRefused):
        _sign_in(fixture, interaction)
    assert interactions.get(interaction.id).account_id is None  # type: ignore[union-attr]
    assert [e.account_id for e in _events("webauthn.sign_in_refused")] == [account.id]


def test_sign_count_regression_is_refused_audited_and_revokes(ctx: Any) -> None:
    account = make_account()
    credential = _activate(account)
    _sign_in("authentication")
    _sign_in("authentication_second")  # the phone is at 2
    with refused("copiée"):
        _sign_in("authentication_clone")  # a clone presents 1
    (event,) = _events("webauthn.sign_count_regression")
    assert event.account_id == account.id
    assert (event.data["stored"], event.data["received"]) == (2, 1)
    db.session.refresh(credential)
    assert credential.revoked_at is not None
    assert not service.has_usable_credential(account.id)


def test_changed_backup_eligibility_is_refused_and_audited(ctx: Any) -> None:
    account = make_account()
    _activate(account)
    with pytest.raises(BiometricRefused):
        _sign_in("authentication_backup_eligible")
    (event,) = _events("webauthn.backup_flag_changed")
    assert (event.data["registered"], event.data["received"]) == (False, True)


def test_expired_credential_is_refused_with_a_french_explanation(ctx: Any, clock: Any) -> None:
    account = make_account()
    _activate(account)
    clock.advance(settings().biometric_ttl)
    with pytest.raises(BiometricRefused) as refused:
        _sign_in("authentication")
    assert "Votre biométrie a expiré : elle est valable 6 mois" in refused.value.description
    assert "mot de passe" in refused.value.description
    assert not service.has_usable_credential(account.id)
    assert len(_events("webauthn.expired_credential_used")) == 1


def test_credential_is_still_usable_just_before_expiry(ctx: Any, clock: Any) -> None:
    account = make_account()
    _activate(account)
    clock.advance(settings().biometric_ttl - 1)
    assert _sign_in("authentication").account_id == account.id


def test_unknown_credential_is_refused(ctx: Any) -> None:
    with refused("pas reconnue"):
        _sign_in("authentication")
    assert len(_events("webauthn.unknown_credential")) == 1


def test_credential_of_another_account_is_refused_when_the_password_named_someone_else(ctx: Any) -> None:
    owner, someone = make_account(), make_account()
    _activate(owner)
    interaction = make_interaction(account=someone, amr=["pwd"])
    with pytest.raises(BiometricRefused):
        _sign_in("authentication", interaction)
    assert interactions.get(interaction.id).amr == ["pwd"]  # type: ignore[union-attr]


def test_revoked_credential_is_refused(ctx: Any) -> None:
    account = make_account()
    credential = _activate(account)
    assert service.revoke(account.id, credential.id)
    with refused("désactivée"):
        _sign_in("authentication")


def test_disabled_account_cannot_sign_in(ctx: Any) -> None:
    account = make_account()
    _activate(account)
    account.status = "disabled"
    db.session.commit()
    with pytest.raises(BiometricRefused):
        _sign_in("authentication")


# --- the offer rules -------------------------------------------------------------------------
def _after_login(account: Any, *, logins_before: int) -> Any:
    account.login_count = logins_before
    db.session.commit()
    return make_interaction(account=account, amr=["pwd", "mail"])


def test_no_offer_at_the_first_login(ctx: Any) -> None:
    account = make_account()
    assert not service.offer_due(_after_login(account, logins_before=0), account)


def test_offer_from_the_second_login(ctx: Any) -> None:
    account = make_account()
    assert service.offer_due(_after_login(account, logins_before=1), account)
    assert service.offer_due(_after_login(account, logins_before=7), account)


def test_a_finished_login_is_counted_so_the_next_one_gets_the_offer(ctx: Any) -> None:
    from idp.accounts.service import record_login

    account = make_account()
    assert not service.offer_due(make_interaction(account=account, amr=["pwd", "mail"]), account)
    record_login(account)  # what the login flow does when the first login is done
    assert service.login_number(account) == 2
    assert service.offer_due(make_interaction(account=account, amr=["pwd", "mail"]), account)


def test_no_offer_while_terms_are_pending(ctx: Any) -> None:
    from idp.accounts.service import accept_terms, publish_terms

    account = make_account()
    terms = publish_terms("2026-01", "Conditions générales d'utilisation", "Texte")
    interaction = _after_login(account, logins_before=3)
    assert not service.offer_due(interaction, account)
    accept_terms(account, terms)
    assert service.offer_due(interaction, account)


def test_never_again_after_ne_plus_me_rappeler(ctx: Any) -> None:
    account = make_account()
    interaction = _after_login(account, logins_before=1)
    service.record_offer_choice(interaction, account, "never")
    db.session.refresh(account)
    assert account.biometric_offer_optout is True
    assert not service.offer_due(_after_login(account, logins_before=5), account)
    assert len(_events("webauthn.offer_optout")) == 1


def test_plus_tard_ends_the_offer_for_this_login_only(ctx: Any) -> None:
    account = make_account()
    interaction = _after_login(account, logins_before=1)
    service.record_offer_choice(interaction, account, "later")
    assert not service.offer_due(interactions.get(interaction.id), account)  # type: ignore[arg-type]
    assert service.offer_due(_after_login(account, logins_before=2), account)


def test_no_offer_when_a_usable_credential_exists_and_again_once_it_expired(ctx: Any, clock: Any) -> None:
    account = make_account()
    _activate(account)
    assert not service.offer_due(_after_login(account, logins_before=2), account)
    clock.advance(settings().biometric_ttl)
    assert service.offer_due(_after_login(account, logins_before=3), account)


# --- management ------------------------------------------------------------------------------
def test_revoke_only_the_owners_credential(ctx: Any) -> None:
    owner, other = make_account(), make_account()
    credential = _activate(owner)
    assert not service.revoke(other.id, credential.id)
    assert service.revoke(owner.id, credential.id)
    assert not service.revoke(owner.id, credential.id)
    assert service.list_credentials(owner.id) == []


def test_account_deletion_cascades_to_its_credentials(ctx: Any) -> None:
    from idp.accounts.service import reset_account

    account = make_account()
    _activate(account)
    reset_account(account)
    assert db.session.scalars(select(WebAuthnCredential)).all() == []


def test_remove_all_deletes_every_credential_of_the_account(ctx: Any) -> None:
    account = make_account()
    _activate(account)
    assert service.remove_all(account.id) == 1
    assert not service.has_usable_credential(account.id)


@pytest.mark.parametrize(("agent", "label"), [
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36",
     "Chrome sur Android"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Version/17.5 Mobile/15E148 "
     "Safari/604.1", "Safari sur iPhone"),
    ("", "Navigateur sur appareil inconnu"),
])
def test_device_label_from_user_agent(agent: str, label: str) -> None:
    assert service.describe_device(agent) == label
