"""WebAuthn challenges kept server-side: single use, short-lived, bound to one login interaction.

A challenge is stored in Redis under ``webauthn-challenge:<purpose>:<binding>`` with the instant it
stops being valid. :func:`take` reads and deletes it in one atomic GETDEL, so two parallel answers
(or a replayed one) cannot both use it; validity is decided by the application clock, the Redis TTL
only cleans up (DESIGN.md §3).
"""

from __future__ import annotations

import json
from typing import Literal

from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

from idp.clock import timestamp
from idp.extensions import clock, redis_client, rkey, settings

Purpose = Literal["register", "login"]


def _key(purpose: Purpose, binding: str) -> str:
    return rkey("webauthn-challenge", purpose, binding)


def keep(purpose: Purpose, binding: str, challenge: bytes, *, account_id: str | None = None) -> None:
    """Remember ``challenge`` for ``binding`` (an interaction id); a newer one replaces the older."""
    ttl = settings().webauthn_challenge_ttl
    record = {"challenge": bytes_to_base64url(challenge), "expires_at": timestamp(clock().now()) + ttl,
              "account_id": account_id}
    redis_client().set(_key(purpose, binding), json.dumps(record), ex=ttl + 60)


def take(purpose: Purpose, binding: str, *, account_id: str | None = None) -> bytes | None:
    """The challenge issued for ``binding``, consumed; None when missing, used, expired or bound to
    another account than ``account_id`` (registration binds the challenge to the account)."""
    raw = redis_client().getdel(_key(purpose, binding))
    if raw is None:
        return None
    try:
        record = json.loads(raw)
        challenge = base64url_to_bytes(record["challenge"])
        expires_at = int(record["expires_at"])
    except (ValueError, KeyError, TypeError):
        return None
    if timestamp(clock().now()) >= expires_at:
        return None
    if record.get("account_id") != account_id:
        return None
    return challenge
