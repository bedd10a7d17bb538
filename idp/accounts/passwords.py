"""Passwords: the rules (NIST SP 800-63B §3.1.1.2, ASVS 5.0 V6.2) and argon2id hashing.

Rules: at least ``password_min_length`` characters (8 by default), anything up to
``password_max_length`` accepted and hashed whole (no truncation, no composition rules, paste
allowed), common passwords refused, and the reason given in French. Passwords are NFKC-normalised
before counting and hashing so that the same password typed on two keyboards matches.

Hashing: argon2id whose parameters are settings; :func:`needs_rehash` tells the login to upgrade a
hash made with older parameters.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from idp.accounts.blocklist import is_common
from idp.extensions import settings


def normalise(password: str) -> str:
    """NFKC form (NIST SP 800-63B §5.1.1.2): what is counted, hashed and verified."""
    return unicodedata.normalize("NFKC", password)


def check_password_rules(password: str, *, nir: str | None = None) -> list[str]:
    """The reasons (French) why ``password`` is refused; empty when it is acceptable.

    ``nir`` (15 characters), when given, forbids a password that contains the person's own number."""
    s = settings()
    text = normalise(password or "")
    reasons: list[str] = []
    if len(text) < s.password_min_length:
        reasons.append(f"Le mot de passe doit comporter au moins {s.password_min_length} caractères.")
    if len(text) > s.password_max_length:
        reasons.append(f"Le mot de passe ne doit pas dépasser {s.password_max_length} caractères.")
    if text and is_common(text):
        reasons.append("Ce mot de passe est trop courant : choisissez-en un autre, plus difficile à deviner.")
    elif text and len(set(text)) == 1:
        reasons.append("Le mot de passe ne doit pas répéter un seul caractère.")
    if nir and nir[:13] in re.sub(r"\s", "", text).upper():
        reasons.append("Le mot de passe ne doit pas contenir votre numéro de sécurité sociale.")
    return reasons


@lru_cache(maxsize=8)
def _hasher(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)


def hasher() -> PasswordHasher:
    """The argon2id hasher with the configured parameters."""
    s = settings()
    return _hasher(s.argon2_time_cost, s.argon2_memory_cost, s.argon2_parallelism)


def hash_password(password: str) -> str:
    """A new argon2id hash (PHC string)."""
    return hasher().hash(normalise(password))


@lru_cache(maxsize=8)
def _dummy_hash(time_cost: int, memory_cost: int, parallelism: int) -> str:
    return _hasher(time_cost, memory_cost, parallelism).hash("dummy-password-for-timing")


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches. With no stored hash (unknown account), a dummy hash is
    verified anyway so that an unknown NIR costs the same time as a wrong password."""
    ph = hasher()
    target = stored_hash or _dummy_hash(ph.time_cost, ph.memory_cost, ph.parallelism)
    try:
        ok = ph.verify(target, normalise(password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return bool(ok) and stored_hash is not None


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with other parameters than the current settings."""
    try:
        return hasher().check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
