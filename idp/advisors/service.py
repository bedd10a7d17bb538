"""Staff accounts of the advisors' console: creation by an operator, enrolment, sign-in.

- :func:`create_advisor` (``idp advisors create``) stores the advisor and returns a one-time enrolment token
  (only its hash is kept; valid ``advisor_enrolment_ttl``);
- :func:`begin_enrolment` takes the token (single use) and sets the password (argon2id, stricter length);
  the enrolment then registers a WebAuthn credential — a security key or a platform credential, user
  verification required (:mod:`idp.webauthn.ceremonies`): phishing-resistant, bound to this origin;
- :func:`check_password` then :func:`start_key_sign_in` / :func:`finish_key_sign_in`: both factors, always.
  Wrong passwords lock the advisor like a person (atomic counters of :mod:`idp.mfa.limits`);
- :func:`set_disabled` (``idp advisors disable|enable``): a disabled advisor's sessions end at once and every
  sign-in step refuses them.

Domain code: no Flask request here. Every step is audited under ``advisor.*`` with the advisor's opaque id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from idp import audit
from idp.accounts.passwords import check_password_rules, hash_password, verify_password
from idp.advisors.models import ROLES, Advisor, AdvisorCredential
from idp.clock import paris_display
from idp.crypto import hash_token, lookup_hmac, new_token
from idp.errors import BadRequest, IdpError
from idp.extensions import clock, db, settings
from idp.mfa import limits
from idp.webauthn import ceremonies, challenges
from idp.webauthn.ceremonies import CeremonyError, CredentialRef
from idp.webauthn.models import as_utc

WRONG = "Les informations saisies sont erronées. Merci de vérifier votre saisie."


class AdvisorExists(BadRequest):
    """An advisor with this e-mail already exists."""

    code = "advisor_exists"


class EnrolmentInvalid(IdpError):
    """The enrolment link is unknown, used or expired."""

    code = "enrolment_invalid"
    status = 400
    title = "Lien d'inscription invalide"
    description = ("Ce lien d'inscription n'est pas ou plus valable (il ne sert qu'une fois et expire). "
                   "Demandez un nouveau lien à l'administrateur de l'Espace conseiller.")


class KeyRefused(IdpError):
    """A security-key ceremony failed; ``description`` is shown by the page's script."""

    code = "advisor_key_refused"
    status = 400
    title = "Clé de sécurité refusée"
    description = ("La clé de sécurité n'a pas été reconnue ou la demande a expiré. Merci de recommencer "
                   "la connexion.")


@dataclass(frozen=True, kw_only=True)
class PasswordCheck:
    """Outcome of the password step: the advisor when right; else the French alert."""

    advisor: Advisor | None
    message: str = ""


def normalise_email(email: str) -> str:
    """Staff e-mails compare case-insensitively."""
    return email.strip().lower()


def find_by_email(email: str) -> Advisor | None:
    """The advisor with this e-mail, or None."""
    return db.session.scalar(select(Advisor).where(Advisor.email == normalise_email(email)))


def get(advisor_id: str) -> Advisor | None:
    """The advisor with this id, or None."""
    return db.session.get(Advisor, advisor_id)


def _issue_link(advisor: Advisor) -> str:
    token = new_token(32)
    advisor.enrolment_token_hash = hash_token(token)
    advisor.enrolment_expires_at = clock().now() + timedelta(seconds=settings().advisor_enrolment_ttl)
    return token


def create_advisor(email: str, role: str) -> tuple[Advisor, str]:
    """Store a new advisor and return it with its one-time enrolment token (shown once to the operator).

    An advisor created but not enrolled yet gets a new link instead (the old one stops working)."""
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}", detail="unknown role")
    address = normalise_email(email)
    if "@" not in address or len(address) > 254:
        raise BadRequest("invalid e-mail address", detail="advisor e-mail")
    advisor = find_by_email(address)
    if advisor is not None and advisor.disabled_at is not None:
        raise AdvisorExists("this advisor is disabled: 'idp advisors enable' first", detail="disabled advisor")
    if advisor is not None and advisor.enrolled_at is not None:
        raise AdvisorExists("an enrolled advisor already has this e-mail", detail="duplicate advisor")
    if advisor is None:
        advisor = Advisor(email=address, role=role, source="local", created_at=clock().now())
        db.session.add(advisor)
    advisor.role = role
    token = _issue_link(advisor)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise AdvisorExists("an advisor already has this e-mail", detail="duplicate advisor (race)") from None
    audit.record("advisor.created", commit=False, advisor=advisor.id, role=role)
    db.session.commit()
    return advisor, token


def enrolment_advisor(token: str) -> Advisor:
    """The advisor whose live enrolment link this is; raises :class:`EnrolmentInvalid`."""
    advisor = None
    if token and len(token) <= 128:
        advisor = db.session.scalar(select(Advisor).where(Advisor.enrolment_token_hash == hash_token(token)))
    if advisor is None or advisor.enrolment_expires_at is None or advisor.disabled_at is not None \
            or as_utc(advisor.enrolment_expires_at) <= clock().now():
        raise EnrolmentInvalid(detail="enrolment token unknown, used or expired")
    return advisor


def staff_password_reasons(password: str) -> list[str]:
    """The people's password rules, with the staff minimum length."""
    s = settings()
    reasons = [r for r in check_password_rules(password) if "au moins" not in r]
    if len(password) < s.advisor_password_min_length:
        reasons.insert(0, f"Le mot de passe doit comporter au moins {s.advisor_password_min_length} caractères.")
    return reasons


def begin_enrolment(token: str, password: str) -> Advisor:
    """Use the link (single use, atomically) and set the password; raises EnrolmentInvalid or BadRequest."""
    advisor = enrolment_advisor(token)
    reasons = staff_password_reasons(password)
    if reasons:
        raise BadRequest(" ".join(reasons), detail="advisor password rules")
    used = db.session.execute(update(Advisor).where(Advisor.id == advisor.id,
                                                    Advisor.enrolment_token_hash == hash_token(token))
                              .values(enrolment_token_hash=None, enrolment_expires_at=None,
                                      password_hash=hash_password(password))
                              .execution_options(synchronize_session="fetch"))
    if getattr(used, "rowcount", 0) != 1:  # a parallel use of the same link won
        db.session.rollback()
        raise EnrolmentInvalid(detail="enrolment token raced")
    audit.record("advisor.password_set", commit=False, advisor=advisor.id)
    db.session.commit()
    return advisor


# --- operators: cut an advisor off, or let them back ---------------------------------------------
class AdvisorUnknown(BadRequest):
    """No advisor has this e-mail."""

    code = "advisor_unknown"


def set_disabled(email: str, disabled: bool) -> tuple[Advisor, int]:
    """``idp advisors disable|enable``: a disabled advisor's sessions end at once (every console request also
    checks the flag), and their password, security key and staff-provider sign-ins are refused. Audited as
    ``advisor.disabled`` / ``advisor.enabled``; returns the advisor and how many sessions were ended."""
    from idp.advisors import sessions

    advisor = find_by_email(email) if email and len(email) <= 254 else None
    if advisor is None:
        raise AdvisorUnknown("no advisor has this e-mail", detail="unknown advisor")
    advisor.disabled_at = (advisor.disabled_at or clock().now()) if disabled else None
    if disabled:  # a pending enrolment link dies too
        advisor.enrolment_token_hash = advisor.enrolment_expires_at = None
    audit.record("advisor.disabled" if disabled else "advisor.enabled", commit=False, advisor=advisor.id,
                 actor="operator")
    db.session.commit()
    ended = sessions.end_all(advisor.id) if disabled else 0
    if ended:
        audit.record("advisor.sessions_ended", advisor=advisor.id, actor="operator", count=ended)
    return advisor, ended


def _refuse_disabled(advisor: Advisor) -> None:
    if advisor.disabled_at is not None:
        audit.record("advisor.key_refused", advisor=advisor.id, reason="disabled")
        raise KeyRefused(detail="advisor disabled")


# --- password step --------------------------------------------------------------------------------
def _lock_subject(advisor_id: str) -> str:
    return f"advisor:{advisor_id}"


def check_password(email: str, password: str) -> PasswordCheck:
    """The first factor. Same answer and cost for an unknown e-mail and a wrong password; 3 wrong passwords
    lock the advisor (atomic reservation before the check, as for people), and three on an unknown e-mail
    give the same "bloqué" answer (no staff e-mail enumeration)."""
    advisor = find_by_email(email) if email and len(email) <= 254 else None
    if advisor is None or advisor.disabled_at is not None or advisor.password_hash is None:
        # An unknown e-mail locks like an advisor (counter on a keyed hash): "bloqué" must not tell which
        # staff e-mails exist.
        attempt = limits.reserve_attempt("pwd", "advisor-unknown:" + lookup_hmac(normalise_email(email or "")[:254],
                                                                                purpose="advisor-login"))
        verify_password(None, password)
        audit.record("advisor.sign_in_failed", reason="unknown")
        return PasswordCheck(advisor=None, message=locked_message(attempt.until) if attempt.until else WRONG)
    attempt = limits.reserve_attempt("pwd", _lock_subject(advisor.id))
    if not attempt.allowed:
        verify_password(None, password)  # the same cost as a checked guess
        audit.record("advisor.sign_in_failed", advisor=advisor.id, reason="locked")
        return PasswordCheck(advisor=None, message=locked_message(attempt.until))
    if not verify_password(advisor.password_hash, password):
        audit.record("advisor.sign_in_failed", advisor=advisor.id, reason="password")
        return PasswordCheck(advisor=None, message=locked_message(attempt.until) if attempt.until else WRONG)
    limits.reset_failures("pwd", _lock_subject(advisor.id))
    audit.record("advisor.password_ok", advisor=advisor.id)
    return PasswordCheck(advisor=advisor)


def locked_message(until: datetime | None) -> str:
    """The seed's lock sentence."""
    when = paris_display(until) if until else ""
    return (f"Suite à {settings().max_failed_attempts} essais infructueux, l'accès est bloqué jusqu'au {when} "
            "(heure de Paris).")


# --- WebAuthn: registration (enrolment) and sign-in -----------------------------------------------
def _binding(session_id: str) -> str:
    return f"advisor:{session_id}"


def _refs(advisor_id: str) -> list[CredentialRef]:
    rows = db.session.scalars(select(AdvisorCredential).where(AdvisorCredential.advisor_id == advisor_id))
    return [CredentialRef(credential_id=c.credential_id, transports=c.transports or ()) for c in rows]


def start_key_registration(advisor: Advisor, session_id: str) -> dict[str, Any]:
    """Options for ``navigator.credentials.create()``: a security key or a platform credential, UV required."""
    _refuse_disabled(advisor)
    s = settings()
    options = ceremonies.registration_options(
        rp_id=s.rp_id, rp_name=f"{s.webauthn_rp_name} - Espace conseiller", user_handle=advisor.id.encode(),
        user_name=advisor.email, display_name=advisor.email, exclude=_refs(advisor.id),
        require_attestation=s.webauthn_require_attestation, timeout_ms=s.webauthn_challenge_ttl * 1000,
        platform_only=False)
    challenges.keep("register", _binding(session_id), options.challenge, account_id=advisor.id)
    return options.public_key


def finish_key_registration(advisor: Advisor, session_id: str, response: Mapping[str, Any]) -> AdvisorCredential:
    """Verify and store the new credential; the advisor is enrolled."""
    _refuse_disabled(advisor)
    challenge = challenges.take("register", _binding(session_id), account_id=advisor.id)
    if challenge is None:
        raise KeyRefused(detail="registration challenge missing, used or expired")
    s = settings()
    try:
        registered = ceremonies.verify_registration(response=response, challenge=challenge, rp_id=s.rp_id,
                                                    origin=s.origin, require_attestation=s.webauthn_require_attestation)
    except CeremonyError as exc:
        audit.record("advisor.key_refused", advisor=advisor.id, reason=exc.reason[:200])
        raise KeyRefused(detail=exc.reason) from exc
    now = clock().now()
    credential = AdvisorCredential(advisor_id=advisor.id, credential_id=registered.credential_id,
                                   public_key=registered.public_key, sign_count=registered.sign_count,
                                   transports=registered.transports, aaguid=registered.aaguid, created_at=now)
    db.session.add(credential)
    advisor.enrolled_at = advisor.enrolled_at or now
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise KeyRefused(detail="credential id already registered") from None
    audit.record("advisor.key_registered", commit=False, advisor=advisor.id, aaguid=registered.aaguid)
    db.session.commit()
    return credential


def start_key_sign_in(advisor: Advisor, session_id: str) -> dict[str, Any]:
    """Options for ``navigator.credentials.get()`` listing the advisor's credentials (UV required)."""
    _refuse_disabled(advisor)
    s = settings()
    refs = _refs(advisor.id)
    if not refs:
        raise KeyRefused("Aucune clé de sécurité n'est enregistrée pour ce compte conseiller : demandez un lien "
                         "d'inscription à l'administrateur.", detail="advisor without credential")
    options = ceremonies.authentication_options(rp_id=s.rp_id, allow=refs, timeout_ms=s.webauthn_challenge_ttl * 1000)
    challenges.keep("login", _binding(session_id), options.challenge, account_id=advisor.id)
    return options.public_key


def finish_key_sign_in(advisor: Advisor, session_id: str, response: Mapping[str, Any]) -> AdvisorCredential:
    """Verify the assertion with one of the advisor's own credentials; the counter must grow."""
    _refuse_disabled(advisor)
    challenge = challenges.take("login", _binding(session_id), account_id=advisor.id)
    if challenge is None:
        raise KeyRefused(detail="login challenge missing, used or expired")
    try:
        claimed = ceremonies.credential_id_of(response)
    except CeremonyError as exc:
        raise KeyRefused(detail=exc.reason) from exc
    credential = db.session.scalar(select(AdvisorCredential).where(AdvisorCredential.credential_id == claimed,
                                                                   AdvisorCredential.advisor_id == advisor.id))
    if credential is None:
        audit.record("advisor.key_refused", advisor=advisor.id, reason="unknown credential")
        raise KeyRefused(detail="not one of the advisor's credentials")
    s = settings()
    try:
        assertion = ceremonies.verify_authentication(response=response, challenge=challenge, rp_id=s.rp_id,
                                                     origin=s.origin, public_key=credential.public_key)
    except CeremonyError as exc:
        audit.record("advisor.key_refused", advisor=advisor.id, reason=exc.reason[:200])
        raise KeyRefused(detail=exc.reason) from exc
    if (credential.sign_count or assertion.sign_count) and assertion.sign_count <= credential.sign_count:
        audit.record("advisor.key_refused", advisor=advisor.id, reason="sign count regression")
        raise KeyRefused(detail="sign count regression")
    credential.sign_count = assertion.sign_count
    credential.last_used_at = advisor.last_sign_in_at = clock().now()
    audit.record("advisor.signed_in", commit=False, advisor=advisor.id, method="pwd+hwk")
    db.session.commit()
    return credential
