"""Activation, sign-in and management through the service, on recorded JSON, on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from idp.audit import AuditEvent
from idp.extensions import db, settings
from idp.webauthn import challenges, service
from idp.webauthn.models import WebAuthnCredential, as_utc
from idp.webauthn.service import BiometricRefused, Ceremony
from tests.webauthn.conftest import challenge_of, make_account, recorded


def ceremony(account: Any = None, *, for_web: bool = True) -> Ceremony:
    """A ceremony of a fresh login (its binding id), optionally for an account already identified."""
    return Ceremony(binding=uuid.uuid4().hex, client_id="rp-test", for_web=for_web,
                    account_id=account.id if account is not None else None)


def register(c: Ceremony, account: Any, response: Any, *, factors: int = 2) -> WebAuthnCredential:
    """finish_registration as the login area calls it, after a login that proved ``factors`` factors."""
    return service.finish_registration(ceremony=c, account=account, response=response, device_label="x",
                                       activation_factors=factors, activation_acr="eidas1")


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
    c = ceremony(account)
    challenges.keep("register", c.binding, challenge_of("registration"), account_id=account.id)
    return service.finish_registration(ceremony=c, account=account, response=recorded("registration")["credential"],
                                       device_label="Chrome sur Android", activation_factors=2,
                                       activation_acr="eidas1")


def _sign_in(name: str, c: Ceremony | None = None) -> WebAuthnCredential:
    c = c or ceremony()
    challenges.keep("login", c.binding, challenge_of(name))
    return service.verify_sign_in(ceremony=c, response=recorded(name)["credential"])


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
    options = service.start_registration(ceremony=ceremony(account), account=account, two_factor=False)
    assert [c["id"] for c in options["excludeCredentials"]] == [credential.credential_id]
    assert options["authenticatorSelection"]["userVerification"] == "required"


def test_replayed_activation_is_refused(ctx: Any) -> None:
    account = make_account()
    c = ceremony(account)
    challenges.keep("register", c.binding, challenge_of("registration"), account_id=account.id)
    response = recorded("registration")["credential"]
    register(c, account, response)
    with refused("déjà été utilisée"):
        register(c, account, response)


def test_activation_challenge_expires_by_the_clock(ctx: Any, clock: Any) -> None:
    account = make_account()
    c = ceremony(account)
    challenges.keep("register", c.binding, challenge_of("registration"), account_id=account.id)
    clock.advance(settings().webauthn_challenge_ttl)
    with pytest.raises(BiometricRefused):
        register(c, account, recorded("registration")["credential"])
    assert not service.has_usable_credential(account.id)


def test_activation_challenge_is_bound_to_the_account(ctx: Any) -> None:
    account, other = make_account(), make_account()
    c = ceremony(account)
    challenges.keep("register", c.binding, challenge_of("registration"), account_id=other.id)
    with pytest.raises(BiometricRefused):
        register(c, account, recorded("registration")["credential"])


@pytest.mark.parametrize("fixture", ["registration_no_uv", "registration_wrong_origin", "registration_wrong_rp_id"])
def test_bad_activation_is_refused_and_audited(ctx: Any, fixture: str) -> None:
    account = make_account()
    c = ceremony(account)
    challenges.keep("register", c.binding, challenge_of(fixture), account_id=account.id)
    with refused("L'activation de la biométrie n'a pas abouti"):
        register(c, account, recorded(fixture)["credential"])
    assert [e.account_id for e in _events("webauthn.activation_refused")] == [account.id]
    assert not service.has_usable_credential(account.id)


# --- sign-in ---------------------------------------------------------------------------------
def test_sign_in_names_the_credential_with_its_activation_level_and_advances_the_counter(ctx: Any,
                                                                                       clock: Any) -> None:
    account = make_account()
    credential = _activate(account)
    signed_in = _sign_in("authentication")
    assert signed_in.account_id == account.id
    assert (signed_in.activation_factors, signed_in.activation_acr) == (2, "eidas1")
    db.session.refresh(credential)
    assert credential.sign_count == 1
    assert as_utc(credential.last_used_at) == clock.now()
    assert [e.account_id for e in _events("webauthn.sign_in")] == [account.id]


def test_replayed_assertion_is_refused(ctx: Any) -> None:
    account = make_account()
    _activate(account)
    c = ceremony()
    _sign_in("authentication", c)
    with refused("déjà été utilisée"):
        service.verify_sign_in(ceremony=c, response=recorded("authentication")["credential"])


def test_sign_in_challenge_of_another_interaction_is_refused(ctx: Any) -> None:
    account = make_account()
    _activate(account)
    mine, theirs = ceremony(), ceremony()
    challenges.keep("login", theirs.binding, challenge_of("authentication"))
    with pytest.raises(BiometricRefused):
        service.verify_sign_in(ceremony=mine, response=recorded("authentication")["credential"])


@pytest.mark.parametrize("fixture", ["authentication_no_uv", "authentication_wrong_origin",
                                     "authentication_wrong_rp_id"])
def test_bad_assertion_is_refused_and_audited(ctx: Any, fixture: str) -> None:
    account = make_account()
    _activate(account)
    with pytest.raises(BiometricRefused):
        _sign_in(fixture)
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
    with pytest.raises(BiometricRefused):
        _sign_in("authentication", ceremony(someone))
    assert [e.account_id for e in _events("webauthn.sign_in_refused")] == [someone.id]


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


# --- the offer rules (the account's side; once per login is the login policy's) --------------------
def _after_login(account: Any, *, logins_before: int) -> Any:
    account.login_count = logins_before
    db.session.commit()
    return account


def test_no_offer_at_the_first_login(ctx: Any) -> None:
    account = make_account()
    assert not service.offer_due(_after_login(account, logins_before=0), for_web=True)


def test_offer_from_the_second_login(ctx: Any) -> None:
    account = make_account()
    assert service.offer_due(_after_login(account, logins_before=1), for_web=True)
    assert service.offer_due(_after_login(account, logins_before=7), for_web=True)


def test_a_finished_login_is_counted_so_the_next_one_gets_the_offer(ctx: Any) -> None:
    from idp.accounts.service import record_login

    account = make_account()
    assert not service.offer_due(account, for_web=True)
    record_login(account)  # what the login flow does when the first login is done
    assert service.login_number(account) == 2
    assert service.offer_due(account, for_web=True)


def test_no_offer_while_terms_are_pending(ctx: Any) -> None:
    from idp.accounts.service import accept_terms, publish_terms

    account = make_account()
    terms = publish_terms("2026-01", "Conditions générales d'utilisation", "Texte")
    _after_login(account, logins_before=3)
    assert not service.offer_due(account, for_web=True)
    accept_terms(account, terms)
    assert service.offer_due(account, for_web=True)


def test_never_again_after_ne_plus_me_rappeler(ctx: Any) -> None:
    account = make_account()
    _after_login(account, logins_before=1)
    service.opt_out(account, client_id="rp-test")
    db.session.refresh(account)
    assert account.biometric_offer_optout is True
    assert not service.offer_due(_after_login(account, logins_before=5), for_web=True)
    assert len(_events("webauthn.offer_optout")) == 1


def test_plus_tard_ends_the_offer_for_this_login_only(ctx: Any) -> None:
    from idp.login import policy
    from idp.login.interaction import Offer, interactions
    from tests.webauthn.conftest import make_interaction

    account = _after_login(make_account(), logins_before=1)
    interaction = make_interaction(account=account, amr=["pwd", "mail"])
    assert policy.offer_due(interaction, account)
    interaction.offer = Offer.LATER
    interactions.save(interaction)
    assert not policy.offer_due(interactions.get(interaction.id), account)  # type: ignore[arg-type]
    assert policy.offer_due(make_interaction(account=account, amr=["pwd", "mail"]), account)


def test_no_offer_when_a_usable_credential_exists_and_again_once_it_expired(ctx: Any, clock: Any) -> None:
    account = make_account()
    _activate(account)
    assert not service.offer_due(_after_login(account, logins_before=2), for_web=True)
    clock.advance(settings().biometric_ttl)
    assert service.offer_due(_after_login(account, logins_before=3), for_web=True)


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
