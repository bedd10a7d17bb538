"""Forgotten password: an e-mailed single-use link valid ``password_reset_ttl`` (seed: 30 minutes).

Independent of the login security code (seed FAQ). The request answers the same whether or not the
NIR has an account; the link carries a 256-bit random token of which only a hash is stored in Redis;
redeeming it is atomic (GETDEL) so it works once, and setting the new password ends every browser
session of the account. A new request replaces the previous link; a reset account loses its links.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from idp import audit
from idp.accounts import service
from idp.accounts.models import Account
from idp.clock import timestamp
from idp.crypto import hash_token, new_token
from idp.errors import IdpError, TooManyRequests
from idp.extensions import clock, redis_client, rkey, settings
from idp.mfa import limits

log = logging.getLogger(__name__)

RESET_PATH = "/mot-de-passe/nouveau/"


class InvalidResetLink(IdpError):
    """The link is unknown, already used or expired."""

    code = "invalid_reset_link"
    status = 410
    title = "Lien expiré"
    description = ("Ce lien n'est plus valide : il a déjà été utilisé ou a expiré (il est valable 30 minutes). "
                   "Faites une nouvelle demande depuis la page « Mot de passe oublié ».")


def _key(token: str) -> str:
    return rkey("pwreset", hash_token(token))


def _index(account_id: str) -> str:
    return rkey("pwreset-of", account_id)


def link_for(token: str) -> str:
    """The absolute URL of the reset page for ``token`` (built from the issuer, not from the request)."""
    return f"{settings().issuer}{RESET_PATH}{token}"


def throttle_address(address: str) -> None:
    """Limit reset requests per client address (same budget as failed logins) so that one address
    cannot probe many NIRs or flood mailboxes; raises TooManyRequests (429, French page)."""
    s = settings()
    used = limits.hit_rate("pwreset-address", limits.client_network(address), window=s.address_failure_window)
    if used > s.address_failure_limit:
        raise TooManyRequests(detail="password reset address limit")


@dataclass(frozen=True, slots=True)
class ResetMail:
    """A reset link prepared by :func:`request_reset`, to be e-mailed by :func:`deliver`."""

    account_id: str
    email: str
    token: str
    quota_ticket: str | None


def request_reset(nir_text: str) -> ResetMail | None:
    """Prepare a reset link when the NIR has an active account with a validated e-mail; otherwise
    nothing. The caller shows the same answer in every case (no account enumeration) and sends the
    mail with :func:`deliver` after the response has gone, so that the SMTP conversation does not
    make the answer for an existing account slower than for an unknown NIR."""
    account = service.find_account(nir_text)
    if account is None or not account.is_active or not account.email_validated or not account.email:
        audit.record("password_reset.requested", outcome="ignored")
        return None
    s = settings()
    quota = limits.take_quota("pwreset", account.id, quota=s.email_code_quota, window=s.email_code_quota_window,
                              block=s.email_code_quota_block)
    if not quota.allowed:
        audit.record("password_reset.requested", account_id=account.id, outcome="quota")
        return None
    token = new_token(32)
    forget_links(account.id)
    ttl = s.password_reset_ttl
    record = {"account_id": account.id, "exp": timestamp(clock().now()) + ttl}
    # Indexed first, then live (the link and the account's index are in different hash slots): a
    # forget_links() running in between cannot miss a live link.
    pipe = redis_client().pipeline(transaction=True)
    pipe.sadd(_index(account.id), hash_token(token))
    pipe.expire(_index(account.id), ttl + 60)
    pipe.execute()
    redis_client().set(_key(token), json.dumps(record), ex=ttl + 60)
    audit.record("password_reset.requested", account_id=account.id, outcome="accepted")
    return ResetMail(account.id, account.email, token, quota.ticket)


def _withdraw(mail: ResetMail) -> None:
    """Withdraw only this mail's link (a newer link, delivered meanwhile, stays usable)."""
    redis_client().delete(_key(mail.token))  # dead first, then unindexed (two hash slots)
    redis_client().srem(_index(mail.account_id), hash_token(mail.token))


def deliver(mail: ResetMail) -> None:
    """E-mail a prepared link; when the relay fails, the link is withdrawn and the quota unit given back."""
    from idp.notify.mail import MailNotSent, send_mail

    try:
        send_mail(mail.email, "Mon compte ameli : réinitialisation de votre mot de passe", "password_reset",
                  link=link_for(mail.token), minutes=settings().password_reset_ttl // 60)
    except MailNotSent:
        _withdraw(mail)
        if mail.quota_ticket:
            limits.give_back_quota("pwreset", mail.account_id, mail.quota_ticket)
        audit.record("password_reset.mail_failed", account_id=mail.account_id)
        return
    audit.record("password_reset.sent", account_id=mail.account_id)


def _decode(raw: bytes | str | None) -> Account | None:
    if raw is None:
        return None
    try:
        record = json.loads(raw)
        account_id, expires = str(record["account_id"]), int(record["exp"])
    except (ValueError, KeyError, TypeError):
        return None
    if expires <= timestamp(clock().now()):
        return None
    account = service.get_account(account_id)
    return account if account is not None and account.is_active else None


def peek(token: str) -> Account | None:
    """The account a live link belongs to, without using the link (the page shows the form)."""
    if not token or len(token) > 128:
        return None
    return _decode(redis_client().get(_key(token)))


def redeem(token: str, password: str) -> Account:
    """Set ``password`` through the link: rules checked first (a refused password keeps the link),
    then the link is consumed atomically and every session of the account ends."""
    account = peek(token)
    if account is None:
        raise InvalidResetLink(detail="unknown or expired reset link")
    reasons = service.check_password_rules(password, service.account_nir(account))
    if reasons:
        raise service.PasswordRejected(reasons)
    # Single use: of two parallel submissions only the one that deletes the record goes on.
    account = _decode(redis_client().getdel(_key(token)))
    if account is None:
        raise InvalidResetLink(detail="reset link used concurrently")
    redis_client().srem(_index(account.id), hash_token(token))
    service.set_password(account, password)
    audit.record("password_reset.completed", account_id=account.id)
    return account


def forget_links_on_event(account_id: str, **_: object) -> None:
    """Lifecycle receiver (password changed, account reset, e-mail changed: the link went to the previous
    address): no older link may set a password again."""
    forget_links(account_id)


def forget_links(account_id: str) -> None:
    """Invalidate every outstanding link of an account (new request, advisor reset)."""
    hashes = [h.decode() if isinstance(h, bytes) else h for h in redis_client().smembers(_index(account_id))]
    keys = [rkey("pwreset", h) for h in hashes]
    if keys:
        redis_client().delete(*keys)
    redis_client().delete(_index(account_id))
