"""Atomic failure counters, locks and quotas in Redis.

Every check-and-update runs as one Lua script so that parallel requests on any number of workers
and nodes can never pass a limit (no read-then-write race). Decisions compare timestamps from the
application clock passed in as arguments; Redis TTLs only clean up.

- :func:`reserve_attempt` / :func:`reset_failures` / :func:`lock_status`: "3 wrong passwords" and
  "3 wrong codes" each lock the account 15 minutes (separate counters, DESIGN.md §2). An attempt is
  reserved (counted) before its guess is checked, so that parallel guesses never exceed the limit.
- :func:`take_quota` / :func:`give_back_quota`: "5 codes per sliding hour; the 6th request blocks
  code requests for 1 hour".
- :func:`hit_rate`: a plain fixed-window counter (creation attempts); :func:`take_rate` /
  :func:`give_back_rate`: the same, reserved before the action (per-address login throttling).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from idp.clock import timestamp
from idp.crypto import new_token
from idp.extensions import clock, hashtag, redis_client, rkey, settings
from idp.redis_store import durable, script

log = logging.getLogger(__name__)

# Reserve one attempt BEFORE the guess is checked, so that parallel requests cannot all be checked
# before the lock is set. KEYS[1] = this kind's hash {count, lock_until}; KEYS[2] = the other kind's hash
# (its lock blocks too: either lock blocks the whole account). ARGV = now, max, lock_seconds, ttl.
# ``count`` holds the failures plus the attempts in flight; the attempt that reaches ``max`` sets the lock in
# advance (a failure keeps it, a success lifts it), so at most ``max`` guesses are ever checked per lock window.
# Returns {allowed(0/1), count, lock_until}: refused with the lock in force, or allowed (lock_until > 0 when
# this is the last allowed attempt and its failure leaves the account locked).
_RESERVE = """
local now = tonumber(ARGV[1])
local own = tonumber(redis.call('HGET', KEYS[1], 'lock_until') or '0')
local other = tonumber(redis.call('HGET', KEYS[2], 'lock_until') or '0')
if own > now or other > now then
  local until_ = own
  if other > own then until_ = other end
  return {0, tonumber(redis.call('HGET', KEYS[1], 'count') or '0'), until_}
end
if own > 0 then
  redis.call('HSET', KEYS[1], 'count', 0, 'lock_until', 0)
end
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
if count >= tonumber(ARGV[2]) then
  local lock_until = now + tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], 'lock_until', lock_until)
  return {1, count, lock_until}
end
return {1, count, 0}
"""

# Give back a reservation whose attempt turned out not to be a guess (no code waiting any more).
# KEYS[1] = hash {count, lock_until}; ARGV = lock_until set by that reservation (0: none).
_RELEASE = """
if tonumber(ARGV[1]) > 0 and tonumber(redis.call('HGET', KEYS[1], 'lock_until') or '0') == tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'lock_until', 0)
end
if tonumber(redis.call('HGET', KEYS[1], 'count') or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'count', -1)
end
return 1
"""

# KEYS[1] = zset of request ids scored by time; KEYS[2] = string block_until
# ARGV = now, window, quota, block_seconds, member, ttl
# Returns {allowed(0/1), used_after, block_until}
_QUOTA = """
local now = tonumber(ARGV[1])
local block_until = tonumber(redis.call('GET', KEYS[2]) or '0')
if block_until > now then
  return {0, redis.call('ZCARD', KEYS[1]), block_until}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
local used = redis.call('ZCARD', KEYS[1])
if used >= tonumber(ARGV[3]) then
  block_until = now + tonumber(ARGV[4])
  redis.call('SET', KEYS[2], block_until, 'EX', tonumber(ARGV[4]) + 60)
  redis.call('DEL', KEYS[1])
  return {0, used, block_until}
end
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
return {1, used + 1, 0}
"""

# KEYS[1] = counter; ARGV = ttl. Returns the count after increment.
_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1])) end
return n
"""

# Reserve one unit of a fixed-window rate before the action it limits. KEYS[1] = counter; ARGV = ttl, limit.
# Returns 1 (allowed, counted) or 0 (over the limit, not counted).
_TAKE_RATE = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1])) end
if n > tonumber(ARGV[2]) then
  redis.call('DECR', KEYS[1])
  return 0
end
return 1
"""

# Give back a unit taken by _TAKE_RATE (never below zero, never recreating an expired counter).
_GIVE_RATE = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class LockStatus:
    """Outcome of a failure registration or a lock check."""

    locked: bool
    failures: int
    until: datetime | None

    @classmethod
    def from_reply(cls, reply: list[int]) -> LockStatus:
        """Build from a Lua reply {locked, count, until}."""
        until = datetime.fromtimestamp(int(reply[2]), UTC) if int(reply[2]) else None
        return cls(bool(int(reply[0])), int(reply[1]), until)


@dataclass(frozen=True, slots=True)
class QuotaResult:
    """Outcome of a quota request; ``ticket`` lets the caller give the unit back (e.g. mail failed)."""

    allowed: bool
    used: int
    blocked_until: datetime | None
    ticket: str | None


@dataclass(frozen=True, slots=True)
class Attempt:
    """A reserved (or refused) attempt: see :func:`reserve_attempt`."""

    allowed: bool  # the guess may be checked
    failures: int  # failures plus attempts in flight, this one included
    until: datetime | None  # refused: the lock in force; allowed: the lock a failure of this attempt leaves

    @classmethod
    def from_reply(cls, reply: list[int]) -> Attempt:
        """Build from a Lua reply {allowed, count, lock_until}."""
        until = datetime.fromtimestamp(int(reply[2]), UTC) if int(reply[2]) else None
        return cls(bool(int(reply[0])), int(reply[1]), until)


@dataclass(frozen=True, slots=True)
class RateSlot:
    """A unit taken by :func:`take_rate`; ``key`` names the window it was counted in (None: refused)."""

    allowed: bool
    key: str | None


def _failure_key(kind: str, account_id: str) -> str:
    return rkey("fail", kind, hashtag(account_id))


def _quota_keys(name: str, subject: str) -> list[str]:
    """The quota's used units and its block, in one slot (the subject's)."""
    return [rkey("quota", name, hashtag(subject)), rkey("quota-block", name, hashtag(subject))]


def _other_kind(kind: str) -> str:
    return "code" if kind == "pwd" else "pwd"


def reserve_attempt(kind: str, account_id: str) -> Attempt:
    """Reserve one attempt of ``kind`` ("pwd" or "code") before checking the guess (atomic, see ``_RESERVE``).

    Refused while either lock of the account is in force. The reservation counts as the failure if the
    guess is wrong (nothing more to record); :func:`reset_failures` after a success, :func:`release_attempt`
    when no guess was checked after all."""
    s = settings()
    reply = durable(_RESERVE, keys=[_failure_key(kind, account_id), _failure_key(_other_kind(kind), account_id)],
                    args=[timestamp(clock().now()), s.max_failed_attempts, s.lockout_duration,
                          s.lockout_duration + 86400])
    return Attempt.from_reply(reply)


def release_attempt(kind: str, account_id: str, attempt: Attempt) -> None:
    """Give back an allowed reservation whose guess was never checked (and the lock it set in advance)."""
    if not attempt.allowed:
        return
    stamp = timestamp(attempt.until) if attempt.until else 0
    script(_RELEASE)(keys=[_failure_key(kind, account_id)], args=[stamp])


def register_failure(kind: str, account_id: str) -> LockStatus:
    """Count one failure of ``kind`` that was not reserved beforehand; locks when the limit is reached."""
    attempt = reserve_attempt(kind, account_id)
    return LockStatus(attempt.until is not None, attempt.failures, attempt.until)


def lock_status(kind: str, account_id: str) -> LockStatus:
    """Whether ``kind`` is locked now for the account (read only)."""
    return _status(redis_client().hmget(_failure_key(kind, account_id), ["count", "lock_until"]))


def _status(raw: list[bytes | str | None]) -> LockStatus:
    count = int(raw[0] or 0)
    until = int(raw[1] or 0)
    if until > timestamp(clock().now()):
        return LockStatus(True, count, datetime.fromtimestamp(until, UTC))
    return LockStatus(False, 0 if until else count, None)


def account_lock(account_id: str) -> LockStatus:
    """The account's lock, whichever counter (password or code) set it; the latest end wins."""
    return lock_and_block(account_id, None)[0]


def lock_and_block(account_id: str, quota: str | None) -> tuple[LockStatus, datetime | None]:
    """:func:`account_lock` and, for ``quota``, :func:`quota_block` of the account, in one round trip."""
    pipe = redis_client().pipeline(transaction=False)  # reads only, one round trip
    for kind in ("pwd", "code"):
        pipe.hmget(_failure_key(kind, account_id), ["count", "lock_until"])
    if quota is not None:
        pipe.get(_quota_keys(quota, account_id)[1])
    replies = pipe.execute()
    return _latest_lock([_status(raw) for raw in replies[:2]]), \
        (_block_until(replies[2]) if quota is not None else None)


def _latest_lock(statuses: list[LockStatus]) -> LockStatus:
    locked = [st for st in statuses if st.locked]
    if not locked:
        return LockStatus(False, 0, None)
    return max(locked, key=lambda st: st.until or datetime.min.replace(tzinfo=UTC))


def reset_failures(kind: str, account_id: str) -> None:
    """A success of ``kind`` resets its own counter, with the lock the last reservation may have set in
    advance: every reservation made since is refused, so only a guess allowed in this window succeeds."""
    redis_client().delete(_failure_key(kind, account_id))


def unlock_account(account_id: str) -> None:
    """Operator action (``idp accounts unlock``): clear both counters, their locks and the code quota."""
    redis_client().delete(_failure_key("pwd", account_id), _failure_key("code", account_id),
                          *_quota_keys("code", account_id))


def take_quota(name: str, subject: str, *, quota: int, window: int, block: int) -> QuotaResult:
    """Use one unit of a sliding-window quota; passing it blocks further requests for ``block`` s."""
    ticket = new_token(9)
    reply = durable(_QUOTA, keys=_quota_keys(name, subject),
                    args=[timestamp(clock().now()), window, quota, block, ticket, window + 60])
    allowed = bool(int(reply[0]))
    until = datetime.fromtimestamp(int(reply[2]), UTC) if int(reply[2]) else None
    return QuotaResult(allowed, int(reply[1]), until, ticket if allowed else None)


def give_back_quota(name: str, subject: str, ticket: str) -> None:
    """Return a unit taken by :func:`take_quota` (the action it paid for did not happen). Best effort: the
    callers give back while handling the action's own failure, which a Redis error here must not hide; the
    unit then stays spent (logged), which errs on the side of the limit."""
    try:
        redis_client().zrem(_quota_keys(name, subject)[0], ticket)
    except Exception:
        log.warning("quota unit not given back", extra={"quota": name})


def quota_block(name: str, subject: str) -> datetime | None:
    """When requests for this quota are blocked, until when."""
    return _block_until(redis_client().get(_quota_keys(name, subject)[1]))


def _block_until(raw: bytes | str | None) -> datetime | None:
    until = int(raw or 0)
    return datetime.fromtimestamp(until, UTC) if until > timestamp(clock().now()) else None


def quota_used(name: str, subject: str, *, window: int) -> int:
    """How many units of the sliding-window quota were used in the last ``window`` seconds (read only)."""
    now = timestamp(clock().now())
    return int(redis_client().zcount(_quota_keys(name, subject)[0], now - window + 1, "+inf"))


def client_network(address: str | None) -> str:
    """The subject of a per-address budget: an IPv4 address itself, an IPv6 address's /64 (one /64 is one
    subscriber: an attacker holds all of it and would otherwise get a fresh budget per address)."""
    if not address:
        return "-"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def hit_rate(name: str, subject: str, *, window: int) -> int:
    """Count one event in the current fixed window of ``window`` seconds; returns the count so far."""
    bucket = timestamp(clock().now()) // window
    return int(script(_HIT)(keys=[rkey("rate", name, subject, bucket)], args=[window + 60]))


def take_rate(name: str, subject: str, *, window: int, limit: int) -> RateSlot:
    """Reserve one unit of a fixed-window rate before the action (atomic check-and-count).

    Refused (nothing counted) once ``limit`` units are used in the window; keep the unit when the action
    counts (a failure), give it back with :func:`give_back_rate` when it does not."""
    key = rkey("rate", name, subject, timestamp(clock().now()) // window)
    allowed = bool(int(durable(_TAKE_RATE, keys=[key], args=[window + 60, limit])))
    return RateSlot(allowed, key if allowed else None)


def give_back_rate(slot: RateSlot) -> None:
    """Return a unit taken by :func:`take_rate` (in the window it was taken from)."""
    if slot.key is not None:
        script(_GIVE_RATE)(keys=[slot.key], args=[])
