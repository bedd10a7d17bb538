"""Password hashing with argon2id; parameters are settings and old hashes are upgraded at login."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from idp.extensions import settings


@lru_cache(maxsize=8)
def _hasher(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)


def hasher() -> PasswordHasher:
    """The argon2id hasher with the configured parameters."""
    s = settings()
    return _hasher(s.argon2_time_cost, s.argon2_memory_cost, s.argon2_parallelism)


def hash_password(password: str) -> str:
    """A new argon2id hash (PHC string)."""
    return hasher().hash(password)


@lru_cache(maxsize=8)
def _dummy_hash(time_cost: int, memory_cost: int, parallelism: int) -> str:
    return _hasher(time_cost, memory_cost, parallelism).hash("dummy-password-for-timing")


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches. With no stored hash (unknown account), a dummy hash is
    verified anyway so that an unknown NIR costs the same time as a wrong password."""
    ph = hasher()
    target = stored_hash or _dummy_hash(ph.time_cost, ph.memory_cost, ph.parallelism)
    try:
        ok = ph.verify(target, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return bool(ok) and stored_hash is not None


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with other parameters than the current settings."""
    try:
        return hasher().check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
