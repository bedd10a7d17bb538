"""Client of a REST registry: ``GET {IDP_RFI_URL}/individus/{nir}``.

- (connect, read) timeouts on every request; bounded retries (``rfi_retries``) with exponential
  backoff (``rfi_backoff * 2**attempt``) on connection errors, timeouts and 5xx answers only;
- a 404 is an answer ("not found"), never retried and never counted as a failure;
- fields of the answer this provider does not know are ignored (a registry that adds one must not take
  the service down); the known ones are validated;
- anything else (timeouts, 5xx, malformed JSON, an identity that does not validate or is not the
  one asked for) is :class:`RegistryUnavailable`: people are told the service is temporarily
  unavailable, never that their password or details are wrong;
- a circuit breaker opens after ``rfi_breaker_threshold`` consecutive failed look-ups and fails fast
  for ``rfi_breaker_reset`` seconds; then one trial request (half-open) closes it or opens it again.

Why the breaker state lives in Redis (via ``rkey``) and not in process memory: every gunicorn worker
on every node then sees the same state, so a registry outage is detected once for the whole fleet
instead of each worker spending ``threshold`` slow requests to learn it, and only one trial request
per reset period reaches a recovering registry (DESIGN.md §3: nothing a decision needs lives in
process memory). Transitions are Lua scripts (atomic across workers) and compare timestamps from the
application clock. If Redis itself is down the look-up fails closed like any dependency failure.
The NIR is in the URL path: it is never logged (only the outcome and the HTTP status are).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import requests

from idp import metrics
from idp.clock import timestamp
from idp.extensions import clock, redis_client, rkey
from idp.nir import Nir
from idp.redis_store import script
from idp.rfi_adapter.base import Identity, IdentityNotFound, RegistryUnavailable
from idp.rfi_adapter.records import InvalidRecord, parse_record

log = logging.getLogger(__name__)

# KEYS[1] = hash {failures, open_until, trial_until}; ARGV = now, trial_ttl.
# Returns 1 (closed: go), 2 (half-open: this caller is the trial), 0 (open: fail fast).
_BEFORE = """
local now = tonumber(ARGV[1])
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if open_until == 0 then return 1 end
if now < open_until then return 0 end
local trial_until = tonumber(redis.call('HGET', KEYS[1], 'trial_until') or '0')
if trial_until > now then return 0 end
redis.call('HSET', KEYS[1], 'trial_until', now + tonumber(ARGV[2]))
return 2
"""

# ARGV = now, threshold, reset_seconds, ttl. Returns 1 when the breaker is (now) open.
_FAILURE = """
local now = tonumber(ARGV[1])
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if open_until > 0 or failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'open_until', now + tonumber(ARGV[3]), 'trial_until', 0)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  return 1
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return 0
"""


class _Retryable(Exception):
    """A failure worth another attempt (network, timeout, 5xx)."""


class CircuitBreaker:
    """Shared (Redis) consecutive-failure breaker; see the module docstring."""

    def __init__(self, name: str, *, threshold: int, reset_seconds: int) -> None:
        self.name = name
        self.threshold = threshold
        self.reset_seconds = reset_seconds

    def _key(self) -> str:
        return rkey("breaker", self.name)

    def allow(self) -> bool:
        """True when a request may go out (closed, or this caller is the half-open trial)."""
        # The trial slot lasts one reset period: a trial that dies without reporting cannot wedge it.
        reply = script(_BEFORE)(keys=[self._key()], args=[timestamp(clock().now()), self.reset_seconds])
        return int(reply) != 0

    def success(self) -> None:
        """The registry answered: close the breaker."""
        redis_client().delete(self._key())

    def failure(self) -> bool:
        """One more failed look-up; returns True when the breaker is open afterwards."""
        reply = script(_FAILURE)(
            keys=[self._key()], args=[timestamp(clock().now()), self.threshold, self.reset_seconds,
                                      self.reset_seconds + 3600])
        return bool(int(reply))

    def state(self) -> str:
        """closed | open | half-open (for health pages and tests)."""
        raw = redis_client().hget(self._key(), "open_until")
        open_until = int(raw or 0)
        if not open_until:
            return "closed"
        return "open" if timestamp(clock().now()) < open_until else "half-open"


class HttpRfiAdapter:
    """RFI adapter over HTTP with timeouts, retries with backoff and a shared circuit breaker."""

    def __init__(self, base_url: str, *, connect_timeout: float, read_timeout: float, retries: int,
                 backoff: float, breaker: CircuitBreaker, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.retries = retries
        self.backoff = backoff
        self.breaker = breaker
        self.session = session or requests.Session()
        self.session.headers.update({"Accept": "application/json"})
        # Real waiting between retries (not a decision): the app clock is for decisions only.
        self.sleep = sleep

    @classmethod
    def from_settings(cls, settings: Any) -> HttpRfiAdapter:
        """Build from the ``rfi_*`` settings."""
        return cls(settings.rfi_url, connect_timeout=settings.rfi_connect_timeout,
                   read_timeout=settings.rfi_read_timeout, retries=settings.rfi_retries,
                   backoff=settings.rfi_backoff,
                   breaker=CircuitBreaker("rfi", threshold=settings.rfi_breaker_threshold,
                                          reset_seconds=settings.rfi_breaker_reset))

    def lookup(self, nir: Nir) -> Identity:
        """The identity for ``nir``; :class:`IdentityNotFound` on 404, :class:`RegistryUnavailable` otherwise."""
        if not self.breaker.allow():
            log.warning("rfi circuit open", extra={"outcome": "fail_fast"})
            metrics.rfi_breaker_open()
            raise RegistryUnavailable(detail="rfi circuit open")
        try:
            identity = self._fetch_with_retries(nir)
        except IdentityNotFound:
            self.breaker.success()  # the registry answered
            raise
        except RegistryUnavailable as exc:
            opened = self.breaker.failure()
            log.warning("rfi unavailable", extra={"outcome": exc.detail, "breaker_open": opened})
            raise
        self.breaker.success()
        return identity

    def _fetch_with_retries(self, nir: Nir) -> Identity:
        last = "unknown"
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return self._fetch_once(nir)
            except _Retryable as exc:
                last = str(exc)
        raise RegistryUnavailable(detail=f"rfi failed after {self.retries + 1} attempts: {last}")

    @metrics.rfi_request
    def _fetch_once(self, nir: Nir) -> Identity:
        try:
            response = self.session.get(f"{self.base_url}/individus/{nir.value}", timeout=self.timeout)
        except requests.Timeout:
            raise _Retryable("timeout") from None
        except requests.RequestException as exc:
            raise _Retryable(type(exc).__name__) from None
        if response.status_code == 404:
            raise IdentityNotFound()
        if response.status_code >= 500:
            raise _Retryable(f"http {response.status_code}")
        if response.status_code != 200:
            raise RegistryUnavailable(detail=f"rfi http {response.status_code}")
        try:
            identity = parse_record(response.json(), extra_fields=True)
        except (ValueError, InvalidRecord):  # requests' JSONDecodeError is a ValueError
            raise RegistryUnavailable(detail="rfi malformed answer") from None
        if identity.nir != nir:
            raise RegistryUnavailable(detail="rfi answered for another person")
        return identity
