"""WebAuthn platform credentials: activation, sign-in, the offer rules and management (domain code).

The login area (policy, assurance, the biometric pages of :mod:`idp.login.biometric_views`) calls these
functions with plain values: the login's binding id (its interaction id) and client, the account, the level
the activation login proved, the browser's JSON. Nothing here reads the Flask request, and nothing imports
``idp.login`` or ``idp.oidc`` (import-linter contract in pyproject.toml).

Refusals raise :class:`BiometricRefused` with a French ``description`` (rendered as JSON
``error_description`` for the page's script); every refusal that may reveal an attack (unknown
credential, bad signature, counter regression, changed backup-eligibility flag) is audited.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, select, update
from sqlalchemy.exc import IntegrityError

from idp import audit
from idp.clock import paris_display
from idp.errors import IdpError
from idp.extensions import clock, db, settings
from idp.webauthn import ceremonies, challenges
from idp.webauthn.ceremonies import CeremonyError, CredentialRef
from idp.webauthn.models import WebAuthnCredential

if TYPE_CHECKING:
    from idp.accounts.models import Account

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ceremony:
    """The login a ceremony belongs to: its binding id (challenges are kept per binding), its client, and
    the account it already identified (None before the first factor)."""

    binding: str
    client_id: str
    for_web: bool  # web and federation clients: only credentials activated with two factors
    account_id: str | None = None

RETRY_PASSWORD = "Connectez-vous avec votre numéro de sécurité sociale et votre mot de passe."


class BiometricRefused(IdpError):
    """A biometric activation or sign-in was refused; ``description`` says what to do, in French."""

    code = "webauthn_refused"
    status = 400
    title = "Connexion avec la biométrie impossible"
    description = f"La connexion avec la biométrie n'a pas abouti. {RETRY_PASSWORD}"


def expiry_months() -> int:
    """How many months an activation lasts (``biometric_ttl``, seed: 6), for French sentences."""
    return max(1, round(settings().biometric_ttl / (30 * 24 * 3600)))


def expired_message() -> str:
    """The French explanation given when an expired credential is used."""
    months = expiry_months()
    return (f"Votre biométrie a expiré : elle est valable {months} mois après son activation. "
            "Connectez-vous avec votre mot de passe (et le code de sécurité si il vous est demandé), "
            "puis vous pourrez activer de nouveau la biométrie.")


CHALLENGE_MESSAGE = ("Le délai pour utiliser la biométrie est dépassé ou la demande a déjà été utilisée. "
                     "Merci de réessayer.")
UNKNOWN_MESSAGE = f"Cette biométrie n'est pas reconnue ou a été désactivée. {RETRY_PASSWORD}"
CLONED_MESSAGE = ("Par sécurité, cette biométrie a été désactivée car elle semble avoir été copiée sur un autre "
                  f"appareil. {RETRY_PASSWORD} Vous pourrez ensuite activer de nouveau la biométrie.")
APP_ONLY_MESSAGE = ("Cette biométrie a été activée depuis l'application sans code de sécurité : elle ne remplace pas "
                    "le code sur ce site. Connectez-vous avec votre mot de passe et le code de sécurité, puis vous "
                    "pourrez activer la biométrie pour ce site.")
ACTIVATION_MESSAGE = ("L'activation de la biométrie n'a pas abouti. Vérifiez que le verrouillage de votre téléphone "
                      "par empreinte digitale ou reconnaissance faciale est activé, puis réessayez.")


# --- queries ---------------------------------------------------------------------------------
def _usable_clause(now: datetime) -> Any:
    return and_(WebAuthnCredential.revoked_at.is_(None), WebAuthnCredential.expires_at > now)


def usable_credentials(account_id: str, *, for_web: bool = False) -> list[WebAuthnCredential]:
    """The account's credentials that are neither revoked nor expired, newest first (``for_web``: only
    those activated with two factors, the ones that may replace the security code)."""
    stmt = (select(WebAuthnCredential)
            .where(WebAuthnCredential.account_id == account_id, _usable_clause(clock().now()))
            .order_by(WebAuthnCredential.created_at.desc()))
    if for_web:
        stmt = stmt.where(WebAuthnCredential.activated_with_mfa.is_(True))
    return list(db.session.scalars(stmt))


def has_usable_credential(account_id: str, *, for_web: bool = False) -> bool:
    """True when the account has an unexpired, unrevoked platform credential; ``for_web``: one
    activated with two factors (a credential activated after a password-only login serves the app only)."""
    stmt = (select(WebAuthnCredential.id)
            .where(WebAuthnCredential.account_id == account_id, _usable_clause(clock().now())).limit(1))
    if for_web:
        stmt = stmt.where(WebAuthnCredential.activated_with_mfa.is_(True))
    return db.session.scalar(stmt) is not None


def list_credentials(account_id: str) -> list[WebAuthnCredential]:
    """Every unrevoked credential of the account (expired ones included, shown as such), newest first."""
    stmt = (select(WebAuthnCredential)
            .where(WebAuthnCredential.account_id == account_id, WebAuthnCredential.revoked_at.is_(None))
            .order_by(WebAuthnCredential.created_at.desc()))
    return list(db.session.scalars(stmt))


# --- the offer -------------------------------------------------------------------------------
def _pending_terms(account: Account) -> Any:
    from idp.accounts import service as accounts_service

    return accounts_service.pending_terms(account)


def login_number(account: Account) -> int:
    """Which login of the account the one in progress is (1 for the first).

    ``Account.login_count`` counts finished logins: the login flow counts this one when it is done
    (``idp.login.service.finish`` -> ``accounts.service.record_login``), after the offer step."""
    return (account.login_count or 0) + 1


def offer_due(account: Account, *, for_web: bool) -> bool:
    """True when the account may be offered biometrics at the end of a login (DESIGN.md §2).

    From the 2nd login on, only when nothing else is pending (terms to accept come first), never after
    "Ne plus me rappeler", and not when a usable credential exists (the login area adds: once per login)."""
    if account.biometric_offer_optout or login_number(account) < 2:
        return False
    if _pending_terms(account) is not None:
        return False
    return not has_usable_credential(account.id, for_web=for_web)


def opt_out(account: Account, *, client_id: str) -> None:
    """"Ne plus me rappeler": never offer biometrics to this account again."""
    account.biometric_offer_optout = True
    audit.record("webauthn.offer_optout", account_id=account.id, client_id=client_id, commit=False)
    db.session.commit()


# --- activation (registration) ---------------------------------------------------------------
def start_registration(*, ceremony: Ceremony, account: Account, two_factor: bool) -> dict[str, Any]:
    """Options for ``navigator.credentials.create()``; the challenge stays server-side."""
    s = settings()
    # Only usable credentials are excluded: an expired one on the same phone must not block re-activation,
    # nor an app-only one (activated without two factors) an activation that web clients will accept.
    exclude = [CredentialRef(credential_id=c.credential_id, transports=c.transports or ())
               for c in usable_credentials(account.id, for_web=two_factor)]
    options = ceremonies.registration_options(
        rp_id=s.rp_id, rp_name=s.webauthn_rp_name, user_handle=account.id.encode(),
        user_name="Mon compte ameli", display_name="Mon compte ameli", exclude=exclude,
        require_attestation=s.webauthn_require_attestation, timeout_ms=s.webauthn_challenge_ttl * 1000)
    challenges.keep("register", ceremony.binding, options.challenge, account_id=account.id)
    return options.public_key


def _attestation_roots() -> list[bytes]:
    path = settings().webauthn_attestation_roots
    if not path:
        return []
    with open(path, "rb") as fh:
        bundle = fh.read()
    return [m.group(0) for m in re.finditer(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", bundle, re.S)]


def finish_registration(*, ceremony: Ceremony, account: Account, response: Mapping[str, Any], device_label: str,
                        activation_factors: int, activation_acr: str) -> WebAuthnCredential:
    """Verify the browser's answer and store the credential, valid ``biometric_ttl`` from now, with the level
    its activation login proved (``activation_factors``, ``activation_acr``: a sign-in never yields more)."""
    challenge = challenges.take("register", ceremony.binding, account_id=account.id)
    if challenge is None:
        raise BiometricRefused(CHALLENGE_MESSAGE, detail="registration challenge missing, used or expired")
    s = settings()
    try:
        registered = ceremonies.verify_registration(
            response=response, challenge=challenge, rp_id=s.rp_id, origin=s.origin,
            require_attestation=s.webauthn_require_attestation, attestation_roots=_attestation_roots())
    except CeremonyError as exc:
        audit.record("webauthn.activation_refused", account_id=account.id, reason=exc.reason[:200])
        raise BiometricRefused(ACTIVATION_MESSAGE, detail=exc.reason) from exc
    taken = db.session.scalar(select(WebAuthnCredential.id)
                              .where(WebAuthnCredential.credential_id == registered.credential_id))
    if taken is not None:
        _refuse_duplicate(account)
    now = clock().now()
    with_mfa = activation_factors >= 2
    credential = WebAuthnCredential(
        account_id=account.id, credential_id=registered.credential_id, public_key=registered.public_key,
        sign_count=registered.sign_count, backup_eligible=registered.backup_eligible,
        backup_state=registered.backup_state, transports=registered.transports, aaguid=registered.aaguid,
        attestation_format=registered.attestation_format, device_label=device_label[:120] or "Appareil",
        created_at=now, expires_at=now + timedelta(seconds=s.biometric_ttl), activated_with_mfa=with_mfa,
        activation_acr=activation_acr)
    db.session.add(credential)
    try:
        db.session.flush()
    except IntegrityError:  # the same credential id registered in parallel (unique index)
        db.session.rollback()
        _refuse_duplicate(account)
    audit.record("webauthn.activated", account_id=account.id, client_id=ceremony.client_id, commit=False,
                 credential=credential.id, aaguid=registered.aaguid, backup_eligible=registered.backup_eligible,
                 with_mfa=with_mfa, acr=activation_acr)
    db.session.commit()
    notify_activation(account, credential)
    return credential


def _refuse_duplicate(account: Account) -> None:
    audit.record("webauthn.activation_refused", account_id=account.id, reason="credential id already registered")
    raise BiometricRefused(ACTIVATION_MESSAGE, detail="credential id already registered")


def notify_activation(account: Account, credential: WebAuthnCredential) -> bool:
    """E-mail the account's owner that biometrics were activated (an activation they did not make is a
    sign of a stolen password). Best effort: a mail that cannot be sent does not undo the activation."""
    from idp.notify.mail import MailNotSent, send_mail

    if not account.email:
        return False
    try:
        send_mail(account.email, "Mon compte ameli : biométrie activée", "webauthn_activated",
                  device=credential.device_label, when=paris_display(clock().now()), months=expiry_months())
    except MailNotSent:
        log.warning("biometric activation notice not sent", extra={"account_id": account.id})
        return False
    return True


# --- sign-in (authentication) ----------------------------------------------------------------
def start_authentication(*, ceremony: Ceremony, account_id: str | None = None) -> dict[str, Any]:
    """Options for ``navigator.credentials.get()``: the account's credentials when it is known
    (remembered NIR, or password already given), else a discoverable-credential request."""
    allow: list[CredentialRef] = []
    if account_id is not None:
        allow = [CredentialRef(credential_id=c.credential_id, transports=c.transports or ())
                 for c in usable_credentials(account_id)]
    s = settings()
    options = ceremonies.authentication_options(rp_id=s.rp_id, allow=allow, timeout_ms=s.webauthn_challenge_ttl * 1000)
    challenges.keep("login", ceremony.binding, options.challenge)
    return options.public_key


def _find(credential_id: str) -> WebAuthnCredential | None:
    return db.session.scalar(select(WebAuthnCredential).where(WebAuthnCredential.credential_id == credential_id))


def verify_sign_in(*, ceremony: Ceremony, response: Mapping[str, Any]) -> WebAuthnCredential:
    """Check an assertion against the stored credential; return it updated, or raise BiometricRefused.

    Order matters: the challenge is consumed first (a replay fails even if everything else is
    right), the signature is checked before anything is said about the credential's state, and the
    counter is advanced with a conditional UPDATE so that two clones racing cannot both pass."""
    challenge = challenges.take("login", ceremony.binding)
    if challenge is None:
        raise BiometricRefused(CHALLENGE_MESSAGE, detail="login challenge missing, used or expired")
    try:
        credential = _find(ceremonies.credential_id_of(response))
    except CeremonyError as exc:
        raise BiometricRefused(detail=exc.reason) from exc
    if credential is None:
        audit.record("webauthn.unknown_credential", client_id=ceremony.client_id)
        raise BiometricRefused(UNKNOWN_MESSAGE, detail="unknown credential id")
    s = settings()
    try:
        assertion = ceremonies.verify_authentication(response=response, challenge=challenge, rp_id=s.rp_id,
                                                     origin=s.origin, public_key=credential.public_key)
    except CeremonyError as exc:
        audit.record("webauthn.sign_in_refused", account_id=credential.account_id, client_id=ceremony.client_id,
                     credential=credential.id, reason=exc.reason[:200])
        raise BiometricRefused(detail=exc.reason) from exc
    _check_state(ceremony, credential, assertion)
    return _advance(ceremony, credential, assertion)


def _refuse_and_revoke(ceremony: Ceremony, credential: WebAuthnCredential, event: str, **data: Any) -> None:
    credential.revoked_at = clock().now()
    audit.record(event, account_id=credential.account_id, client_id=ceremony.client_id, commit=False,
                 credential=credential.id, **data)
    db.session.commit()
    log.warning("webauthn credential revoked", extra={"event": event, "credential": credential.id})
    raise BiometricRefused(CLONED_MESSAGE, detail=event)


def _check_state(ceremony: Ceremony, credential: WebAuthnCredential,
                 assertion: ceremonies.VerifiedAssertion) -> None:
    if credential.revoked_at is not None:
        audit.record("webauthn.revoked_credential_used", account_id=credential.account_id,
                     client_id=ceremony.client_id, credential=credential.id)
        raise BiometricRefused(UNKNOWN_MESSAGE, detail="revoked credential")
    if not credential.usable_at(clock().now()):
        audit.record("webauthn.expired_credential_used", account_id=credential.account_id,
                     client_id=ceremony.client_id, credential=credential.id)
        raise BiometricRefused(expired_message(), detail="expired credential")
    if ceremony.for_web and not credential.activated_with_mfa:
        # Activated after a password-only login (the app): it must not replace the code on the web.
        audit.record("webauthn.sign_in_refused", account_id=credential.account_id, client_id=ceremony.client_id,
                     credential=credential.id, reason="credential activated without two factors")
        raise BiometricRefused(APP_ONLY_MESSAGE, detail="credential activated without two factors")
    if ceremony.account_id is not None and ceremony.account_id != credential.account_id:
        audit.record("webauthn.sign_in_refused", account_id=ceremony.account_id, client_id=ceremony.client_id,
                     reason="credential of another account")
        raise BiometricRefused(detail="credential of another account")
    if assertion.backup_eligible != credential.backup_eligible:
        # BE is fixed for a credential's life (WebAuthn L3 §6.1.3): a change means another key store.
        _refuse_and_revoke(ceremony, credential, "webauthn.backup_flag_changed",
                           registered=credential.backup_eligible, received=assertion.backup_eligible)
    if _regressed(credential.sign_count, assertion.sign_count):
        _refuse_and_revoke(ceremony, credential, "webauthn.sign_count_regression",
                           stored=credential.sign_count, received=assertion.sign_count)
    _check_account(credential.account_id)


def _regressed(stored: int, received: int) -> bool:
    """WebAuthn L2 §7.2 step 21: a counter that does not grow means a possible clone (0/0: no counter)."""
    return (stored > 0 or received > 0) and received <= stored


def _check_account(account_id: str) -> None:
    from idp.accounts.models import Account
    from idp.mfa.limits import account_lock

    account = db.session.get(Account, account_id)
    if account is None or not account.is_active:
        raise BiometricRefused(detail="account missing or disabled")
    lock = account_lock(account_id)
    if lock.locked and lock.until is not None:
        raise BiometricRefused(f"L'accès au service est bloqué jusqu'au {paris_display(lock.until)} (heure de Paris).",
                               detail="account locked")


def _advance(ceremony: Ceremony, credential: WebAuthnCredential,
             assertion: ceremonies.VerifiedAssertion) -> WebAuthnCredential:
    now = clock().now()
    stored = credential.sign_count
    result = db.session.execute(
        update(WebAuthnCredential)
        .where(WebAuthnCredential.id == credential.id, WebAuthnCredential.revoked_at.is_(None),
               # 0 -> 0 is an authenticator without a counter; anything else must grow.
               WebAuthnCredential.sign_count == 0 if assertion.sign_count == 0
               else WebAuthnCredential.sign_count < assertion.sign_count)
        .values(sign_count=assertion.sign_count, backup_state=assertion.backup_state, last_used_at=now)
        .execution_options(synchronize_session=False))
    if getattr(result, "rowcount", 1) != 1:
        db.session.rollback()
        _refuse_and_revoke(ceremony, credential, "webauthn.sign_count_regression",
                           stored=stored, received=assertion.sign_count, concurrent=True)
    audit.record("webauthn.sign_in", account_id=credential.account_id, client_id=ceremony.client_id,
                 commit=False, credential=credential.id)
    db.session.commit()
    db.session.refresh(credential)
    return credential


# --- management ------------------------------------------------------------------------------
def revoke(account_id: str, credential_pk: int) -> bool:
    """Revoke one of the account's credentials; False when it is not theirs or already revoked."""
    credential = db.session.get(WebAuthnCredential, credential_pk)
    if credential is None or credential.account_id != account_id or credential.revoked_at is not None:
        return False
    credential.revoked_at = clock().now()
    audit.record("webauthn.revoked", account_id=account_id, commit=False, credential=credential.id)
    db.session.commit()
    return True


def revoke_all(account_id: str, *, reason: str, commit: bool = True) -> int:
    """Revoke every unrevoked credential of the account (password change or reset: whoever had the
    password could have activated their own phone, which replaces the password on the app); audited;
    returns how many were revoked."""
    result = db.session.execute(
        update(WebAuthnCredential)
        .where(WebAuthnCredential.account_id == account_id, WebAuthnCredential.revoked_at.is_(None))
        .values(revoked_at=clock().now())
        .execution_options(synchronize_session="fetch"))
    count = int(getattr(result, "rowcount", 0) or 0)
    if count:
        audit.record("webauthn.revoked_all", account_id=account_id, commit=False, count=count, reason=reason)
    if commit:
        db.session.commit()
    return count


def revoke_on_password_change(account_id: str, **_: Any) -> None:
    """Lifecycle receiver (password changed): whoever had the password could have activated their own phone."""
    revoke_all(account_id, reason="password_changed")


def revoke_on_disable(account_id: str, **_: Any) -> None:
    """Lifecycle receiver (account disabled): an account is disabled when it is thought taken over, and whoever
    held it could have activated their own phone; enabling it gives nothing back (the person activates again)."""
    revoke_all(account_id, reason="account_disabled")


def remove_all(account_id: str, *, commit: bool = True) -> int:
    """Delete every credential of the account (advisor reset); returns how many were removed."""
    rows = list(db.session.scalars(select(WebAuthnCredential).where(WebAuthnCredential.account_id == account_id)))
    for row in rows:
        db.session.delete(row)
    if rows:
        audit.record("webauthn.removed_all", account_id=account_id, commit=False, count=len(rows))
    if commit:
        db.session.commit()
    return len(rows)


_PLATFORMS = (("Android", "Android"), ("iPhone", "iPhone"), ("iPad", "iPad"), ("Windows", "Windows"),
              ("Macintosh", "Mac"), ("CrOS", "Chromebook"), ("Linux", "Linux"))
_BROWSERS = (("Edg/", "Edge"), ("SamsungBrowser", "Samsung Internet"), ("Firefox/", "Firefox"),
             ("Chrome/", "Chrome"), ("Safari/", "Safari"))


def describe_device(user_agent: str) -> str:
    """A short French label for the management page, from the User-Agent ("Chrome sur Android")."""
    platform = next((label for token, label in _PLATFORMS if token in user_agent), "appareil inconnu")
    browser = next((label for token, label in _BROWSERS if token in user_agent), "Navigateur")
    return f"{browser} sur {platform}"
