"""The e-mailed security code (DESIGN.md §2: 6 digits, CSPRNG, hashed, single use, 15 minutes).

A code is bound to one login transaction (the interaction id): it is stored in Redis as a keyed
HMAC of ``transaction:code`` (a plain SHA-256 of six digits would be reversed by trying the
10^6 values), with its account and its expiry instant from the application clock. Sending a new
code replaces the previous one; the quota of 5 codes per sliding hour is taken atomically
(:func:`idp.mfa.limits.take_quota`) before anything is sent and given back when the mail relay
fails, so that an SMTP outage never eats the person's quota. Wrong-code counting and locks are
the caller's business (:mod:`idp.login.service`), because a wrong code locks the whole account.
"""

from __future__ import annotations

import enum
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from idp import metrics
from idp.clock import paris_display, timestamp
from idp.crypto import constant_time_equal, lookup_hmac
from idp.extensions import clock, redis_client, rkey, settings
from idp.mfa import limits
from idp.notify.mail import MailNotSent, send_mail
from idp.redis_store import durable

if TYPE_CHECKING:
    from idp.accounts.models import Account

log = logging.getLogger(__name__)

QUOTA_NAME = "code"
SUBJECT = "Votre code de sécurité pour vous connecter à votre compte ameli"

# Compare-and-delete: the code is consumed only if the stored record is still the one that matched
# (a code re-sent in between is not erased, and two parallel right answers cannot both win).
_CONSUME = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class CodeCheck(enum.Enum):
    """Outcome of :func:`verify_code`."""

    OK = "ok"
    WRONG = "wrong"
    EXPIRED = "expired"
    MISSING = "missing"  # never sent for this transaction, or already used


class CodeQuotaExceeded(Exception):
    """The code quota is used up: code requests are blocked until ``until`` (UTC)."""

    def __init__(self, until: datetime) -> None:
        super().__init__("code quota exceeded")
        self.until = until


@dataclass(frozen=True, slots=True)
class SentCode:
    """A code that left by e-mail (the digits themselves are never returned to callers)."""

    expires_at: datetime
    used: int  # codes sent in the current window, this one included


def _key(transaction_id: str) -> str:
    return rkey("code", transaction_id)


def _digest(transaction_id: str, code: str) -> str:
    return lookup_hmac(f"{transaction_id}:{code}", purpose="security-code")


def new_code() -> str:
    """Six digits from the operating system's CSPRNG (leading zeros kept)."""
    return f"{secrets.randbelow(10**6):06d}"


def send_code(transaction_id: str, account: Account) -> SentCode:
    """Take one unit of the quota, store a new code for the transaction and e-mail it.

    Raises :class:`CodeQuotaExceeded` when the quota is used up (nothing is sent) and
    :class:`idp.notify.mail.MailNotSent` when the relay fails (the quota unit is given back and
    the new code is discarded)."""
    s = settings()
    if not account.email:
        raise ValueError("the account has no e-mail address")
    quota = limits.take_quota(QUOTA_NAME, account.id, quota=s.email_code_quota,
                              window=s.email_code_quota_window, block=s.email_code_quota_block)
    if not quota.allowed:
        assert quota.blocked_until is not None
        raise CodeQuotaExceeded(quota.blocked_until)
    code = new_code()
    expires_at = clock().now() + timedelta(seconds=s.email_code_ttl)
    record = json.dumps({"h": _digest(transaction_id, code), "a": account.id, "exp": timestamp(expires_at)})
    redis_client().set(_key(transaction_id), record, ex=s.email_code_ttl + 3600)
    sent = False
    try:
        send_mail(account.email, SUBJECT, "security_code", code=code, minutes=s.email_code_ttl // 60,
                  expires=paris_display(expires_at))
        sent = True
        metrics.code_sent()
    except MailNotSent:
        assert quota.ticket is not None
        limits.give_back_quota(QUOTA_NAME, account.id, quota.ticket)
        raise
    finally:
        if not sent:  # never leave a code behind that nobody received (whatever went wrong)
            _consume(transaction_id, record)
    log.info("security code sent", extra={"account_id": account.id, "quota_used": quota.used})
    return SentCode(expires_at=expires_at, used=quota.used)


def _consume(transaction_id: str, record: str) -> bool:
    return bool(int(durable(_CONSUME, keys=[_key(transaction_id)], args=[record])))


def _load(transaction_id: str) -> tuple[str, dict[str, object]] | None:
    raw = redis_client().get(_key(transaction_id))
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return (text, data) if isinstance(data, dict) else None


def _state(transaction_id: str, account_id: str) -> tuple[CodeCheck | None, str, dict[str, object]]:
    loaded = _load(transaction_id)
    if loaded is None:
        return CodeCheck.MISSING, "", {}
    text, data = loaded
    if data.get("a") != account_id:
        return CodeCheck.MISSING, text, data
    if timestamp(clock().now()) >= int(str(data.get("exp", 0))):
        return CodeCheck.EXPIRED, text, data
    return None, text, data


@dataclass(frozen=True, slots=True)
class Waiting:
    """What :func:`look` read: ``state`` None when a live code of the account waits (then ``record`` is it)."""

    state: CodeCheck | None
    record: str
    data: dict[str, object]


def look(transaction_id: str, account_id: str) -> Waiting:
    """The transaction's code as it is now (read only), for :func:`verify_code` to check without reading
    it again."""
    return Waiting(*_state(transaction_id, account_id))


def waiting(transaction_id: str, account_id: str) -> CodeCheck | None:
    """None when a live code of the account waits for the transaction, else MISSING or EXPIRED (read only):
    lets the caller reserve a guess only when there is a code to guess."""
    return look(transaction_id, account_id).state


def verify_code(transaction_id: str, account_id: str, code: str, *, seen: Waiting | None = None) -> CodeCheck:
    """Check ``code`` for the transaction; a right code is consumed (single use).

    ``seen``: what :func:`look` read just before (no second read): the consumption is atomic on that very
    record, so a code consumed or replaced since is MISSING, never a success. The expiry is decided by the
    application clock, not by the Redis TTL (checked again now)."""
    if seen is None:
        seen = look(transaction_id, account_id)
    state, text, data = seen.state, seen.record, seen.data
    if state is None and timestamp(clock().now()) >= int(str(data.get("exp", 0))):
        state = CodeCheck.EXPIRED
    if state is not None:
        return state
    candidate = code.strip() if len(code) <= 32 else ""
    if not constant_time_equal(_digest(transaction_id, candidate), str(data.get("h", ""))):
        return CodeCheck.WRONG
    # Someone else consumed it (parallel submit) or a new code replaced it in between: not a success.
    return CodeCheck.OK if _consume(transaction_id, text) else CodeCheck.MISSING


def code_expiry(transaction_id: str) -> datetime | None:
    """When the transaction's current code expires (None when no code is waiting)."""
    loaded = _load(transaction_id)
    if loaded is None:
        return None
    return datetime.fromtimestamp(int(str(loaded[1].get("exp", 0))), UTC)


def discard(transaction_id: str) -> None:
    """Forget the transaction's code (login abandoned or finished)."""
    redis_client().delete(_key(transaction_id))
