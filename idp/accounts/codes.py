"""One-time codes kept in Redis: e-mail validation codes (6 digits) and SMS provisional codes.

A code is stored only as a keyed HMAC bound to its purpose, its subject and (for e-mail codes) the
address it was sent to, with its expiry decided by the application clock. Each verification
increments a try counter atomically (Lua) before comparing, so parallel guesses on several workers
cannot exceed the limit; the right code is single use (only the caller whose DEL removed the record
wins). Codes never appear in logs or audit events.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

from idp.clock import timestamp
from idp.crypto import constant_time_equal, lookup_hmac
from idp.extensions import clock, redis_client, rkey
from idp.redis_store import script

# KEYS[1] = hash {h, exp, tries}. Returns {} when absent, else {h, exp, tries_after}.
_TRY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
return {redis.call('HGET', KEYS[1], 'h'), redis.call('HGET', KEYS[1], 'exp'), tries}
"""

Outcome = Literal["ok", "wrong", "expired", "missing", "exhausted"]


@dataclass(frozen=True, slots=True)
class CodeCheck:
    """Result of :func:`verify`; ``ok`` only for the right, live, first-used code."""

    outcome: Outcome

    @property
    def ok(self) -> bool:
        """True when the code was accepted (and is now used up)."""
        return self.outcome == "ok"


def _key(kind: str, subject: str) -> str:
    return rkey("otc", kind, subject)


def _digest(kind: str, subject: str, bound_to: str, code: str) -> str:
    return lookup_hmac(f"{kind}\x1f{subject}\x1f{bound_to}\x1f{code}", "one-time-code")


def new_code(digits: int) -> str:
    """``digits`` decimal digits from the OS CSPRNG (leading zeros kept)."""
    return "".join(secrets.choice("0123456789") for _ in range(digits))


def issue(kind: str, subject: str, *, digits: int, ttl: int, bound_to: str = "") -> str:
    """Create a new code for ``subject`` (replacing any previous one) and return it, to be sent."""
    code = new_code(digits)
    now = timestamp(clock().now())
    key = _key(kind, subject)
    # One MULTI/EXEC: a verification never sees the old record half replaced, nor a record without expiry.
    with redis_client().pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.hset(key, mapping={"h": _digest(kind, subject, bound_to, code), "exp": now + ttl, "tries": 0})
        pipe.expire(key, ttl + 60)
        pipe.execute()
    return code


def verify(kind: str, subject: str, code: str, *, max_tries: int, bound_to: str = "") -> CodeCheck:
    """Check ``code``; the record is burnt once used, expired or after ``max_tries`` attempts."""
    key = _key(kind, subject)
    reply = script(_TRY)(keys=[key], args=[])
    if not reply:
        return CodeCheck("missing")
    stored, expires, tries = (v.decode() if isinstance(v, bytes) else v for v in reply)
    if int(expires) <= timestamp(clock().now()):
        redis_client().delete(key)
        return CodeCheck("expired")
    if int(tries) > max_tries:
        redis_client().delete(key)
        return CodeCheck("exhausted")
    candidate = "".join(ch for ch in (code or "") if not ch.isspace())
    if constant_time_equal(_digest(kind, subject, bound_to, candidate), str(stored)):
        # Single use: of two parallel right answers only the one that deletes the record wins.
        return CodeCheck("ok" if redis_client().delete(key) == 1 else "missing")
    if int(tries) >= max_tries:
        redis_client().delete(key)
        return CodeCheck("exhausted")
    return CodeCheck("wrong")


def discard(kind: str, subject: str) -> None:
    """Forget the pending code of ``subject`` (mail not sent, account reset)."""
    redis_client().delete(_key(kind, subject))
