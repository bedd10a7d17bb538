""""Sécurité de mon compte": what a signed-in person sees and changes about their own account's security.

- re-authentication with the second factor before ANY change, whatever the session's age: a security code is
  e-mailed (the login's quota, wrong-code counter and lock apply: :mod:`idp.mfa.codes`, :mod:`idp.mfa.limits`),
  and a right code opens a short window (``security_reauth_ttl``) bound to this browser session;
- e-mail change (code sent to the new address, the old address told), password change (other sessions end);
- trusted browsers (revoke one or all) and open sessions (end one or all others), named by handles that are
  not the session ids (a session id is a bearer secret and never reaches a page);
- the account's last security events from the audit trail, in French, dates in Paris time.

Domain code: no Flask request. Changes are audited.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from idp import audit
from idp.accounts import service
from idp.accounts.models import Account
from idp.audit import AuditEvent
from idp.clock import paris_display, timestamp
from idp.crypto import constant_time_equal, hash_token
from idp.extensions import clock, db, hashtag, redis_client, rkey, settings
from idp.mfa import codes, limits, trusted_browser
from idp.notify.mail import MailNotSent
from idp.webauthn.models import as_utc

if TYPE_CHECKING:
    from idp.login.sessions import BrowserSession

EVENT_LIMIT = 20


class Reauth(enum.Enum):
    """Outcome of a re-authentication step."""

    OK = "ok"
    SENT = "sent"
    WRONG = "wrong"
    LOCKED = "locked"
    QUOTA = "quota"
    EXPIRED = "expired"
    MISSING = "missing"
    MAIL_FAILED = "mail_failed"
    INVALID = "invalid"
    NO_EMAIL = "no_email"


@dataclass(frozen=True, kw_only=True)
class ReauthResult:
    """What happened, and until when a lock or quota block lasts."""

    outcome: Reauth
    until: datetime | None = None


# --- re-authentication ------------------------------------------------------------------------------
def _transaction(session: BrowserSession, account: Account) -> str:
    """The code's transaction: this session's re-authentication (a login's code cannot be used here) to the
    account's address of now (a code sent to a previous address is worthless once the address changed)."""
    return "reauth-" + hash_token(f"{session.id}|{account.email or ''}")[:32]


def _fresh_key(session: BrowserSession) -> str:
    return rkey("reauth", hashtag(hash_token(session.id)[:32]))


def send_reauth_code(session: BrowserSession, account: Account) -> ReauthResult:
    """E-mail a security code to the account's validated address (quota as at login)."""
    lock = limits.account_lock(account.id)
    if lock.locked:
        return ReauthResult(outcome=Reauth.LOCKED, until=lock.until)
    if not account.email or not account.email_validated:
        return ReauthResult(outcome=Reauth.NO_EMAIL)
    try:
        codes.send_code(_transaction(session, account), account)
    except codes.CodeQuotaExceeded as exc:
        audit.record("code_quota_exceeded", account_id=account.id, purpose="reauth")
        return ReauthResult(outcome=Reauth.QUOTA, until=exc.until)
    except MailNotSent:
        return ReauthResult(outcome=Reauth.MAIL_FAILED)
    audit.record("code_sent", account_id=account.id, purpose="reauth")
    return ReauthResult(outcome=Reauth.SENT)


def check_reauth_code(session: BrowserSession, account: Account, code: str) -> ReauthResult:
    """Check the code (attempt reserved first: 3 wrong codes lock the account, as at login)."""
    cleaned = (code or "").replace(" ", "").strip()
    if len(cleaned) != 6 or not cleaned.isdigit():
        return ReauthResult(outcome=Reauth.INVALID)
    lock = limits.account_lock(account.id)
    if lock.locked:
        return ReauthResult(outcome=Reauth.LOCKED, until=lock.until)
    tx = _transaction(session, account)
    waiting = codes.waiting(tx, account.id)
    if waiting is not None:
        return ReauthResult(outcome=Reauth.EXPIRED if waiting is codes.CodeCheck.EXPIRED else Reauth.MISSING)
    attempt = limits.reserve_attempt("code", account.id)
    if not attempt.allowed:
        return ReauthResult(outcome=Reauth.LOCKED, until=attempt.until)
    check = codes.verify_code(tx, account.id, cleaned)
    if check is codes.CodeCheck.OK:
        limits.reset_failures("code", account.id)
        redis_client().set(_fresh_key(session), json.dumps({"at": timestamp(clock().now())}),
                           ex=settings().security_reauth_ttl + 60)
        audit.record("account.reauthenticated", account_id=account.id, method="mail")
        return ReauthResult(outcome=Reauth.OK)
    if check is not codes.CodeCheck.WRONG:
        limits.release_attempt("code", account.id, attempt)
        return ReauthResult(outcome=Reauth.EXPIRED if check is codes.CodeCheck.EXPIRED else Reauth.MISSING)
    locked = attempt.until is not None
    audit.record("code_failed", account_id=account.id, purpose="reauth", locked=locked)
    return ReauthResult(outcome=Reauth.LOCKED if locked else Reauth.WRONG, until=attempt.until)


def reauthenticated(session: BrowserSession) -> bool:
    """True within ``security_reauth_ttl`` of a right re-authentication code in this very session."""
    raw = redis_client().get(_fresh_key(session))
    try:
        at = int(json.loads(raw)["at"]) if raw else 0
    except (ValueError, KeyError, TypeError):
        return False
    return at > 0 and timestamp(clock().now()) - at < settings().security_reauth_ttl


def change_refused(session: BrowserSession, action: str) -> None:
    """Audit a change asked without a fresh re-authentication (refused: the code page is shown instead)."""
    audit.record("account.reauth_required", account_id=session.account_id, action=action[:64])


# --- sessions and trusted browsers --------------------------------------------------------------------
def session_handle(session: BrowserSession) -> str:
    """A page-safe name for a session (not its id, which is a bearer secret)."""
    return hash_token(f"handle:{session.id}")[:24]


def open_sessions(account_id: str, current: BrowserSession) -> list[dict[str, str | bool]]:
    """The account's live sessions, the current one marked."""
    from idp.login.sessions import sessions

    return [{"handle": session_handle(s), "device": s.device or "Navigateur inconnu",
             "created": paris_display(datetime.fromtimestamp(s.created_at, UTC)),
             "last_seen": paris_display(datetime.fromtimestamp(s.last_seen, UTC)),
             "current": s.id == current.id} for s in sessions.list_for(account_id)]


def end_session(account: Account, current: BrowserSession, handle: str) -> bool:
    """End one of the account's other sessions, named by its handle."""
    from idp.login.sessions import sessions

    for other in sessions.list_for(account.id):
        if other.id != current.id and constant_time_equal(session_handle(other), handle or ""):
            sessions.end(other, announce=True)
            audit.record("account.session_ended", account_id=account.id, by="owner")
            return True
    return False


def end_other_sessions(account: Account, current: BrowserSession) -> int:
    """End every session of the account but this one."""
    from idp.login.sessions import sessions

    ended = sessions.end_all(account.id, except_id=current.id)
    audit.record("account.sessions_ended", account_id=account.id, by="owner", count=ended)
    return ended


def browsers(account_id: str, cookie: str | None) -> list[dict[str, str | bool | int]]:
    """The account's live trusted browsers (browser, created, last used, expiry), the current one marked."""
    return [{"id": b.id, "label": b.label or "Navigateur", "created": paris_display(as_utc(b.created_at)),
             "last_used": paris_display(as_utc(b.last_used_at)) if b.last_used_at else "jamais",
             "expires": paris_display(as_utc(b.expires_at)), "current": trusted_browser.is_current(b, cookie)}
            for b in trusted_browser.list_for(account_id)]


def revoke_browser(account: Account, browser_id: int) -> bool:
    """Revoke one trusted browser: that browser is asked the security code again at its next login."""
    done = trusted_browser.revoke_one(account.id, browser_id)
    if done:
        audit.record("trusted_browser.revoked", account_id=account.id, by="owner", browser=browser_id)
    return done


def revoke_all_browsers(account: Account) -> int:
    """Revoke every trusted browser of the account."""
    count = trusted_browser.revoke_all(account.id)
    audit.record("trusted_browser.revoked_all", account_id=account.id, by="owner", count=count)
    return count


# --- e-mail -------------------------------------------------------------------------------------------
def start_email_change(account: Account, new_email: str) -> None:
    """Send a validation code to the new address (the seed's code quota applies)."""
    service.start_email_verification(account, new_email)


def confirm_email_change(account: Account, new_email: str, code: str) -> bool:
    """A right code makes the new address the account's (validated); the old address is told by the
    :data:`idp.lifecycle.email_changed` subscriber (:func:`idp.accounts.service.tell_previous_address`)."""
    old = account.email
    if not service.confirm_email(account, new_email, code):
        return False
    audit.record("account.email_changed", account_id=account.id, old=service.masked_email(old),
                 new=service.masked_email(new_email))
    return True


# --- events -------------------------------------------------------------------------------------------
_METHODS = {"pwd": "mot de passe", "mail": "code de sécurité", "hwk": "biométrie"}


def method_label(amr: list[str]) -> str:
    """``["pwd", "mail", "mfa"]`` -> "mot de passe + code de sécurité" (how a login was proven, in French)."""
    labels = [_METHODS[m] for m in amr if m in _METHODS]
    return " + ".join(labels) or "inconnue"


_LABELS = {
    "login_done": "Connexion", "login_password_failed": "Mot de passe erroné", "code_failed": "Code de sécurité erroné",
    "code_sent": "Code de sécurité envoyé", "code_quota_exceeded": "Nombre maximum de codes atteint",
    "account.password_changed": "Mot de passe modifié", "password_reset.completed": "Mot de passe réinitialisé",
    "account.email_validated": "Adresse e-mail validée", "account.email_changed": "Adresse e-mail modifiée",
    "account.reauthenticated": "Identité confirmée par code", "account.unlocked": "Compte débloqué",
    "account.session_ended": "Session fermée", "account.sessions_ended": "Autres sessions fermées",
    "trusted_browser.revoked": "Navigateur de confiance révoqué",
    "trusted_browser.revoked_all": "Navigateurs de confiance révoqués",
    "webauthn.activated": "Biométrie activée", "webauthn.revoked": "Biométrie désactivée",
    "webauthn.revoked_all": "Biométrie désactivée", "webauthn.sign_in": "Connexion avec la biométrie",
    "advisor.unlock": "Compte débloqué par un conseiller", "advisor.end_sessions": "Sessions fermées par un conseiller",
    "advisor.revoke_browsers": "Navigateurs révoqués par un conseiller",
    "advisor.revoke_biometrics": "Biométrie désactivée par un conseiller",
}


def security_events(account_id: str) -> list[dict[str, str]]:
    """The account's last :data:`EVENT_LIMIT` security events, newest first, in French."""
    rows = db.session.scalars(select(AuditEvent).where(AuditEvent.account_id == account_id,
                                                       AuditEvent.event.in_(list(_LABELS)))
                              .order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(EVENT_LIMIT))
    events = []
    for e in rows:
        label = _LABELS[e.event]
        if e.data.get("locked"):
            label += " - compte bloqué"
        detail = f"{method_label(e.data.get('amr') or [])}" if e.event == "login_done" else ""
        events.append({"at": paris_display(as_utc(e.at)), "label": label, "detail": detail,
                       "client": e.client_id or ""})
    return events
