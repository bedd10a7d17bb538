"""Atomic failure counters, locks and quotas in Redis.

Every check-and-update runs as one Lua script so that parallel requests on any number of workers
and nodes can never pass a limit (no read-then-write race). Decisions compare timestamps from the
application clock passed in as arguments; Redis TTLs only clean up.

- :func:`register_failure` / :func:`reset_failures` / :func:`lock_status`: "3 wrong passwords" and
  "3 wrong codes" each lock the account 15 minutes (separate counters, DESIGN.md §2).
- :func:`take_quota` / :func:`give_back_quota`: "5 codes per sliding hour; the 6th request blocks
  code requests for 1 hour".
- :func:`hit_rate`: a plain fixed-window counter (per-address throttling, creation attempts).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from idp.clock import timestamp
from idp.crypto import new_token
from idp.extensions import clock, redis_client, rkey, settings

# KEYS[1] = hash {count, lock_until}; ARGV = now, max, lock_seconds, ttl
# Returns {locked(0/1), count_after, lock_until}
_FAILURE = """
local now = tonumber(ARGV[1])
local lock_until = tonumber(redis.call('HGET', KEYS[1], 'lock_until') or '0')
if lock_until > now then
  return {1, tonumber(redis.call('HGET', KEYS[1], 'count') or '0'), lock_until}
end
if lock_until > 0 then
  redis.call('HSET', KEYS[1], 'count', 0, 'lock_until', 0)
end
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
if count >= tonumber(ARGV[2]) then
  lock_until = now + tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], 'count', 0, 'lock_until', lock_until)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  return {1, count, lock_until}
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return {0, count, 0}
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

# KEYS[1] = hash {count, lock_until}; ARGV = now. Deletes the counter unless a lock is in force, in one step:
# a read-then-delete from Python could erase a lock set by a parallel failure in between.
_RESET = """
local lock_until = tonumber(redis.call('HGET', KEYS[1], 'lock_until') or '0')
if lock_until > tonumber(ARGV[1]) then return 0 end
return redis.call('DEL', KEYS[1])
"""

# KEYS[1] = counter; ARGV = ttl. Returns the count after increment.
_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1])) end
return n
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


def _failure_key(kind: str, account_id: str) -> str:
    return rkey("fail", kind, account_id)


def register_failure(kind: str, account_id: str) -> LockStatus:
    """Count one failure of ``kind`` ("pwd" or "code"); locks when the limit is reached."""
    s = settings()
    script = redis_client().register_script(_FAILURE)
    reply = script(keys=[_failure_key(kind, account_id)],
                   args=[timestamp(clock().now()), s.max_failed_attempts, s.lockout_duration,
                         s.lockout_duration + 86400])
    return LockStatus.from_reply(reply)


def lock_status(kind: str, account_id: str) -> LockStatus:
    """Whether ``kind`` is locked now for the account (read only)."""
    raw = redis_client().hmget(_failure_key(kind, account_id), ["count", "lock_until"])
    count = int(raw[0] or 0)
    until = int(raw[1] or 0)
    if until > timestamp(clock().now()):
        return LockStatus(True, count, datetime.fromtimestamp(until, UTC))
    return LockStatus(False, 0 if until else count, None)


def account_lock(account_id: str) -> LockStatus:
    """The account's lock, whichever counter (password or code) set it; the latest end wins."""
    statuses = [lock_status(kind, account_id) for kind in ("pwd", "code")]
    locked = [st for st in statuses if st.locked]
    if not locked:
        return LockStatus(False, 0, None)
    return max(locked, key=lambda st: st.until or datetime.min.replace(tzinfo=UTC))


def reset_failures(kind: str, account_id: str) -> None:
    """A success of ``kind`` resets its own counter (never a lock in force: callers check first)."""
    script = redis_client().register_script(_RESET)
    script(keys=[_failure_key(kind, account_id)], args=[timestamp(clock().now())])


def unlock_account(account_id: str) -> None:
    """Operator action (``idp accounts unlock``): clear both counters, their locks and the code quota."""
    redis_client().delete(_failure_key("pwd", account_id), _failure_key("code", account_id),
                          rkey("quota", "code", account_id), rkey("quota-block", "code", account_id))


def take_quota(name: str, subject: str, *, quota: int, window: int, block: int) -> QuotaResult:
    """Use one unit of a sliding-window quota; passing it blocks further requests for ``block`` s."""
    ticket = new_token(9)
    script = redis_client().register_script(_QUOTA)
    reply = script(keys=[rkey("quota", name, subject), rkey("quota-block", name, subject)],
                   args=[timestamp(clock().now()), window, quota, block, ticket, window + 60])
    allowed = bool(int(reply[0]))
    until = datetime.fromtimestamp(int(reply[2]), UTC) if int(reply[2]) else None
    return QuotaResult(allowed, int(reply[1]), until, ticket if allowed else None)


def give_back_quota(name: str, subject: str, ticket: str) -> None:
    """Return a unit taken by :func:`take_quota` (the action it paid for did not happen)."""
    redis_client().zrem(rkey("quota", name, subject), ticket)


def quota_block(name: str, subject: str) -> datetime | None:
    """When requests for this quota are blocked, until when."""
    until = int(redis_client().get(rkey("quota-block", name, subject)) or 0)
    return datetime.fromtimestamp(until, UTC) if until > timestamp(clock().now()) else None


def peek_rate(name: str, subject: str, *, window: int) -> int:
    """The count of the current fixed window of :func:`hit_rate` without adding to it."""
    bucket = timestamp(clock().now()) // window
    return int(redis_client().get(rkey("rate", name, subject, bucket)) or 0)


def hit_rate(name: str, subject: str, *, window: int) -> int:
    """Count one event in the current fixed window of ``window`` seconds; returns the count so far."""
    bucket = timestamp(clock().now()) // window
    script = redis_client().register_script(_HIT)
    return int(script(keys=[rkey("rate", name, subject, bucket)], args=[window + 60]))
