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

Every guess is reserved before it is checked (:func:`idp.mfa.limits.reserve_attempt`): the attempt that
reaches the limit sets the lock in advance, so parallel requests never check more guesses than allowed.

Per-address throttling (:class:`_AddressSlot`): failures (wrong password, unknown NIR, wrong code) are counted
per client address in a fixed window, a unit being reserved before the check and given back unless the attempt
fails; past ``address_failure_limit`` the address gets a 429 page before any account is touched, so one
address cannot cheaply lock many accounts (3 tries each) or spray passwords. Trade-off: people behind one
shared address (carrier-grade NAT, a company or hospital proxy) share that budget, so the limit is set well
above what honest typos produce (30 per 15 minutes); an attacker with many addresses (botnet) is not stopped
by it, only slowed, and the per-account locks remain the real protection; the address is
``request.remote_addr``, which is the client only when ``proxy_hops`` matches the reverse proxies in front
(otherwise every request shares the proxy's address and the throttle would hit everyone).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from idp import audit, metrics
from idp.accounts import service as accounts
from idp.clock import timestamp
from idp.crypto import lookup_hmac
from idp.errors import is_dependency_failure
from idp.extensions import clock, settings
from idp.login import assurance
from idp.login.interaction import Interaction, Step, interactions
from idp.mfa import codes, limits
from idp.nir import InvalidNir, Nir
from idp.notify.mail import MailNotSent
from idp.rfi_adapter import IdentityNotFound, RegistryUnavailable

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
    THROTTLED = "throttled"  # too many failures from the client address (429)
    IDENTITY_UNKNOWN = "identity_unknown"  # right password, but the registry (RFI) no longer knows the person
    REGISTRY_UNAVAILABLE = "registry_unavailable"  # the registry could not answer (503): nothing counted


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


class _AddressSlot:
    """One unit of the client address's failure budget, reserved before a guess is checked (atomic:
    parallel requests cannot all pass a read-only check); kept when the attempt fails, given back
    otherwise."""

    def __init__(self, address: str | None) -> None:
        s = settings()
        self._slot = limits.take_rate(ADDRESS_RATE, limits.client_network(address), window=s.address_failure_window,
                                      limit=s.address_failure_limit)
        self.allowed = self._slot.allowed

    def give_back(self) -> None:
        limits.give_back_rate(self._slot)

    def give_back_quietly(self) -> None:
        """Give back while a dependency is failing (Redis may be the outage): never hide the failure."""
        try:
            self.give_back()
        except Exception:
            log.warning("could not give back an address unit after an outage", exc_info=True)


def _failure_subject(nir: Nir, account: Account | None) -> str:
    # Unknown NIRs get a counter too (keyed hash, never the NIR itself) so that they lock like accounts.
    return account.id if account is not None else "unknown:" + lookup_hmac(nir.value, purpose="login-failure")


@metrics.login_step("password")
def identify(interaction: Interaction, nir_text: str, password: str, *, address: str | None) -> StepResult:
    """Step 0: check NIR + password, with lockout; on success the login starts from scratch for the account.

    The attempt is reserved (per account and per address) before the password is verified, so parallel
    requests never check more guesses than the limit allows."""
    slot = _AddressSlot(address)
    if not slot.allowed:
        return StepResult(Outcome.THROTTLED)
    try:
        return _identify(interaction, slot, nir_text, password)
    except Exception as exc:
        if is_dependency_failure(exc):  # an outage is no failed guess (the answer is a 503 whatever the
            slot.give_back_quietly()  # password): the address keeps its budget, a whole network is not slowed
        raise


def _identify(interaction: Interaction, slot: _AddressSlot, nir_text: str, password: str) -> StepResult:
    try:
        nir = Nir.parse(nir_text)
    except InvalidNir as exc:
        slot.give_back()
        return StepResult(Outcome.INVALID_INPUT, reason=exc.reason, field="nir")
    if not password:
        slot.give_back()
        return StepResult(Outcome.INVALID_INPUT, reason="Saisissez votre mot de passe.", field="password")
    known = accounts.find_account(nir)
    subject = _failure_subject(nir, known)
    attempt = limits.reserve_attempt("pwd", subject)
    if not attempt.allowed:
        # Same argon2 cost as a checked guess (dummy hash), but this guess is never checked. A try on a
        # locked account is a failed login for the address too (its unit is kept).
        accounts.check_password(None, password)
        return StepResult(Outcome.LOCKED, until=attempt.until)
    account = accounts.check_password(known, password)
    if account is None:  # wrong password, unknown NIR or disabled account: the reservation is the failure
        ask_registry(nir)  # as for a right password: an unknown NIR or a wrong one costs the same time
        audit.record("login_password_failed", account_id=known.id if known else None, client_id=interaction.client_id,
                     locked=attempt.until is not None)
        if attempt.until is not None:
            return StepResult(Outcome.LOCKED, until=attempt.until)
        return StepResult(Outcome.WRONG)
    # The guess was right: whatever the registry says next is not the person's failure (nothing counted).
    limits.reset_failures("pwd", account.id)
    slot.give_back()
    registry = ask_registry(nir)
    if registry is not Registry.FOUND:
        return registry_refusal(interaction, account, registry)
    start_for(interaction, account, assurance.password_factor(timestamp(clock().now())))
    audit.record_in_request("login_password_ok", account_id=account.id, client_id=interaction.client_id)
    return StepResult(Outcome.OK, account=account)


class Registry(enum.Enum):
    """What the identity registry (RFI) answered about a person at login."""

    FOUND = "found"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"


def ask_registry(nir: Nir) -> Registry:
    """Ask the RFI for the person (seed FAQ: ameli-connect identifies people by querying the RFI, whose data
    decide who can sign in). Never raises: an outage is :attr:`Registry.UNAVAILABLE`."""
    try:
        accounts.identity_of_nir(nir)
    except IdentityNotFound:
        return Registry.NOT_FOUND
    except RegistryUnavailable:
        return Registry.UNAVAILABLE
    return Registry.FOUND


def registry_refusal(interaction: Interaction, account: Account, registry: Registry) -> StepResult:
    """The result (audited) of a login refused because the registry does not know, or cannot tell, the person."""
    if registry is Registry.NOT_FOUND:
        audit.record("login_identity_unknown", account_id=account.id, client_id=interaction.client_id)
        return StepResult(Outcome.IDENTITY_UNKNOWN, account=account)
    audit.record("login_registry_unavailable", account_id=account.id, client_id=interaction.client_id)
    return StepResult(Outcome.REGISTRY_UNAVAILABLE, account=account)


def start_for(interaction: Interaction, account: Account, first: assurance.Factor) -> None:
    """A first factor succeeded: the login starts from scratch for ``account``.

    Nothing proved on this interaction before (another account's code or biometrics, its code sent, trusted
    browser, offer flags) may count; the account's lifecycle epoch and its address validated *before* this
    login (the only one a security code may prove) are recorded now."""
    codes.discard(interaction.id)  # a code sent earlier on this interaction (another account, an older epoch)
    interaction.restart(account.id, epoch=interactions.epoch(account.id, touch=True))
    interaction.email_known = account.email if account.email_validated and account.email else None
    interaction.proof.add(first)


def trust_browser(interaction: Interaction, *, trusted: bool) -> None:
    """The trusted-browser cookie of this very account was presented (checked by the caller)."""
    if trusted:
        interaction.proof.add(assurance.trusted_browser_factor(timestamp(clock().now())))


def request_code(interaction: Interaction, account: Account) -> StepResult:
    """Send a (new) security code for this interaction, within the quota."""
    lock = limits.account_lock(account.id)
    if lock.locked:
        return StepResult(Outcome.LOCKED, until=lock.until)
    if not account.email or account.email != interaction.email_known:
        # The address changed since the login started: a code sent there would prove nothing.
        interaction.email_known = None
        return StepResult(Outcome.MISSING)
    try:
        sent = codes.send_code(interaction.id, account)
    except codes.CodeQuotaExceeded as exc:
        audit.record("code_quota_exceeded", account_id=account.id, client_id=interaction.client_id)
        return StepResult(Outcome.QUOTA, until=exc.until)
    except MailNotSent:
        return StepResult(Outcome.MAIL_FAILED)
    interaction.code_sent_at, interaction.code_sent_to, interaction.code_not_sent = \
        timestamp(clock().now()), account.email, False
    audit.record_in_request("code_sent", account_id=account.id, client_id=interaction.client_id)
    return StepResult(Outcome.OK, account=account, expires_at=sent.expires_at)


@metrics.login_step("code")
def check_code(interaction: Interaction, account: Account, code: str, *, address: str | None) -> StepResult:
    """Steps 3 and cases 2, 5, 6: check the code typed by the person.

    Like the password, the attempt is reserved (per account and per address) before the code is compared."""
    slot = _AddressSlot(address)
    if not slot.allowed:
        return StepResult(Outcome.THROTTLED)
    result, failed = _check_code(interaction, account, code)
    if not failed:
        slot.give_back()  # only a wrong code is a failure of the address
    return result


def _check_code(interaction: Interaction, account: Account, code: str) -> tuple[StepResult, bool]:
    """The result, and whether a wrong code was checked (a failure)."""
    lock, blocked = limits.lock_and_block(account.id, codes.QUOTA_NAME)
    if lock.locked:
        return StepResult(Outcome.LOCKED, until=lock.until), False
    if blocked is not None:
        return StepResult(Outcome.QUOTA, until=blocked), False
    cleaned = code.replace(" ", "").strip()
    if len(cleaned) != 6 or not cleaned.isdigit():
        reason = "Le code de sécurité comporte 6 chiffres."
        return StepResult(Outcome.INVALID_INPUT, reason=reason, field="code"), False
    seen = codes.look(interaction.id, account.id)
    if seen.state is not None:  # no code to guess: nothing is reserved
        return StepResult(Outcome.EXPIRED if seen.state is codes.CodeCheck.EXPIRED else Outcome.MISSING), False
    attempt = limits.reserve_attempt("code", account.id)
    if not attempt.allowed:
        return StepResult(Outcome.LOCKED, until=attempt.until), False
    check = codes.verify_code(interaction.id, account.id, cleaned, seen=seen)
    if check is codes.CodeCheck.OK:
        limits.reset_failures("code", account.id)
        # The address must still be the account's validated one: changed meanwhile (the owner moving away from
        # a mailbox someone else reads), the code proves only that mailbox.
        still = account.email_validated and account.email == interaction.email_known
        factor = assurance.email_code_factor(timestamp(clock().now()), sent_to=interaction.code_sent_to,
                                             validated_before_login=interaction.email_known if still else None)
        if factor is None:  # right code, but to an address not (or no longer) validated for this login: no factor
            interaction.email_known = None
        else:
            interaction.proof.add(factor)
        audit.record_in_request("code_ok", account_id=account.id, client_id=interaction.client_id)
        return StepResult(Outcome.OK, account=account), False
    if check is not codes.CodeCheck.WRONG:  # expired or consumed in between: no guess was checked
        limits.release_attempt("code", account.id, attempt)
        return StepResult(Outcome.EXPIRED if check is codes.CodeCheck.EXPIRED else Outcome.MISSING), False
    # The reservation is the failure.
    locked = attempt.until is not None
    audit.record("code_failed", account_id=account.id, client_id=interaction.client_id, locked=locked)
    if locked:
        return StepResult(Outcome.LOCKED, until=attempt.until), True  # this failure locked
    return StepResult(Outcome.WRONG), True


def finish(interaction: Interaction, account: Account) -> None:
    """Mark the interaction done for ``oidc.resume`` to consume; the login is counted once."""
    if interaction.step is Step.DONE:
        return
    interaction.step = Step.DONE
    interaction.account_id = account.id
    interactions.save(interaction)
    if interaction.from_session:
        # Consent given within a live session (prompt=consent alone): no new authentication happened, the
        # session's amr, acr and auth_time stay, and no login is counted.
        audit.record("consent_given", account_id=account.id, client_id=interaction.client_id)
        return
    codes.discard(interaction.id)
    # One commit: the login counted, its audit event and the step events recorded in this request.
    accounts.record_login(account, commit=False)
    audit.record("login_done", account_id=account.id, client_id=interaction.client_id,
                 amr=assurance.amr(interaction.proof), acr=assurance.acr(interaction.proof))
