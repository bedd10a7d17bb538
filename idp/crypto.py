"""Keyed primitives derived from the settings: look-up HMACs, field encryption, secret hashing.

Keys are derived with HKDF-SHA256 from ``data_key`` (or ``secret_key`` when no data key is set),
one per purpose, so that a database dump shows neither NIRs nor private keys in clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from idp.extensions import settings


@lru_cache(maxsize=64)
def _derive(master: str, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"idp-v1", info=purpose.encode()).derive(master.encode())


def derived_key(purpose: str) -> bytes:
    """A 32-byte key for ``purpose`` (e.g. ``"nir-lookup"``), stable for the deployment."""
    s = settings()
    return _derive(s.data_key or s.secret_key, purpose)


def lookup_hmac(value: str, purpose: str = "nir-lookup") -> str:
    """Deterministic keyed hash for equality look-ups (hex)."""
    return hmac.new(derived_key(purpose), value.encode(), hashlib.sha256).hexdigest()


def encrypt(plaintext: str, purpose: str = "field") -> str:
    """AES-256-GCM with a random nonce; returns url-safe base64 of nonce || ciphertext."""
    nonce = os.urandom(12)
    sealed = AESGCM(derived_key(purpose)).encrypt(nonce, plaintext.encode(), purpose.encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode()


class DecryptionError(ValueError):
    """The value was forged, truncated or sealed with another key."""


def decrypt(token: str, purpose: str = "field") -> str:
    """Inverse of :func:`encrypt`; raises :class:`DecryptionError` on any tampering."""
    try:
        raw = base64.urlsafe_b64decode(token.encode())
        return AESGCM(derived_key(purpose)).decrypt(raw[:12], raw[12:], purpose.encode()).decode()
    except (ValueError, InvalidTag, UnicodeError) as exc:
        raise DecryptionError("cannot decrypt") from exc


def hash_token(token: str) -> str:
    """SHA-256 of a high-entropy random token (codes, refresh tokens, trusted-browser ids).

    Tokens are 128+ random bits, so a fast hash is enough (no salt or stretching needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(nbytes: int = 32) -> str:
    """A url-safe random token from the OS CSPRNG."""
    return secrets.token_urlsafe(nbytes)


def new_identifier(nbytes: int = 16) -> str:
    """A random public identifier (a client id): hexadecimal, so it never starts with ``-`` and is taken
    for an option when an operator types ``idp clients show <id>``."""
    return secrets.token_hex(nbytes)


def constant_time_equal(a: str | bytes, b: str | bytes) -> bool:
    """Compare secrets without leaking where they differ."""
    a_bytes = a.encode() if isinstance(a, str) else a
    b_bytes = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)
