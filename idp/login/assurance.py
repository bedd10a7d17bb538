"""Assurance: which factors a login proved, when and how, and what that is worth (``amr``, ``acr``,
``auth_time``). The only module that computes or compares acr and amr values.

Anchor: Ory Kratos ``session/session.go`` (the AAL derived from the list of completed methods in one
function); Authlib ``oidc/core/models.py``. Everything else (``/authorize``, the login policy, browser
sessions, WebAuthn, the token endpoint) asks this module.

A :class:`Proof` is the list of :class:`Factor` s proven in *one* login, each with its method, the
application-clock time it was proven and how. Rules (README, "Assurance rules"):

- a password counts once it was checked against the account's hash;
- an e-mail security code counts only when it went to an address that was already validated *before* this
  login started (:func:`email_code_factor`): an address bound or changed during the login is no factor,
  whoever has the password could have bound their own mailbox (issue 11, attack 1);
- a platform credential (WebAuthn with user verification) carries the level proven in the login that
  activated it: the number of factors of that login and its acr, which a sign-in never exceeds (attack 4);
- a trusted browser ("J'utilise mon ordinateur personnel") stands in for the security code for the web
  rule only; it adds no amr value and no acr level.

``amr`` (RFC 8176): ``pwd``, ``mail``, ``hwk`` + ``user``, and ``mfa`` when two factors were proven.
``acr``: the configured level of the strongest combination (settings ``acr_password``, ``acr_email_code``,
``acr_platform``); the default follows NIST SP 800-63B-4: e-mail is not an accepted out-of-band
authenticator, so password + e-mail code stays at ``eidas1``, and a credential is never worth more than
the login that activated it. ``auth_time``: when the first factor of this login was proven.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from idp.extensions import settings

# eIDAS levels known to this provider, weakest first (low, substantial, high).
ACR_LEVELS = ("eidas1", "eidas2", "eidas3")
PLATFORM_AMR = ("hwk", "user")  # RFC 8176: proof of possession of a hardware key + user verification


class Method(StrEnum):
    """How a factor was proven."""

    PASSWORD = "password"
    EMAIL_CODE = "email_code"
    PLATFORM_CREDENTIAL = "platform_credential"
    TRUSTED_BROWSER = "trusted_browser"


@dataclass(frozen=True, slots=True, kw_only=True)
class Factor:
    """One factor proven in this login.

    ``factors`` is what the factor is worth in factor count (a platform credential: those of the login
    that activated it, 1 or 2); ``ceiling`` is the highest acr it may give (a credential: the acr proven
    when it was activated); ``how`` is a short, secret-free note for the audit trail."""

    method: Method
    at: int
    how: str = ""
    factors: int = 1
    ceiling: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (interaction and session records)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Factor:
        """Read back :meth:`to_dict`."""
        return cls(method=Method(raw["method"]), at=int(raw["at"]), how=str(raw.get("how", "")),
                   factors=int(raw.get("factors", 1)), ceiling=raw.get("ceiling"))


@dataclass(slots=True)
class Proof:
    """The factors proven in one login (never carried over from another login or account)."""

    factors: list[Factor] = field(default_factory=list)

    def add(self, factor: Factor) -> None:
        """Record a proven factor (a method proven twice keeps its first time)."""
        if not self.has(factor.method):
            self.factors.append(factor)

    def has(self, method: Method) -> bool:
        """True when ``method`` was proven in this login."""
        return any(f.method is method for f in self.factors)

    def get(self, method: Method) -> Factor | None:
        """The factor of ``method``, if proven."""
        return next((f for f in self.factors if f.method is method), None)

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-ready form."""
        return [f.to_dict() for f in self.factors]

    @classmethod
    def from_list(cls, raw: Iterable[Mapping[str, Any]] | None) -> Proof:
        """Read back :meth:`to_list` (malformed entries make the whole record unreadable: ValueError)."""
        try:
            return cls([Factor.from_dict(item) for item in raw or []])
        except (KeyError, TypeError) as exc:
            raise ValueError("malformed proof") from exc


# --- recording factors -------------------------------------------------------------------------
def password_factor(at: int) -> Factor:
    """The password, checked against the account's argon2 hash."""
    return Factor(method=Method.PASSWORD, at=at, how="argon2id hash")


def email_code_factor(at: int, *, sent_to: str | None, validated_before_login: str | None) -> Factor | None:
    """The e-mail security code, or None when it is no factor: it counts only when it was sent to the very
    address that was validated before this login started (``validated_before_login``)."""
    if not sent_to or not validated_before_login or sent_to != validated_before_login:
        return None
    return Factor(method=Method.EMAIL_CODE, at=at, how="code sent to an address validated before this login")


def platform_factor(at: int, *, activation_factors: int, activation_acr: str | None) -> Factor:
    """A platform credential with user verification, worth what its activation login proved."""
    factors = 2 if activation_factors >= 2 else 1
    return Factor(method=Method.PLATFORM_CREDENTIAL, at=at, factors=factors,
                  ceiling=activation_acr or settings().acr_password,
                  how=f"platform credential activated in a {factors}-factor login")


def trusted_browser_factor(at: int) -> Factor:
    """A live trusted browser of this account (stands in for the code on web clients)."""
    return Factor(method=Method.TRUSTED_BROWSER, at=at, how="trusted browser cookie")


# --- what a proof is worth ---------------------------------------------------------------------
def factor_count(proof: Proof) -> int:
    """Distinct factors proven (password, e-mail code, platform credential as activated), at most 2.

    The trusted browser is not counted: it only stands in for the code on web clients. A credential activated
    in a one-factor login adds nothing to the password: whoever had the password could have activated it."""
    count = proof.has(Method.PASSWORD) + proof.has(Method.EMAIL_CODE)
    platform = proof.get(Method.PLATFORM_CREDENTIAL)
    if platform is not None:
        count = count + platform.factors if platform.factors >= 2 else max(count, 1)
    return min(count, 2)


def amr(proof: Proof) -> list[str]:
    """RFC 8176 values, in the order the factors were proven, ``mfa`` last when two factors."""
    values: list[str] = []
    names = {Method.PASSWORD: ("pwd",), Method.EMAIL_CODE: ("mail",), Method.PLATFORM_CREDENTIAL: PLATFORM_AMR}
    for factor in proof.factors:
        values.extend(v for v in names.get(factor.method, ()) if v not in values)
    if factor_count(proof) >= 2:
        values.append("mfa")
    return values


def acr_rank(acr: str | None) -> int:
    """Position of an acr value (unknown values rank lowest, 0)."""
    return ACR_LEVELS.index(acr) + 1 if acr in ACR_LEVELS else 0


def lowest(*values: str | None) -> str | None:
    """The weakest of the given acr values (None values ignored)."""
    known = [v for v in values if v is not None]
    return min(known, key=acr_rank) if known else None


def highest(*values: str | None) -> str | None:
    """The strongest of the given acr values (None values ignored)."""
    known = [v for v in values if v is not None]
    return max(known, key=acr_rank) if known else None


def acr(proof: Proof) -> str:
    """The configured level of the strongest combination this login proved."""
    s = settings()
    levels: list[str | None] = []
    if proof.has(Method.PASSWORD):
        levels.append(s.acr_password)
        if proof.has(Method.EMAIL_CODE):
            levels.append(s.acr_email_code)
    platform = proof.get(Method.PLATFORM_CREDENTIAL)
    if platform is not None:
        own = s.acr_platform if platform.factors >= 2 else s.acr_password
        levels.append(lowest(own, platform.ceiling))
    return highest(*levels) or s.acr_password


def auth_time(proof: Proof) -> int | None:
    """When the first factor of this login was proven (OIDC Core §2 ``auth_time``)."""
    return min((f.at for f in proof.factors), default=None)


def reachable_acr_values() -> list[str]:
    """The acr values a login here can reach with the configured mapping, weakest first (discovery).

    A credential is worth at most the login that activated it, and that login was a password one (with
    or without the e-mail code) or itself a credential one: its ceiling is the best non-credential level."""
    s = settings()
    best_without_credential = highest(s.acr_password, s.acr_email_code)
    candidates = {s.acr_password, s.acr_email_code, lowest(s.acr_platform, best_without_credential) or s.acr_password}
    return sorted((v for v in candidates if v in ACR_LEVELS), key=acr_rank)


def reachable(acr_value: str | None) -> bool:
    """True when some login here can reach at least ``acr_value``."""
    best = highest(*reachable_acr_values())
    return acr_value is None or acr_rank(best) >= acr_rank(acr_value)


# --- requirements: what a client and its request ask for ----------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Requirement:
    """What one authorization request needs from the login.

    ``second_factor``: the client's rule (web: always; mobile: never; federation: its setting);
    ``acr``: the lowest acr accepted (acr_values or an essential ``acr`` claim); ``binding``: a lower acr
    must never be answered (an essential claim, or acr_values from a federation client)."""

    client_kind: str
    second_factor: bool
    acr: str | None = None
    binding: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Requirement:
        """Read back :meth:`to_dict`."""
        return cls(client_kind=str(raw["client_kind"]), second_factor=bool(raw["second_factor"]),
                   acr=raw.get("acr"), binding=bool(raw.get("binding", False)))


def requirement(*, client_kind: str, client_requires_code: bool, acr_values: str | None,
                claims_request: Mapping[str, Any]) -> Requirement:
    """The requirement of an authorization request (OIDC Core §3.1.2.1 ``acr_values``, §5.5.1.1 essential
    ``acr``; FranceConnect: never answer a lower acr than asked)."""
    voluntary = _known(str(acr_values or "").split())
    essential = _essential_acr(claims_request)
    wanted = lowest(*voluntary, *essential)
    binding = bool(essential) or (client_kind == "federation" and bool(voluntary))
    needs_more = acr_rank(wanted) > acr_rank(settings().acr_password)
    if client_kind == "web":
        second = True
    elif client_kind == "mobile":
        second = False  # seed: the app never asks for the e-mail code
    else:
        second = client_requires_code or needs_more
    return Requirement(client_kind=client_kind, second_factor=second, acr=wanted, binding=binding)


def _known(values: Iterable[Any]) -> list[str]:
    return [v for v in values if isinstance(v, str) and v in ACR_LEVELS]


def _essential_acr(claims_request: Mapping[str, Any]) -> list[str]:
    id_token = claims_request.get("id_token")
    wanted = id_token.get("acr") if isinstance(id_token, Mapping) else None
    if not isinstance(wanted, Mapping) or not wanted.get("essential"):
        return []
    values = wanted.get("values")
    if not isinstance(values, list):
        values = [wanted.get("value")]
    return _known(values)


def more_factors_needed(req: Requirement) -> bool:
    """True when this request needs more than the password (a second factor, or an acr above it)."""
    if req.client_kind == "mobile" and not req.acr:
        return False
    return req.second_factor or acr_rank(req.acr) > acr_rank(settings().acr_password)


def second_factor_satisfied(req: Requirement, proof: Proof) -> bool:
    """True when ``proof`` meets the request's factor rule.

    Web and federation clients need the password first (on the app a credential may replace it), then two
    factors, or a trusted browser when no acr above the password's is asked. An acr that more factors
    cannot reach here does not keep the login waiting: the resume answers ``unmet_authentication_requirements``."""
    if not more_factors_needed(req):
        return first_factor_proven(req, proof)
    if req.client_kind != "mobile" and not proof.has(Method.PASSWORD):
        return False
    if factor_count(proof) >= 2:
        return True
    return proof.has(Method.TRUSTED_BROWSER) and acr_rank(req.acr) <= acr_rank(settings().acr_password)


def first_factor_proven(req: Requirement, proof: Proof) -> bool:
    """The password (web, federation) or, on the app, the password or a platform credential."""
    if proof.has(Method.PASSWORD):
        return True
    return req.client_kind == "mobile" and proof.has(Method.PLATFORM_CREDENTIAL)


def meets(req: Requirement, proof: Proof) -> bool:
    """True when ``proof`` may answer this request: factor rule met and, when binding, acr not lower."""
    if not second_factor_satisfied(req, proof):
        return False
    return not (req.binding and acr_rank(acr(proof)) < acr_rank(req.acr))


def acr_too_low(req: Requirement, achieved: str | None) -> bool:
    """True when answering with ``achieved`` would break a binding acr requirement."""
    return req.binding and acr_rank(achieved) < acr_rank(req.acr)


def a_new_login_may_raise(req: Requirement, achieved: str | None) -> bool:
    """True when ``achieved`` (a session's acr) is below the requested acr and a login here can reach it."""
    return req.acr is not None and reachable(req.acr) and acr_rank(achieved) < acr_rank(req.acr)


def may_activate_two_factor_credential(proof: Proof) -> bool:
    """Whether a credential activated now may stand in for two factors: this login itself proved two
    factors, or the password on a trusted browser (the seed's stand-in for the code)."""
    return factor_count(proof) >= 2 or (proof.has(Method.PASSWORD) and proof.has(Method.TRUSTED_BROWSER))


def activation_level(proof: Proof) -> tuple[int, str]:
    """(factors, acr) a credential activated in this login carries for life."""
    return (2 if may_activate_two_factor_credential(proof) else 1), acr(proof)
