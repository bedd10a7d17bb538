"""The login interaction: an explicit record of one login in progress.

Anchor: node-oidc-provider ``lib/models/interaction.js``; Ory Kratos ``selfservice/flow/state.go``.

It is created when ``/authorize`` needs a login, stored in Redis (JSON) with an expiry, referenced
by an unguessable id in a cookie, and holds the authorization request, the client, the account
once known, the completed methods (amr) and the current step. ``idp.login.policy.next_step``
decides the next step after every step; when it says ``done`` the OIDC layer resumes the
authorization request and consumes the record (single use, atomic GETDEL).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from idp.clock import timestamp
from idp.crypto import new_token
from idp.extensions import clock, redis_client, rkey, settings

if TYPE_CHECKING:
    from werkzeug.wrappers import Response


# Keys of ``Interaction.data`` that come from the authorization request and the client (set by /authorize):
# they survive a new password step; everything else belongs to the account identified (see ``restart``).
REQUEST_DATA = frozenset({"require_email_code", "required_acr"})


def cookie_name() -> str:
    """``__Host-idp_interaction`` when cookies are Secure, else ``idp_interaction``."""
    return "__Host-idp_interaction" if settings().secure_cookies else "idp_interaction"


def set_cookie(response: Response, interaction: Interaction) -> None:
    """Bind the browser to the interaction (HttpOnly, SameSite=Lax, Secure outside development)."""
    response.set_cookie(cookie_name(), interaction.id, max_age=settings().interaction_ttl, path="/",
                        secure=settings().secure_cookies, httponly=True, samesite="Lax")


def clear_cookie(response: Response) -> None:
    """Forget the interaction cookie."""
    response.delete_cookie(cookie_name(), path="/", secure=settings().secure_cookies, httponly=True,
                           samesite="Lax")


def current() -> Interaction | None:
    """The live interaction referenced by the request's cookie, or None (missing, stale, forged)."""
    from flask import request

    return interactions.get(request.cookies.get(cookie_name()))


@dataclass(kw_only=True)
class Interaction:
    """One login in progress (see module docstring)."""

    id: str
    client_id: str
    client_kind: str  # web | mobile | federation
    request: dict[str, str]  # the validated authorization request parameters
    created_at: int
    expires_at: int
    step: str = "identify"
    account_id: str | None = None
    amr: list[str] = field(default_factory=list)
    acr: str | None = None
    auth_time: int | None = None
    reasons: list[str] = field(default_factory=list)  # why a login was needed (login_required, max_age...)
    trusted_browser: bool = False  # "J'utilise mon ordinateur personnel" ticked
    data: dict[str, Any] = field(default_factory=dict)  # per-step scratch (never secrets in clear)

    def complete(self, method: str, *more: str) -> None:
        """Record completed authentication method(s) (RFC 8176 values: pwd, mail, hwk, user)."""
        for m in (method, *more):
            if m not in self.amr:
                self.amr.append(m)

    def restart(self, account_id: str) -> None:
        """Start the login from scratch for ``account_id`` (a password step succeeded).

        Nothing proved for an account identified before carries over: completed methods, the trusted
        browser, code sent, offer and notification flags are dropped; only the request's data stays."""
        self.account_id = account_id
        self.amr = []
        self.acr = None
        self.auth_time = None
        self.trusted_browser = False
        self.data = {key: value for key, value in self.data.items() if key in REQUEST_DATA}

    @property
    def expired(self) -> bool:
        """True once the interaction's time is over (decided by the app clock, not by Redis TTL)."""
        return timestamp(clock().now()) >= self.expires_at

    def to_json(self) -> str:
        """Serialised form stored in Redis."""
        return json.dumps(asdict(self), separators=(",", ":"))


class InteractionStore:
    """Redis persistence for interactions."""

    @staticmethod
    def _key(interaction_id: str) -> str:
        return rkey("interaction", interaction_id)

    def create(self, *, client_id: str, client_kind: str, request: dict[str, str],
               reasons: list[str] | None = None) -> Interaction:
        """Start a new interaction for an authorization request."""
        now = timestamp(clock().now())
        interaction = Interaction(id=new_token(24), client_id=client_id, client_kind=client_kind,
                                  request=dict(request), created_at=now,
                                  expires_at=now + settings().interaction_ttl, reasons=reasons or [])
        self.save(interaction)
        return interaction

    def get(self, interaction_id: str | None) -> Interaction | None:
        """The live interaction with this id, or None (unknown, malformed or expired)."""
        if not interaction_id or len(interaction_id) > 64:
            return None
        raw = redis_client().get(self._key(interaction_id))
        return self._load(raw)

    def save(self, interaction: Interaction) -> None:
        """Write the record; the Redis TTL is housekeeping only."""
        ttl = max(1, interaction.expires_at - timestamp(clock().now())) + 60
        redis_client().set(self._key(interaction.id), interaction.to_json(), ex=ttl)

    def rotate(self, interaction: Interaction) -> Interaction:
        """Give the interaction a new id (after the password step) so that an id planted in the
        browser before login, or seen before it, is worthless afterwards; the caller sets the cookie."""
        old = interaction.id
        interaction.id = new_token(24)
        self.save(interaction)
        self.delete(old)
        return interaction

    def consume(self, interaction_id: str) -> Interaction | None:
        """Atomically read and delete (single use): two parallel resumes cannot both succeed."""
        raw = redis_client().getdel(self._key(interaction_id))
        return self._load(raw)

    def delete(self, interaction_id: str) -> None:
        """Forget an interaction (abandoned or replaced)."""
        redis_client().delete(self._key(interaction_id))

    @staticmethod
    def _load(raw: bytes | str | None) -> Interaction | None:
        if raw is None:
            return None
        try:
            interaction = Interaction(**json.loads(raw))
        except (ValueError, TypeError):
            return None
        return None if interaction.expired else interaction


interactions = InteractionStore()
