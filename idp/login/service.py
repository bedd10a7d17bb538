"""The login journey's domain operations: identify, send and check the security code, finish.

Views call these with plain values (the client address is a string, never the Flask request) and
turn the typed results into pages; the order of steps is :mod:`idp.login.policy`'s business.

Lockouts (DESIGN.md §2): wrong passwords and wrong codes have separate counters
(:func:`idp.mfa.limits.register_failure` with ``"pwd"`` and ``"code"``); either lock blocks the whole
account for 15 minutes; a success resets only its own counter; a new code never resets the code
counter; the lock ends by itself (decided by the application clock).

Unknown NIR: the same work is done as for a known account with a wrong password. The argon2
verification runs on a dummy hash (``accounts.service.authenticate``) and a failure counter is kept
on a keyed hash of the NIR, so that three tries on an unknown NIR also end in the "bloqué" message:
neither the message, nor the status, nor the timing tells whether the account exists.

Per-address throttling (:func:`address_throttled`): failures (wrong password, unknown NIR, wrong
code) are counted per client address in a fixed window; past ``address_failure_limit`` the address
gets a 429 page before any account is touched, so one address cannot cheaply lock many accounts
(3 tries each) or spray passwords. Trade-off: people behind one shared address (carrier-grade NAT,
a company or hospital proxy) share that budget, so the limit is set well above what honest typos
produce (30 per 15 minutes); an attacker with many addresses (botnet) is not stopped by it, only
slowed, and the per-account locks remain the real protection; the address is
``request.remote_addr``, which is the client only when ``proxy_hops`` matches the reverse proxies
in front (otherwise every request shares the proxy's address and the throttle would hit everyone).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from idp import audit
from idp.accounts import service as accounts
from idp.clock import timestamp
from idp.crypto import lookup_hmac
from idp.extensions import clock, settings
from idp.login import policy
from idp.login.interaction import Interaction, interactions
from idp.mfa import codes, limits
from idp.nir import InvalidNir, Nir
from idp.notify.mail import MailNotSent

if TYPE_CHECKING:
    from idp.accounts.models import Account

log = logging.getLogger(__name__)

ADDRESS_RATE = "login-failures"


class Outcome(enum.Enum):
    """What happened to a login step."""

    OK = "ok"
    INVALID_INPUT = "invalid_input"  # malformed NIR or code: nothing counted
    WRONG = "wrong"  # wrong or unknown credentials / wrong code, counted
    LOCKED = "locked"  # account locked (3 wrong passwords or 3 wrong codes)
    EXPIRED = "expired"  # the code is past its 15 minutes
    MISSING = "missing"  # no code waiting for this transaction
    QUOTA = "quota"  # code requests blocked (5 per sliding hour)
    MAIL_FAILED = "mail_failed"  # the SMTP relay did not take the message


@dataclass(frozen=True, slots=True)
class StepResult:
    """Outcome of a step; ``until`` for locks and quota blocks, ``reason`` for invalid input (French)."""

    outcome: Outcome
    account: Account | None = None
    until: datetime | None = None
    reason: str = ""
    field: str = ""  # the form field an invalid input belongs to
    expires_at: datetime | None = None

    @property
    def ok(self) -> bool:
        """True on success."""
        return self.outcome is Outcome.OK


def address_throttled(address: str | None) -> bool:
    """True when this client address made too many failed attempts in the current window."""
    s = settings()
    return limits.peek_rate(ADDRESS_RATE, address or "-", window=s.address_failure_window) >= s.address_failure_limit


def _count_address_failure(address: str | None) -> None:
    limits.hit_rate(ADDRESS_RATE, address or "-", window=settings().address_failure_window)


def _failure_subject(nir: Nir, account: Account | None) -> str:
    # Unknown NIRs get a counter too (keyed hash, never the NIR itself) so that they lock like accounts.
    return account.id if account is not None else "unknown:" + lookup_hmac(nir.value, purpose="login-failure")


def identify(interaction: Interaction, nir_text: str, password: str, *, address: str | None) -> StepResult:
    """Step 0: check NIR + password, with lockout; on success binds the account to the interaction."""
    try:
        nir = Nir.parse(nir_text)
    except InvalidNir as exc:
        return StepResult(Outcome.INVALID_INPUT, reason=exc.reason, field="nir")
    if not password:
        return StepResult(Outcome.INVALID_INPUT, reason="Saisissez votre mot de passe.", field="password")
    known = accounts.find_account(nir)
    subject = _failure_subject(nir, known)
    lock = limits.account_lock(subject)
    # argon2 runs in every branch (dummy hash for unknown NIRs) so that timing reveals nothing.
    account = accounts.authenticate(nir, password)
    if lock.locked:
        _count_address_failure(address)  # a try on a locked account is a failed login too
        return StepResult(Outcome.LOCKED, until=lock.until)
    if account is None or not account.is_active:
        _count_address_failure(address)
        status = limits.register_failure("pwd", subject)
        audit.record("login_password_failed", account_id=known.id if known else None, client_id=interaction.client_id,
                     locked=status.locked)
        if status.locked:
            return StepResult(Outcome.LOCKED, until=status.until)
        return StepResult(Outcome.WRONG)
    limits.reset_failures("pwd", account.id)
    interaction.account_id = account.id
    interaction.complete("pwd")
    audit.record("login_password_ok", account_id=account.id, client_id=interaction.client_id)
    return StepResult(Outcome.OK, account=account)


def request_code(interaction: Interaction, account: Account) -> StepResult:
    """Send a (new) security code for this interaction, within the quota."""
    lock = limits.account_lock(account.id)
    if lock.locked:
        return StepResult(Outcome.LOCKED, until=lock.until)
    try:
        sent = codes.send_code(interaction.id, account)
    except codes.CodeQuotaExceeded as exc:
        audit.record("code_quota_exceeded", account_id=account.id, client_id=interaction.client_id)
        return StepResult(Outcome.QUOTA, until=exc.until)
    except MailNotSent:
        return StepResult(Outcome.MAIL_FAILED)
    interaction.data["code_sent_at"] = timestamp(clock().now())
    audit.record("code_sent", account_id=account.id, client_id=interaction.client_id)
    return StepResult(Outcome.OK, account=account, expires_at=sent.expires_at)


def check_code(interaction: Interaction, account: Account, code: str, *, address: str | None) -> StepResult:
    """Steps 3 and cases 2, 5, 6: check the code typed by the person."""
    lock = limits.account_lock(account.id)
    if lock.locked:
        return StepResult(Outcome.LOCKED, until=lock.until)
    blocked = limits.quota_block(codes.QUOTA_NAME, account.id)
    if blocked is not None:
        return StepResult(Outcome.QUOTA, until=blocked)
    cleaned = code.replace(" ", "").strip()
    if len(cleaned) != 6 or not cleaned.isdigit():
        return StepResult(Outcome.INVALID_INPUT, reason="Le code de sécurité comporte 6 chiffres.", field="code")
    check = codes.verify_code(interaction.id, account.id, cleaned)
    if check is codes.CodeCheck.OK:
        limits.reset_failures("code", account.id)
        interaction.complete("mail")
        audit.record("code_ok", account_id=account.id, client_id=interaction.client_id)
        return StepResult(Outcome.OK, account=account)
    if check is codes.CodeCheck.EXPIRED:
        return StepResult(Outcome.EXPIRED)
    if check is codes.CodeCheck.MISSING:
        return StepResult(Outcome.MISSING)
    _count_address_failure(address)
    status = limits.register_failure("code", account.id)
    audit.record("code_failed", account_id=account.id, client_id=interaction.client_id, locked=status.locked)
    if status.locked:
        return StepResult(Outcome.LOCKED, until=status.until)
    return StepResult(Outcome.WRONG)


def finish(interaction: Interaction, account: Account) -> None:
    """Mark the interaction done (account, amr, acr, auth_time) for ``oidc.resume`` to consume."""
    if interaction.step == "done":
        return
    acr, amr = policy.authentication_context(interaction.amr)
    interaction.step = "done"
    interaction.account_id = account.id
    interaction.amr = amr
    interaction.acr = acr
    interaction.auth_time = timestamp(clock().now())
    interactions.save(interaction)
    codes.discard(interaction.id)
    accounts.record_login(account)
    audit.record("login_done", account_id=account.id, client_id=interaction.client_id, amr=amr, acr=acr)
