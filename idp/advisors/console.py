"""What an advisor does on a person's account, on the same services as the operator CLI.

:func:`search` (rate-limited per advisor with the atomic limits, audited, the NIR never stored in clear nor
audited), :func:`account_state` (status, e-mail, locks, code quota, trusted browsers, biometrics, last sign-ins)
and :data:`ACTIONS`, each with a mandatory reason and audited as ``advisor.<action>``: unlock, end the sessions,
revoke trusted browsers, revoke biometrics, disable and enable the account (:func:`idp.accounts.service.set_status`:
disabling ends its sessions and tokens at once; enabling is a supervisor's: :data:`SUPERVISOR_ACTIONS`),
reset (:func:`idp.accounts.service.reset_account`) and the SMS
provisional code for re-creation (:func:`idp.accounts.creation.send_provisional_code`), limited per person and per
advisor (atomic quotas; a refusal is audited as ``advisor.sms_limited``).
:func:`action_log` lists the advisors' actions (supervisors only; the view checks the role).

Domain code: no Flask request here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from idp import audit
from idp.accounts import service as accounts
from idp.accounts.models import Account
from idp.accounts.security import method_label
from idp.advisors.models import Advisor
from idp.audit import AuditEvent
from idp.clock import paris_display
from idp.crypto import decrypt, encrypt
from idp.errors import BadRequest, Forbidden, ServiceUnavailable, TooManyRequests
from idp.extensions import settings
from idp.mfa import codes, limits, trusted_browser
from idp.nir import Nir
from idp.webauthn.models import as_utc

MAX_REASON = 500
SMS_ADVISOR_QUOTA = "advisor-sms-by"  # per advisor
# A run of 11+ digits (spaces allowed) typed in a reason is masked: a NIR must not land in the audit trail.
_DIGITS = re.compile(r"\d[\d .-]{9,}\d")


class SearchLimited(TooManyRequests):
    """The advisor's search allowance for the window is used up."""

    code = "advisor_search_limit"
    description = ("Vous avez atteint le nombre maximum de recherches autorisées pour une heure. "
                   "Merci de réessayer plus tard.")


class SmsLimited(TooManyRequests):
    """Too many provisional codes texted: to this person, or by this advisor (:func:`_send_sms`)."""

    code = "advisor_sms_limit"


class ReasonRequired(BadRequest):
    """Every action needs a reason."""

    code = "reason_required"
    description = "Indiquez le motif de l'action (obligatoire)."


@dataclass(frozen=True, kw_only=True)
class Found:
    """A search result: the identity (sealed NIR) and its account when there is one."""

    nir_enc: str
    account_id: str | None


@dataclass(kw_only=True)
class AccountState:
    """What the console shows about an account (dates in Paris time, NIR masked)."""

    account_id: str | None
    nir_masked: str
    status: str | None = None
    email: str | None = None
    email_validated: bool = False
    locked_until: str | None = None
    quota_blocked_until: str | None = None
    codes_used: int = 0
    trusted_browsers: list[dict[str, str]] = field(default_factory=list)
    biometrics: list[dict[str, str]] = field(default_factory=list)
    sign_ins: list[dict[str, str]] = field(default_factory=list)
    sessions: int = 0
    rfi_phone: str | None = None  # masked
    rfi_known: bool = False


def seal_nir(nir: Nir) -> str:
    """The NIR encrypted for the advisor's session (never kept in clear)."""
    return encrypt(nir.value, "advisor-dossier")


def unseal_nir(nir_enc: str) -> Nir:
    """Inverse of :func:`seal_nir`."""
    return Nir(decrypt(nir_enc, "advisor-dossier"))


def search(advisor: Advisor, nir: Nir) -> Found:
    """Find the account of ``nir`` (rate-limited per advisor; audited without the NIR)."""
    s = settings()
    slot = limits.take_rate("advisor-search", advisor.id, window=s.advisor_search_window, limit=s.advisor_search_limit)
    if not slot.allowed:
        audit.record("advisor.search", advisor=advisor.id, outcome="limit")
        raise SearchLimited(detail="advisor search limit")
    account = accounts.find_account(nir)
    audit.record("advisor.search", account_id=account.id if account else None, advisor=advisor.id,
                 outcome="found" if account else "no_account")
    return Found(nir_enc=seal_nir(nir), account_id=account.id if account else None)


def _rows_browsers(account_id: str) -> list[dict[str, str]]:
    return [{"created": paris_display(as_utc(b.created_at)), "expires": paris_display(as_utc(b.expires_at)),
             "last_used": paris_display(as_utc(b.last_used_at)) if b.last_used_at else "jamais"}
            for b in trusted_browser.list_for(account_id)]


def _rows_biometrics(account_id: str) -> list[dict[str, str]]:
    from idp.webauthn import service as webauthn

    return [{"device": c.device_label, "created": paris_display(as_utc(c.created_at)),
             "expires": paris_display(as_utc(c.expires_at))}
            for c in webauthn.list_credentials(account_id)]


def recent_sign_ins(account_id: str, limit: int = 10) -> list[dict[str, str]]:
    """The account's last finished logins from the audit trail (method and client), newest first."""
    rows = select(AuditEvent).where(AuditEvent.account_id == account_id, AuditEvent.event == "login_done") \
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit)
    from idp.extensions import db

    return [{"at": paris_display(as_utc(e.at)), "method": method_label(e.data.get("amr") or []),
             "client": e.client_id or ""} for e in db.session.scalars(rows)]


def account_state(found: Found) -> AccountState:
    """Everything the console shows about the identity and its account."""
    from idp.accounts.creation import masked_phone
    from idp.login.sessions import sessions

    nir = unseal_nir(found.nir_enc)
    state = AccountState(account_id=None, nir_masked=nir.masked())
    state.rfi_known, phone = _rfi_phone(nir)
    state.rfi_phone = masked_phone(phone) if phone else None
    account = accounts.get_account(found.account_id) if found.account_id else accounts.find_account(nir)
    if account is None:
        return state
    state.account_id, state.status = account.id, account.status
    state.email, state.email_validated = account.email, account.email_validated
    lock = limits.account_lock(account.id)
    state.locked_until = paris_display(lock.until) if lock.locked and lock.until else None
    block = limits.quota_block(codes.QUOTA_NAME, account.id)
    state.quota_blocked_until = paris_display(block) if block else None
    state.codes_used = limits.quota_used(codes.QUOTA_NAME, account.id, window=settings().email_code_quota_window)
    state.trusted_browsers = _rows_browsers(account.id)
    state.biometrics = _rows_biometrics(account.id)
    state.sign_ins = recent_sign_ins(account.id)
    state.sessions = len(sessions.list_for(account.id))
    return state


def _rfi_phone(nir: Nir) -> tuple[bool, str | None]:
    from idp.rfi_adapter import IdentityNotFound

    try:
        identity = accounts.identity_of_nir(nir)
    except IdentityNotFound:
        return False, None
    return True, identity.phone


# --- actions ----------------------------------------------------------------------------------------
def clean_reason(reason: str) -> str:
    """The reason, trimmed and bounded, digit runs masked; raises :class:`ReasonRequired` when empty."""
    text = " ".join((reason or "").split())[:MAX_REASON]
    if len(text) < 3:
        raise ReasonRequired(detail="empty reason")
    return _DIGITS.sub("[numéro masqué]", text)


def _account(found: Found) -> Account:
    account = accounts.get_account(found.account_id) if found.account_id else None
    if account is None:
        raise BadRequest("Ce compte n'existe plus (il a peut-être été réinitialisé).", detail="no account")
    return account


def _unlock(found: Found, advisor: Advisor) -> dict[str, Any]:
    limits.unlock_account(_account(found).id)
    return {}


def _end_sessions(found: Found, advisor: Advisor) -> dict[str, Any]:
    from idp.login.sessions import sessions

    return {"count": sessions.end_all(_account(found).id)}


def _revoke_browsers(found: Found, advisor: Advisor) -> dict[str, Any]:
    return {"count": trusted_browser.revoke_all(_account(found).id)}


def _revoke_biometrics(found: Found, advisor: Advisor) -> dict[str, Any]:
    from idp.webauthn import service as webauthn

    return {"count": webauthn.revoke_all(_account(found).id, reason="advisor")}


def _reset(found: Found, advisor: Advisor) -> dict[str, Any]:
    accounts.reset_account(_account(found), actor=f"advisor:{advisor.id}")
    return {}


def _disable(found: Found, advisor: Advisor) -> dict[str, Any]:
    """The account can no longer sign in; its sessions, logins in flight and tokens end at once (again, on
    an account already disabled: ``changed`` False)."""
    return {"changed": accounts.set_status(_account(found), "disabled", actor=f"advisor:{advisor.id}")}


def _enable(found: Found, advisor: Advisor) -> dict[str, Any]:
    return {"changed": accounts.set_status(_account(found), "active", actor=f"advisor:{advisor.id}")}


def _sms_refused(advisor: Advisor, scope: str, until: datetime | None) -> SmsLimited:
    when = paris_display(until) if until else ""
    audit.record("advisor.sms_limited", advisor=advisor.id, scope=scope)
    if scope == "advisor":
        return SmsLimited("Vous avez atteint le nombre maximum de codes provisoires envoyés par SMS. Nouvel envoi "
                          f"possible à partir du {when} (heure de Paris). En cas de besoin, contactez votre "
                          "superviseur.", detail="advisor sms limit (advisor)")
    if scope == "phone":  # the number is shared with other identities: their codes are worth nothing here
        return SmsLimited("Le nombre maximum de codes provisoires envoyés par SMS à ce numéro de téléphone mobile est "
                          f"atteint. Nouvel envoi possible à partir du {when} (heure de Paris) : invitez la personne "
                          "à créer son compte avec sa carte Vitale et son IBAN.",
                          detail="advisor sms limit (phone)")
    return SmsLimited("Le nombre maximum de codes provisoires envoyés par SMS à cette personne est atteint. Nouvel "
                      f"envoi possible à partir du {when} (heure de Paris) : invitez-la à utiliser le dernier code "
                      "reçu ou à créer son compte avec sa carte Vitale et son IBAN.",
                      detail="advisor sms limit (identity)")


def _send_sms(found: Found, advisor: Advisor) -> dict[str, Any]:
    """Text the provisional code, within two atomic sliding-window quotas (:func:`idp.mfa.limits.take_quota`,
    one Lua script each: no worker can pass them): per advisor, all people together (here), and per person
    (identity, as there is no account yet: :func:`idp.accounts.creation.send_provisional_code`). A unit is
    given back when nothing was sent (no mobile, the gateway unreached or refusing, the person's or the
    number's limit reached, the registry or Redis out before the send: an outage must not lock advisors out
    for the window), not when the text may have gone out (the gateway's answer lost: ``SmsNotSent.maybe_sent``)
    nor when what follows the send fails (not a catch-all)."""
    from redis.exceptions import RedisError

    from idp.accounts import creation
    from idp.notify.sms import SmsNotSent
    from idp.rfi_adapter import IdentityNotFound

    nir = unseal_nir(found.nir_enc)
    if accounts.find_account(nir) is not None:
        raise BadRequest("Un compte existe pour cette personne : réinitialisez-le d'abord.", detail="account exists")
    s = settings()
    by_advisor = limits.take_quota(SMS_ADVISOR_QUOTA, advisor.id, quota=s.advisor_sms_per_advisor,
                                   window=s.advisor_sms_per_advisor_window, block=s.advisor_sms_per_advisor_window)
    if by_advisor.ticket is None:
        raise _sms_refused(advisor, "advisor", by_advisor.blocked_until)
    try:
        return {"phone": creation.send_provisional_code(nir)}
    except (creation.NoPhone, creation.PersonSmsLimit, SmsNotSent, ServiceUnavailable, IdentityNotFound,
            RedisError) as exc:
        if not (isinstance(exc, SmsNotSent) and exc.maybe_sent):  # a text that may have gone out stays counted
            limits.give_back_quota(SMS_ADVISOR_QUOTA, advisor.id, by_advisor.ticket)
        if not isinstance(exc, creation.NoPhone | creation.PersonSmsLimit):
            raise
        if isinstance(exc, creation.PersonSmsLimit):
            raise _sms_refused(advisor, exc.by, exc.until) from None
        raise BadRequest("Aucun numéro de téléphone mobile n'est enregistré pour cette personne : invitez-la à "
                         "créer son compte avec sa carte Vitale et son IBAN.", detail="no phone") from None


# name -> (French label, handler). The handler gets the dossier and the advisor.
ACTIONS: dict[str, tuple[str, Callable[..., dict[str, Any]]]] = {
    "unlock": ("Débloquer le compte", _unlock),
    "end_sessions": ("Fermer les sessions ouvertes", _end_sessions),
    "revoke_browsers": ("Révoquer les navigateurs de confiance", _revoke_browsers),
    "revoke_biometrics": ("Désactiver la biométrie", _revoke_biometrics),
    "disable": ("Désactiver le compte", _disable),
    "enable": ("Réactiver le compte", _enable),
    "reset": ("Réinitialiser le compte", _reset),
    "send_sms": ("Envoyer un code provisoire par SMS", _send_sms),
}


# Actions that undo a protective measure: a supervisor's only. Any advisor may disable an account (the safe
# direction, at the first sign of a takeover); enabling it again lets its password sign in once more, so that
# decision is not left to one advisor alone, who may have been talked into it on the phone.
SUPERVISOR_ACTIONS = frozenset({"enable"})


def perform(advisor: Advisor, found: Found, action: str, reason: str) -> dict[str, Any]:
    """Run one action with its reason; audited as ``advisor.<action>`` (advisor, account, reason, result). An
    advisor's attempt at a supervisor's action is refused (403) and audited as ``advisor.refused``."""
    if action not in ACTIONS:
        raise BadRequest(detail="unknown advisor action")
    if action in SUPERVISOR_ACTIONS and not advisor.is_supervisor:
        audit.record("advisor.refused", account_id=found.account_id, advisor=advisor.id, action=action)
        raise Forbidden("Seul un superviseur peut réactiver un compte désactivé : transmettez-lui la demande.",
                        detail="supervisor action")
    why = clean_reason(reason)
    handler = ACTIONS[action][1]
    result = handler(found, advisor)
    audit.record(f"advisor.{action}", account_id=found.account_id, advisor=advisor.id, reason=why,
                 **{k: v for k, v in result.items() if k in ("count", "changed")})
    return result


def action_log(limit: int = 200) -> list[dict[str, str]]:
    """The advisors' latest actions, newest first (supervisors' page)."""
    from idp.extensions import db

    names = [f"advisor.{name}" for name in ACTIONS] + ["advisor.refused"]
    rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event.in_(names))
                              .order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit))
    emails = {a.id: a.email for a in db.session.scalars(select(Advisor))}
    return [{"at": paris_display(as_utc(e.at)), "advisor": emails.get(str(e.data.get("advisor")), "?"),
             "action": _logged_action(e), "account": (e.account_id or "")[:8],
             "reason": str(e.data.get("reason", ""))} for e in rows]


def _logged_action(event: AuditEvent) -> str:
    """The action's label; an advisor's refused attempt at a supervisor's action says so (the supervisor sees
    what was asked of them, and by whom)."""
    if event.event == "advisor.refused":
        label = ACTIONS.get(str(event.data.get("action")), ("?",))[0]
        return f"Refusé (réservé aux superviseurs) : {label}"
    return ACTIONS[event.event.removeprefix("advisor.")][0]
