"""Self-service account creation ("Créer mon compte") and re-creation after an advisor reset.

Creation: NIR + date of birth + Carte Vitale serial + last 7 characters of the IBAN, checked against
the RFI (attempts limited per client address and per NIR, every check audited, one message whichever
field is wrong), then an e-mail validated by a 6-digit code, then a password.

Re-creation (seed: the advisor resets the account and "pourra lui envoyer un code provisoire par
SMS"): the advisor's ``idp accounts reset NIR --sms`` sends a provisional code to the RFI mobile
number; the person types NIR + code on ``/compte/recreation`` and continues with the same e-mail and
password steps.

The flow between steps is a :class:`Flow` record in Redis keyed by a random id (the browser keeps
only that id, in the signed session); the NIR in it is encrypted. Domain code only: no Flask request.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime

from idp import audit
from idp.accounts import codes, service
from idp.accounts.models import Account
from idp.clock import timestamp
from idp.crypto import constant_time_equal, decrypt, encrypt, lookup_hmac, new_token
from idp.errors import BadRequest, TooManyRequests
from idp.extensions import clock, redis_client, rkey, settings
from idp.mfa import limits
from idp.nir import Nir
from idp.rfi_adapter import IdentityNotFound, get_rfi
from idp.rfi_adapter.base import Identity

WRONG = "Les informations saisies sont erronées. Merci de vérifier votre saisie."
SMS_CODE = "sms"
SMS_PERSON_QUOTA = "advisor-sms"  # provisional codes texted to one identity (keyed NIR hash), whoever sends them
SMS_PHONE_QUOTA = "advisor-sms-phone"  # ... and to one mobile number (keyed hash), whoever it is registered for


class IdentityMismatch(BadRequest):
    """The details do not match the registry; one message whichever field is wrong."""

    code = "identity_mismatch"
    description = WRONG


class TooManyAttempts(TooManyRequests):
    """The creation attempt limit was reached for this address or this NIR."""

    code = "creation_attempts"
    description = ("Le nombre maximum de tentatives a été atteint. Pour votre sécurité, la création de compte "
                   "est suspendue : merci de réessayer dans une heure ou d'appeler le 3646.")


class NoPhone(LookupError):
    """The RFI has no mobile number for this person (advisor: offer Carte Vitale + IBAN instead)."""


class PersonSmsLimit(Exception):
    """The person (``by="person"``) or their mobile number (``by="phone"``, shared with other identities)
    already received ``advisor_sms_limit`` provisional codes in the window; none is sent."""

    def __init__(self, until: datetime | None, by: str = "person") -> None:
        super().__init__(f"provisional code SMS limit reached for this {by}")
        self.until, self.by = until, by


@dataclass(kw_only=True)
class Flow:
    """One creation in progress: ``step`` is email -> code -> password -> done."""

    id: str
    kind: str  # creation | recreation
    nir_enc: str
    phone: str | None
    expires_at: int
    step: str = "email"
    email: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def nir(self) -> Nir:
        """The identity's NIR (decrypted; never log it)."""
        return Nir(decrypt(self.nir_enc, "creation"))

    @property
    def subject(self) -> str:
        """The subject of this flow's e-mail codes."""
        return f"flow:{self.id}"


def _flow_key(flow_id: str) -> str:
    return rkey("creation", flow_id)


def save(flow: Flow) -> None:
    """Write the flow (Redis TTL is housekeeping; the expiry is checked with the app clock)."""
    ttl = max(1, flow.expires_at - timestamp(clock().now())) + 60
    redis_client().set(_flow_key(flow.id), json.dumps(asdict(flow)), ex=ttl)


def load(flow_id: str | None) -> Flow | None:
    """The live flow with this id, or None (missing, malformed, expired)."""
    if not flow_id or len(flow_id) > 64:
        return None
    raw = redis_client().get(_flow_key(flow_id))
    try:
        flow = Flow(**json.loads(raw)) if raw else None
    except (ValueError, TypeError):
        return None
    return flow if flow and flow.expires_at > timestamp(clock().now()) else None


def discard(flow: Flow) -> None:
    """Forget a finished or abandoned flow."""
    redis_client().delete(_flow_key(flow.id))
    codes.discard(service.EMAIL_CODE, flow.subject)


def _start(kind: str, identity: Identity) -> Flow:
    if service.find_account(identity.nir) is not None:
        raise service.AccountExists(detail=f"{kind}: account exists")
    flow = Flow(id=new_token(24), kind=kind, nir_enc=encrypt(identity.nir.value, "creation"), phone=identity.phone,
                expires_at=timestamp(clock().now()) + settings().interaction_ttl)
    save(flow)
    return flow


# --- identity checks ----------------------------------------------------------------------------
def _count_attempt(address: str, nir: Nir) -> None:
    s = settings()
    by_address = limits.hit_rate("account-creation", limits.client_network(address), window=s.account_creation_window)
    by_nir = limits.hit_rate("account-creation-nir", service.nir_hmac(nir), window=s.account_creation_window)
    if max(by_address, by_nir) > s.account_creation_attempts:
        audit.record("account.creation.check", outcome="limit")
        raise TooManyAttempts(detail="creation attempt limit")


def parse_birthdate(text: str) -> str | None:
    """``JJ/MM/AAAA`` (00 allowed for an unknown day or month, "présumé né") -> ``YYYY-MM-DD``."""
    match = re.fullmatch(r"\s*(\d{2})\s*/\s*(\d{2})\s*/\s*(\d{4})\s*", text or "")
    if not match:
        return None
    day, month, year = match.groups()
    from idp.rfi_adapter.records import valid_birthdate

    value = f"{year}-{month}-{day}"
    return value if valid_birthdate(value) else None


def _compact(text: str) -> str:
    return re.sub(r"[\s-]", "", text or "").upper()


def check_identity(nir: Nir, birthdate: str, vitale_card_serial: str, iban_end: str, *, address: str) -> Flow:
    """Check the four details against the RFI and start a creation flow.

    Raises TooManyAttempts, IdentityMismatch (whichever detail is wrong, or an unknown NIR),
    AccountExists, or RegistryUnavailable (the service is temporarily unavailable)."""
    _count_attempt(address, nir)
    try:
        identity: Identity | None = get_rfi().lookup(nir)
    except IdentityNotFound:
        identity = None
    # Compare every field (constant time each) so that the answer does not tell which one was wrong.
    reference = identity or Identity(nir=nir, given_name="", family_name="", preferred_username=None,
                                     birthdate="", gender="male", birthplace="", birthcountry="", phone=None,
                                     vitale_card_serial="\x00", iban="\x00" * 7)
    tail = _compact(iban_end)
    checks = [constant_time_equal(birthdate, reference.birthdate),
              constant_time_equal(_compact(vitale_card_serial), reference.vitale_card_serial),
              len(tail) == 7 and constant_time_equal(tail, reference.iban[-7:])]
    if identity is None or not all(checks):
        audit.record("account.creation.check", outcome="mismatch")
        raise IdentityMismatch(detail="creation identity mismatch")
    audit.record("account.creation.check", outcome="ok")
    return _start("creation", identity)


def send_provisional_code(nir: Nir) -> str:
    """Text a provisional code to the RFI mobile number (advisors' console, operator CLI); returns the number
    masked. Within two atomic sliding-window quotas (``advisor_sms_limit`` per ``advisor_sms_window``, one Lua
    script each: :func:`idp.mfa.limits.take_quota`) whoever asks: the person's (identity), and the mobile
    number's, since several identities may share one number (a family's phone, or records an attacker knows
    to share it), so that no operator path can flood one phone. A unit is given back when nothing was sent
    (no mobile, the other limit reached, the gateway unreached or refusing), not when the text may have gone
    out (``SmsNotSent.maybe_sent``).
    Raises :class:`PersonSmsLimit` (either limit), :class:`NoPhone` or the gateway's ``SmsNotSent``."""
    from idp.notify import get_sms

    s = settings()
    person = service.nir_hmac(nir)
    taken: list[tuple[str, str, str]] = []  # (quota, subject, ticket) to give back if nothing is sent

    def take(name: str, subject: str, by: str) -> None:
        unit = limits.take_quota(name, subject, quota=s.advisor_sms_limit, window=s.advisor_sms_window,
                                 block=s.advisor_sms_window)
        if unit.ticket is None:
            raise PersonSmsLimit(unit.blocked_until, by)
        taken.append((name, subject, unit.ticket))

    try:
        take(SMS_PERSON_QUOTA, person, "person")
        identity = get_rfi().lookup(nir)
        if not identity.phone:
            raise NoPhone()
        phone = lookup_hmac(identity.phone, purpose="sms-phone")
        take(SMS_PHONE_QUOTA, phone, "phone")
        code = codes.issue(SMS_CODE, person, digits=8, ttl=s.provisional_code_ttl)
        get_sms().send(identity.phone, f"Assurance Maladie : votre code provisoire pour recréer votre compte ameli "
                                       f"est {code}. Il est valable {s.provisional_code_ttl // 60} minutes. "
                                       "Ne le communiquez à personne.")
    except Exception as exc:
        if not getattr(exc, "maybe_sent", False):  # a text that may have gone out stays counted
            for name, subject, ticket in taken:
                limits.give_back_quota(name, subject, ticket)
        raise
    # Keyed hashes, never the NIR or the number: enough to trace a flood of one person or one phone.
    audit.record("account.recreation.code_sent", person=person, phone=phone)
    return masked_phone(identity.phone)


def masked_phone(phone: str) -> str:
    """``+33612345601`` -> ``+33 6 ** ** ** 01``."""
    return f"{phone[:3]} {phone[3:4]} ** ** ** {phone[-2:]}" if len(phone) >= 8 else "**"


def check_provisional_code(nir: Nir, code: str, *, address: str) -> Flow:
    """Check the SMS provisional code and start a re-creation flow (same limits and message as creation)."""
    _count_attempt(address, nir)
    check = codes.verify(SMS_CODE, service.nir_hmac(nir), code, max_tries=settings().max_failed_attempts)
    audit.record("account.recreation.check", outcome=check.outcome)
    if not check.ok:
        raise IdentityMismatch(detail=f"provisional code {check.outcome}")
    return _start("recreation", get_rfi().lookup(nir))


# --- e-mail and password steps ------------------------------------------------------------------
def send_email(flow: Flow, email: str) -> None:
    """Send the 6-digit code to ``email`` (quota per identity, so restarting a flow does not reset it)."""
    service.send_email_code(flow.subject, email, quota_subject=f"create:{service.nir_hmac(flow.nir)}")
    flow.email = service.normalise_email(email)
    flow.step = "code"
    save(flow)


def confirm_email(flow: Flow, code: str) -> bool:
    """True when the code is right; the flow moves on to the password."""
    if flow.email is None or not service.check_email_code(flow.subject, flow.email, code):
        return False
    flow.step = "password"
    save(flow)
    return True


def finish(flow: Flow, password: str) -> Account:
    """Create the account with its validated e-mail and the RFI phone; raises PasswordRejected."""
    account = service.create_account(flow.nir, password, email=flow.email, email_validated=True, phone=flow.phone)
    audit.record(f"account.{flow.kind}.completed", account_id=account.id)
    discard(flow)
    return account
