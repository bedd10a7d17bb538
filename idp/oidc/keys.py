"""Signing keys: generation, rotation and the published JWKS (RFC 7517, OIDC Core §10.1.1).

Life of a key: ``next`` (published in the JWKS, not used yet, so that RPs caching the JWKS already
know it when it starts signing) -> ``current`` (signs) -> ``retired`` (still published for
``key_retire_after`` seconds so that what it signed stays verifiable) -> unpublished.
One chain per algorithm: RS256 (default) and ES256 (per client). Every key has a ``kid``.
Private parts are sealed with :func:`idp.crypto.encrypt` (AES-GCM) before they reach the database.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from joserfc.jwk import ECKey, Key, KeySet, RSAKey
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from idp.crypto import decrypt, encrypt, new_token
from idp.extensions import clock, db, settings
from idp.oidc.models import SigningKey

if TYPE_CHECKING:
    from flask import Flask

ALGORITHMS = ("RS256", "ES256")
_PURPOSE = "oidc-signing-key"
# How long a worker reuses the key records it read (rotation reaches every worker within this time;
# the key that starts signing was published as ``next`` long before, so verifiers already know it).
KEY_CACHE_SECONDS = 5.0


def aware(instant: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes for timezone-aware columns: read them as UTC."""
    if instant is None or instant.tzinfo is not None:
        return instant
    return instant.replace(tzinfo=UTC)


def _generate(alg: str) -> Key:
    kid = new_token(12)
    params = {"kid": kid, "alg": alg, "use": "sig"}
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters=params, private=True)  # type: ignore[arg-type]
    return RSAKey.generate_key(2048, parameters=params, private=True)  # type: ignore[arg-type]


def _new_record(alg: str, state: str) -> SigningKey:
    key = _generate(alg)
    now = clock().now()
    return SigningKey(kid=key.kid, alg=alg, state=state, created_at=now,
                      activated_at=now if state == "current" else None,
                      private_jwk_enc=encrypt(json.dumps(key.as_dict(private=True)), purpose=_PURPOSE),
                      public_jwk=key.as_dict(private=False))


def _records(alg: str | None = None) -> list[SigningKey]:
    # created_at then kid: a total order, so every worker picks the same current key even in the unlikely
    # case where two workers created one concurrently on a fresh install (both are published).
    query = select(SigningKey).order_by(SigningKey.created_at, SigningKey.kid)
    if alg:
        query = query.where(SigningKey.alg == alg)
    return list(db.session.scalars(query))


def ensure_keys(alg: str) -> None:
    """Create a current and a next key for ``alg`` when there is none (fresh install, tests)."""
    states = {k.state for k in _records(alg)}
    if "current" in states:
        return
    db.session.add(_new_record(alg, "current"))
    if "next" not in states:
        db.session.add(_new_record(alg, "next"))
    try:
        db.session.commit()
    except IntegrityError:  # another worker did it first
        db.session.rollback()


@dataclass(frozen=True)
class _KeyRow:
    """What the hot paths need of a key record (plain values, safe to keep between requests)."""

    kid: str
    alg: str
    state: str
    retired_at: datetime | None
    public_jwk: dict[str, Any]
    private_jwk_enc: str


_cache_lock = threading.Lock()


def _cache() -> dict[str, Any]:
    """This application's per-process key cache (one per app: tests build many apps in one process)."""
    from flask import current_app

    return current_app.extensions.setdefault("idp.oidc.keys", {})


def _rows() -> list[_KeyRow]:
    """Every key record, oldest first, read at most every :data:`KEY_CACHE_SECONDS` per worker; a chain
    without a current key is created on the way (one query instead of one per algorithm and call)."""
    cache = _cache()
    cached = cache.get("rows")
    if cached is not None and time.monotonic() - cached[0] < KEY_CACHE_SECONDS:
        return list(cached[1])
    records = _records()
    missing = [alg for alg in ALGORITHMS if not any(r.alg == alg and r.state == "current" for r in records)]
    if missing:
        for alg in missing:
            ensure_keys(alg)
        records = _records()
    rows = [_KeyRow(kid=r.kid, alg=r.alg, state=r.state, retired_at=aware(r.retired_at),
                    public_jwk=dict(r.public_jwk), private_jwk_enc=r.private_jwk_enc) for r in records]
    with _cache_lock:
        cache["rows"] = (time.monotonic(), rows)
    return list(rows)


def forget_cached_keys() -> None:
    """Drop this worker's cached key records (after a rotation made here)."""
    _cache().pop("rows", None)


def rotate(alg: str | None = None) -> list[SigningKey]:
    """``idp keys rotate``: next -> current, current -> retired, and a new next key is published.

    The key that starts signing has been in the JWKS since the previous rotation (or since it was
    created when there was no next key: then it is only published now, which the operator is told
    by ``keys list``)."""
    now = clock().now()
    for name in [alg] if alg else list(ALGORITHMS):
        records = _records(name)
        by_state: dict[str, list[SigningKey]] = {}
        for record in records:
            by_state.setdefault(record.state, []).append(record)
        for record in by_state.get("current", []):
            record.state, record.retired_at = "retired", now
        upcoming = by_state.get("next") or [_new_record(name, "next")]
        promoted = upcoming[0]
        promoted.state, promoted.activated_at = "current", now
        db.session.add(promoted)
        db.session.add(_new_record(name, "next"))
    db.session.commit()
    forget_cached_keys()
    return list_keys()


def _published(record: SigningKey | _KeyRow, now: datetime, retire_after: int | None = None) -> bool:
    if record.state != "retired":
        return True
    retired_at = aware(record.retired_at) or now
    return now < retired_at + timedelta(seconds=settings().key_retire_after if retire_after is None else retire_after)


def list_keys() -> list[SigningKey]:
    """Every key record, oldest first."""
    return _records()


def describe(record: SigningKey) -> dict[str, Any]:
    """Operator view of a key (no private part)."""
    return {"kid": record.kid, "alg": record.alg, "state": record.state,
            "published": _published(record, clock().now()),
            "created_at": aware(record.created_at), "activated_at": aware(record.activated_at),
            "retired_at": aware(record.retired_at)}


def public_jwks() -> dict[str, Any]:
    """The JWKS document: next, current and recently retired keys (public parts only)."""
    now = clock().now()
    return {"keys": [dict(r.public_jwk) for r in _rows() if _published(r, now)]}


_JWKS_BYTES: dict[tuple[str, ...], bytes] = {}


def public_jwks_bytes() -> bytes:
    """:func:`public_jwks` serialised, from memory: the bytes are made once per set of published kids
    (a key's public part never changes), so a rotation or a retirement gives new bytes at once."""
    return _jwks_bytes(_rows(), clock().now(), settings().key_retire_after)


def cached_public_jwks_bytes(app: Flask) -> bytes | None:
    """:func:`public_jwks_bytes` without an application context, while this worker's key records are fresh
    (the same records, clock and settings, so the same bytes); None when they must be read again (then call
    :func:`public_jwks_bytes` in an application context). For :mod:`idp.oidc.metadata_wsgi`."""
    cached = app.extensions.get("idp.oidc.keys", {}).get("rows")
    if cached is None or time.monotonic() - cached[0] >= KEY_CACHE_SECONDS:
        return None
    return _jwks_bytes(cached[1], app.extensions["idp.clock"].now(), app.extensions["idp.settings"].key_retire_after)


def _jwks_bytes(rows: list[_KeyRow], now: datetime, retire_after: int) -> bytes:
    published = [r for r in rows if _published(r, now, retire_after)]
    kids = tuple(r.kid for r in published)
    found = _JWKS_BYTES.get(kids)
    if found is None:
        found = json.dumps({"keys": [dict(r.public_jwk) for r in published]}, separators=(",", ":")).encode()
        if len(_JWKS_BYTES) > 16:  # a handful of sets over a process's life; never grows without bound
            _JWKS_BYTES.clear()
        _JWKS_BYTES[kids] = found
    return found


def public_keyset() -> KeySet:
    """The published keys as a joserfc KeySet (to verify our own tokens: id_token_hint, logout).

    Parsed once per set of published keys: the set is looked up by its kids, so a rotation or a
    retirement gives a new set at once while the usual call costs no parsing."""
    published = public_jwks()["keys"]
    return _keyset(json.dumps(published, sort_keys=True))


@lru_cache(maxsize=8)
def _keyset(published: str) -> KeySet:
    return KeySet.import_key_set({"keys": json.loads(published)})


def signing_key(alg: str) -> Key:
    """The current private key for ``alg`` (created on first use)."""
    if alg not in ALGORITHMS:
        raise ValueError(f"unsupported signing algorithm {alg}")
    record = next(r for r in _rows() if r.alg == alg and r.state == "current")
    return _private_key(record.kid, record.private_jwk_enc)


@lru_cache(maxsize=32)
def _private_key(kid: str, sealed: str) -> Key:
    """The parsed private key of a record. Parsing an RSA JWK validates the key (tens of ms of CPU,
    more than everything else in a token request), so it is done once per process; the database
    still decides at every call which key is current, so rotation works across workers. The
    sealed value is part of the cache key: another deployment secret can never reuse an entry."""
    key = KeySet.import_key_set({"keys": [json.loads(decrypt(sealed, purpose=_PURPOSE))]})
    return key.keys[0]


def signing_keyset(alg: str) -> KeySet:
    """A one-key set: joserfc then copies the key's ``kid`` into the JWS header."""
    return KeySet([signing_key(alg)])
