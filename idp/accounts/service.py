"""The accounts service: the API other areas use (login, oidc, webauthn) and the lifecycle operations.

Agreed interface: :func:`find_account`, :func:`authenticate`, :func:`masked_email`,
:func:`pending_terms`, :func:`accept_terms`, :func:`set_password`, :func:`check_password_rules`,
:func:`reset_account`, :func:`start_email_verification`, :func:`confirm_email`.

Domain code only: no Flask request here. NIRs are looked up by keyed HMAC and stored encrypted;
they are never logged nor written to audit events (accounts are named by their opaque id).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, cast

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from idp import audit, lifecycle
from idp.accounts import codes
from idp.accounts.models import Account, TermsAcceptance, TermsVersion, grants_cutoff_now
from idp.accounts.passwords import check_password_rules as _check_rules
from idp.accounts.passwords import hash_password, needs_rehash, verify_password
from idp.clock import paris_display
from idp.crypto import decrypt, encrypt, lookup_hmac
from idp.errors import BadRequest, IdpError, TooManyRequests
from idp.extensions import clock, db, settings
from idp.mfa import limits
from idp.nir import InvalidNir, Nir

if TYPE_CHECKING:
    from idp.rfi_adapter.base import Identity

log = logging.getLogger(__name__)

EMAIL_CODE = "email"  # codes.issue kind of e-mail validation codes
ACCOUNT_STATUSES = frozenset({"active", "disabled"})  # Account.status; only "active" can sign in


class PasswordRejected(BadRequest):
    """The new password breaks a rule; ``reasons`` are French sentences for the form."""

    code = "password_rejected"

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(" ".join(reasons), detail="password rules")
        self.reasons = reasons


class AccountDisabled(IdpError):
    """A disabled account is not reset: resetting would let its person (or whoever took it over) create an
    active account again without anyone enabling it."""

    code = "account_disabled"
    status = 409
    title = "Compte désactivé"
    description = ("Ce compte est désactivé : il doit être réactivé avant d'être réinitialisé "
                   "(« Réactiver le compte »).")


class AccountExists(IdpError):
    """An account already exists for this identity (one account per person)."""

    code = "account_exists"
    status = 409
    title = "Compte existant"
    description = ("Un compte existe déjà pour ce numéro de sécurité sociale. Connectez-vous, ou utilisez "
                   "« Mot de passe oublié » si vous ne vous en souvenez plus.")


class EmailCodeQuotaExceeded(TooManyRequests):
    """Too many e-mail codes requested (seed: 5 per sliding hour, then blocked 1 hour)."""

    code = "email_code_quota"

    def __init__(self, until_display: str) -> None:
        super().__init__("Le nombre maximum de demandes de code a été atteint. L'accès au service est bloqué "
                         f"jusqu'au {until_display} (heure de Paris).", detail="email code quota")


# --- look-up ------------------------------------------------------------------------------------
def _as_nir(nir: Nir | str) -> Nir | None:
    if isinstance(nir, Nir):
        return nir
    try:
        return Nir.parse(nir)
    except InvalidNir:
        return None


def nir_hmac(nir: Nir) -> str:
    """The keyed look-up hash stored in ``accounts.nir_hmac`` (and ``rfi_records.nir_hmac``)."""
    return lookup_hmac(nir.value)


def find_account(nir: Nir | str) -> Account | None:
    """The account of this NIR (any accepted spelling), or None (unknown or malformed NIR)."""
    parsed = _as_nir(nir)
    if parsed is None:
        return None
    return db.session.scalar(select(Account).where(Account.nir_hmac == nir_hmac(parsed)))


def get_account(account_id: str) -> Account | None:
    """The account with this opaque id, or None."""
    return db.session.get(Account, account_id)


def account_nir(account: Account) -> Nir:
    """The account's NIR, decrypted (for display to its owner or an operator; never log it)."""
    return Nir(decrypt(account.nir_enc, "nir"))


def identity_of(account: Account) -> Identity:
    """The account's RFI identity; raises IdentityNotFound or RegistryUnavailable (fail closed)."""
    return identity_of_nir(account_nir(account))


def identity_of_nir(nir: Nir) -> Identity:
    """The RFI identity of ``nir``; raises IdentityNotFound or RegistryUnavailable."""
    from idp.rfi_adapter import get_rfi

    return get_rfi().lookup(nir)


# --- passwords ----------------------------------------------------------------------------------
def check_password_rules(password: str, nir: Nir | None = None) -> list[str]:
    """French reasons why ``password`` is refused (empty list: accepted)."""
    return _check_rules(password, nir=nir.value if nir else None)


def authenticate(nir: Nir | str, password: str) -> Account | None:
    """The active account when NIR and password match, else None (same answer and same cost for an
    unknown NIR, a wrong password or a disabled account: a dummy hash is verified).

    Upgrades the hash when the argon2 parameters changed. Lock counters are the caller's business."""
    return check_password(find_account(nir), password)


def check_password(account: Account | None, password: str) -> Account | None:
    """:func:`authenticate` for an account already looked up (None: unknown NIR, a dummy hash is verified)."""
    stored = account.password_hash if account is not None else None
    if not verify_password(stored, password) or account is None or not account.is_active:
        return None
    if stored is not None and needs_rehash(stored):
        account.password_hash = hash_password(password)
        db.session.commit()
        log.info("password hash upgraded", extra={"account_id": account.id})
    return account


def set_password(account: Account, password: str, *, keep_session: str | None = None) -> None:
    """Check the rules, store a new hash, then publish :data:`idp.lifecycle.password_changed`: its subscribers
    end every browser session but ``keep_session`` and every login in flight, and revoke the WebAuthn
    credentials, trusted browsers, refresh-token families, access tokens and reset links of the account.

    Raises :class:`PasswordRejected` with the French reasons."""
    reasons = check_password_rules(password, account_nir(account))
    if reasons:
        raise PasswordRejected(reasons)
    account.password_hash = hash_password(password)
    account.password_changed_at = clock().now()
    account.grants_not_before = grants_cutoff_now(account.password_changed_at)
    audit.record("account.password_changed", account_id=account.id, commit=False)
    db.session.commit()
    lifecycle.password_changed.send(account.id, keep_session=keep_session)


def record_login(account: Account, *, commit: bool = True) -> None:
    """Count a finished login (the biometric offer starts from the 2nd one); ``commit=False``: the caller commits."""
    account.login_count = (account.login_count or 0) + 1
    account.last_login_at = clock().now()
    if commit:
        db.session.commit()


# --- creation and reset -------------------------------------------------------------------------
def create_account(nir: Nir, password: str, *, email: str | None = None, email_validated: bool = False,
                   phone: str | None = None) -> Account:
    """Create the one account of this identity; raises :class:`AccountExists` or :class:`PasswordRejected`."""
    reasons = check_password_rules(password, nir)
    if reasons:
        raise PasswordRejected(reasons)
    if find_account(nir) is not None:
        raise AccountExists(detail="duplicate nir_hmac")
    now = clock().now()
    account = Account(nir_hmac=nir_hmac(nir), nir_enc=encrypt(nir.value, "nir"),
                      email=normalise_email(email) if email else None, email_validated=bool(email and email_validated),
                      phone=phone, password_hash=hash_password(password), status="active", created_at=now,
                      password_changed_at=now, login_count=0, biometric_offer_optout=False)
    db.session.add(account)
    try:
        db.session.flush()
    except IntegrityError:  # a parallel creation of the same identity won the unique index
        db.session.rollback()
        raise AccountExists(detail="duplicate nir_hmac (race)") from None
    audit.record("account.created", account_id=account.id, commit=False, email_validated=account.email_validated)
    db.session.commit()
    return account


def reset_account(account: Account, *, actor: str = "advisor") -> None:
    """Advisor reset: delete the account; the database cascades remove its credentials, trusted browsers,
    terms acceptances and tokens (``ondelete=CASCADE``); then :data:`idp.lifecycle.account_reset` is
    published: browser sessions and logins in flight end, access tokens (Redis) are revoked, locks and
    quotas are cleared, pending codes and reset links are forgotten. The audit trail and the RFI identity
    are kept. A disabled account is refused (:class:`AccountDisabled`): enable it first."""
    if not account.is_active:
        raise AccountDisabled(detail="reset of a disabled account")
    account_id = account.id
    db.session.delete(account)
    audit.record("account.reset", account_id=account_id, commit=False, actor=actor)
    db.session.commit()
    lifecycle.account_reset.send(account_id)


def set_status(account: Account, status: str, *, actor: str = "advisor") -> bool:
    """Disable (``"disabled"``) or enable again (``"active"``) an account; False when it already had that
    status (nothing changed, nothing audited).

    Disabling commits the status and the account's cut-off (``grants_not_before``: no grant from an earlier
    login is honoured any more, wherever it is checked) with its audit event, then publishes
    :data:`idp.lifecycle.account_disabled`: browser sessions and logins in flight end, refresh-token
    families and access tokens are revoked, reset links are forgotten. Disabling an account already
    disabled publishes it again (a clean-up interrupted by an outage is finished by running the command
    again). WebAuthn credentials and trusted browsers are revoked too (whoever held the account may have enrolled
    their own). Enabling gives nothing back: the person signs in again with the password and the e-mailed code,
    and activates biometrics again."""
    if status not in ACCOUNT_STATUSES:
        raise ValueError(f"unknown account status: {status!r}")
    changed = account.status != status
    if changed:
        account.status = status
        if status == "disabled":
            account.grants_not_before = grants_cutoff_now(clock().now())
        audit.record("account.disabled" if status == "disabled" else "account.enabled", account_id=account.id,
                     commit=False, actor=actor)
        db.session.commit()
    if status == "disabled":
        lifecycle.account_disabled.send(account.id)
    return changed


def forget_account_state(account_id: str, **_: object) -> None:
    """Lifecycle receiver (account reset): locks, quotas and pending e-mail validation codes."""
    limits.unlock_account(account_id)
    codes.discard(EMAIL_CODE, account_id)


# --- e-mail -------------------------------------------------------------------------------------
def normalise_email(email: str) -> str:
    """Trimmed, domain lower-cased (the local part is case-sensitive in theory, not in practice: keep it)."""
    local, _, domain = email.strip().rpartition("@")
    return f"{local}@{domain.lower()}"


def email_error(address: str) -> str | None:
    """Why ``address`` cannot be an account's e-mail (French), or None."""
    if "@" not in address or len(address) > 254 or " " in address or "." not in address.rpartition("@")[2]:
        return "Saisissez une adresse e-mail valide, par exemple nom@exemple.fr."
    return None


def masked_email(email: str | None) -> str:
    """``alice@gmail.com`` -> ``a***@g***.com`` (seed wording), enough for its owner to recognise it."""
    if not email or "@" not in email:
        return ""
    local, _, domain = email.rpartition("@")
    name, dot, tld = domain.rpartition(".")
    if not dot:
        name, tld = domain, ""
    return f"{local[:1]}***@{name[:1]}***{'.' + tld if tld else ''}"


def send_email_code(subject: str, email: str, *, quota_subject: str | None = None) -> None:
    """Send a 6-digit validation code to ``email`` for ``subject`` (an account id or a creation flow).

    The seed's quota applies (5 per sliding hour, then blocked 1 hour); a mail that could not be sent
    gives its unit back and raises MailNotSent."""
    from idp.notify.mail import MailNotSent, send_mail

    s = settings()
    quota_key = quota_subject or subject
    result = limits.take_quota("email-verify", quota_key, quota=s.email_code_quota,
                               window=s.email_code_quota_window, block=s.email_code_quota_block)
    if not result.allowed:
        audit.record("email_code.quota_reached", account_id=_account_id_or_none(subject))
        raise EmailCodeQuotaExceeded(paris_display(result.blocked_until or clock().now()))
    code = codes.issue(EMAIL_CODE, subject, digits=6, ttl=s.email_code_ttl, bound_to=normalise_email(email))
    try:
        send_mail(normalise_email(email), "Mon compte ameli : code de sécurité pour valider votre adresse e-mail",
                  "email_verification", code=code, minutes=s.email_code_ttl // 60)
    except MailNotSent:
        codes.discard(EMAIL_CODE, subject)
        if result.ticket:
            limits.give_back_quota("email-verify", quota_key, result.ticket)
        raise
    audit.record("email_code.sent", account_id=_account_id_or_none(subject), email=masked_email(email))


def check_email_code(subject: str, email: str, code: str) -> bool:
    """True once for the right code sent to ``email`` for ``subject`` (wrong tries are limited)."""
    check = codes.verify(EMAIL_CODE, subject, code, max_tries=settings().max_failed_attempts,
                         bound_to=normalise_email(email))
    audit.record("email_code.checked", account_id=_account_id_or_none(subject), outcome=check.outcome)
    return check.ok


def _account_id_or_none(subject: str) -> str | None:
    return None if subject.startswith("flow:") else subject


def start_email_verification(account: Account, email: str) -> None:
    """Send a 6-digit code to ``email`` so that the account's owner proves they read it."""
    send_email_code(account.id, email)


def confirm_email(account: Account, email: str, code: str) -> bool:
    """Check the code; on success the account's e-mail becomes ``email``, validated."""
    if not check_email_code(account.id, email, code):
        return False
    previous = account.email if account.email_validated else None
    account.email = normalise_email(email)
    account.email_validated = True
    audit.record("account.email_validated", account_id=account.id, commit=False)
    db.session.commit()
    if previous != account.email:
        lifecycle.email_changed.send(account.id, previous=previous, current=account.email)
    return True


def tell_previous_address(account_id: str, *, previous: str | None = None, current: str | None = None,
                          **_: object) -> None:
    """Lifecycle receiver (e-mail changed): the address validated before is told, in French (an address
    changed by whoever has only the password must not go unnoticed). Best effort."""
    from idp.notify.mail import MailNotSent, send_mail

    if not previous:
        return
    try:
        send_mail(previous, "Mon compte ameli : votre adresse e-mail a été modifiée", "email_changed",
                  masked=masked_email(current), when=paris_display(clock().now()))
    except MailNotSent:
        log.warning("e-mail change notice not sent", extra={"account_id": account_id})
        return
    audit.record_in_request("account.email_change_notified", account_id=account_id)


# --- terms of use -------------------------------------------------------------------------------
TERMS_CACHE_SECONDS = 5.0  # how long a worker trusts its answer to "which terms version is the newest"


def _terms_cache() -> dict[str, tuple[float, int | None]]:
    """This application's per-process cache of the newest terms version's id (tests build many apps)."""
    from flask import current_app

    return cast("dict[str, tuple[float, int | None]]", current_app.extensions.setdefault("idp.terms_cache", {}))


def latest_terms_id() -> int | None:
    """The id of the newest published terms version (None: none yet).

    A login asks at every step; the answer is kept by the worker for :data:`TERMS_CACHE_SECONDS` (one query
    per worker and period instead of one per step) and dropped at once by :func:`publish_terms` in this
    process. Another worker (or a publication from the CLI) is seen at most that long after: the accounts
    that finish a login meanwhile accept the new version at their next login, as any account does."""
    cache = _terms_cache()
    cached = cache.get("latest")
    if cached is not None and time.monotonic() - cached[0] < TERMS_CACHE_SECONDS:
        return cached[1]
    found = db.session.scalar(select(TermsVersion.id).order_by(TermsVersion.published_at.desc(),
                                                               TermsVersion.id.desc()).limit(1))
    cache["latest"] = (time.monotonic(), found)
    return found


def latest_terms() -> TermsVersion | None:
    """The newest published terms version."""
    terms_id = latest_terms_id()
    return db.session.get(TermsVersion, terms_id) if terms_id is not None else None


def pending_terms(account: Account) -> TermsVersion | None:
    """The newest terms version the account has not accepted yet, or None."""
    terms_id = latest_terms_id()
    if terms_id is None:
        return None
    if db.session.get(TermsAcceptance, (account.id, terms_id)) is not None:
        return None
    return db.session.get(TermsVersion, terms_id)


def accept_terms(account: Account, terms: TermsVersion) -> None:
    """Record that the account accepted ``terms`` (idempotent)."""
    if db.session.get(TermsAcceptance, (account.id, terms.id)) is None:
        db.session.add(TermsAcceptance(account_id=account.id, terms_id=terms.id, accepted_at=clock().now()))
        audit.record("terms.accepted", account_id=account.id, commit=False, version=terms.version)
        db.session.commit()


def publish_terms(version: str, title: str, body: str) -> TermsVersion:
    """Publish a new terms version: every account accepts it at its next login."""
    terms = TermsVersion(version=version, title=title, body=body, published_at=clock().now())
    db.session.add(terms)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise BadRequest(f"La version {version} existe déjà.", detail="duplicate terms version") from None
    audit.record("terms.published", commit=False, version=version)
    db.session.commit()
    _terms_cache().pop("latest", None)  # this worker's next login asks for it again
    return terms
