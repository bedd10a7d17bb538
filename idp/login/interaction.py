"""The login interaction: a typed record of one login in progress, owned by the login area.

Anchor: node-oidc-provider ``lib/models/interaction.js``; Ory Kratos ``selfservice/flow/state.go`` (a typed
state) and ``flow/login/flow.go`` (named fields).

It is created when ``/authorize`` needs a login, stored in Redis (JSON) with an expiry, referenced by an
unguessable id in a cookie (:mod:`idp.login.cookies`), and holds the authorization request, the client's
requirement (:class:`idp.login.assurance.Requirement`), the account once known, the factors proven in this
login (:class:`idp.login.assurance.Proof`) and the current :class:`Step`. ``idp.login.policy.next_step``
decides the next step after every step; at :attr:`Step.DONE` the OIDC layer resumes the authorization
request and consumes the record (single use, atomic GETDEL).

A lifecycle event of the account (password changed, reset: :mod:`idp.lifecycle`) ends every login in flight
for it: the account's epoch moves on, and an interaction that identified the account under an older epoch
is read back as a fresh one (no account, no factor), whose next step is identify.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from idp.clock import timestamp
from idp.crypto import new_token
from idp.errors import IdpError
from idp.extensions import clock, redis_client, rkey, settings
from idp.login.assurance import Proof, Requirement


class Step(StrEnum):
    """The steps of a login, in the policy's order (``idp.login.policy``)."""

    IDENTIFY = "identify"
    EMAIL = "email"
    CODE = "code"
    BIOMETRIC = "biometric"
    TERMS = "terms"
    OFFER = "offer"
    CONSENT = "consent"
    DONE = "done"


class Offer(StrEnum):
    """Where the biometric offer stands in this login."""

    NOT_SHOWN = "not_shown"
    SHOWN = "shown"  # the page is open: activation is possible from it, and only then
    ACTIVATED = "activated"
    LATER = "later"
    NEVER = "never"


class Consent(StrEnum):
    """The answer on the consent page (prompt=consent)."""

    PENDING = "pending"
    GIVEN = "given"
    REFUSED = "refused"


class InteractionExpired(IdpError):
    """No live login interaction behind the request (expired, finished, consumed, no or stale cookie)."""

    code = "interaction_expired"
    status = 400
    title = "Votre session a expiré"
    description = ("Votre demande de connexion a expiré ou n'est plus valide. Pour des raisons de sécurité, "
                   "merci de recommencer votre connexion depuis le site ou l'application du service que "
                   "vous souhaitez utiliser.")


@dataclass(kw_only=True)
class Interaction:
    """One login in progress (see module docstring). Never holds a secret in clear."""

    id: str
    client_id: str
    request: dict[str, str]  # the validated authorization request parameters
    requirement: Requirement
    created_at: int
    expires_at: int
    reasons: list[str] = field(default_factory=list)  # why a login was needed (login_required, max_age...)
    step: Step = Step.IDENTIFY
    # --- the account and what this login proved for it (reset together by :meth:`restart`) ---
    account_id: str | None = None
    account_epoch: int = 0  # the account's lifecycle epoch when it was identified
    proof: Proof = field(default_factory=Proof)
    email_known: str | None = None  # the address validated BEFORE this login (the only one a code may prove)
    trusted_browser_wanted: bool = False  # "J'utilise mon ordinateur personnel" ticked
    email_pending: str | None = None  # an address being bound (case 1): never a factor
    code_sent_to: str | None = None
    code_sent_at: int | None = None
    code_not_sent: bool = False  # the last attempt to mail a code failed (SMTP)
    prefer_code: bool = False  # "Recevoir un code" instead of the biometric sign-in
    # The account had a platform credential usable for this client when it was identified (None: not looked
    # up). Only the *offer* of the biometric sign-in is decided by it; the sign-in itself checks the
    # credential (revoked, expired, activation level) when it is verified.
    biometric_offered: bool | None = None
    terms_shown: bool = False  # seed: no biometric offer when another notification was shown
    offer: Offer = Offer.NOT_SHOWN
    consent: Consent = Consent.PENDING
    # --- prompt=consent alone within a live browser session: no login happens in this interaction ---
    sso_sid: str | None = None

    @property
    def client_kind(self) -> str:
        """web | mobile | federation."""
        return self.requirement.client_kind

    @property
    def from_session(self) -> bool:
        """True for an interaction filled from a browser session (consent only): nothing was proven in it."""
        return self.sso_sid is not None

    def restart(self, account_id: str | None, *, epoch: int = 0) -> None:
        """Start the login from scratch for ``account_id`` (a first factor succeeded, or the account's
        epoch moved on). Nothing proved before carries over; only the request and its requirement stay."""
        kept = {name: getattr(self, name) for name in ("id", "client_id", "request", "requirement", "created_at",
                                                       "expires_at", "reasons")}
        fresh = Interaction(**kept)
        for f in fields(self):
            setattr(self, f.name, getattr(fresh, f.name))
        self.account_id = account_id
        self.account_epoch = epoch

    @property
    def expired(self) -> bool:
        """True once the interaction's time is over (decided by the app clock, not by Redis TTL)."""
        return timestamp(clock().now()) >= self.expires_at

    def to_json(self) -> str:
        """Serialised form stored in Redis."""
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        record["requirement"] = self.requirement.to_dict()
        record["proof"] = self.proof.to_list()
        return json.dumps(record, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Interaction:
        """Read back :meth:`to_json`; ValueError or TypeError for anything else."""
        record: dict[str, Any] = json.loads(raw)
        if not isinstance(record, dict):
            raise ValueError("not an interaction record")
        record["requirement"] = Requirement.from_dict(record["requirement"])
        record["proof"] = Proof.from_list(record.get("proof"))
        record["step"] = Step(record.get("step", Step.IDENTIFY))
        record["offer"] = Offer(record.get("offer", Offer.NOT_SHOWN))
        record["consent"] = Consent(record.get("consent", Consent.PENDING))
        return cls(**record)


class InteractionStore:
    """Redis persistence for interactions, and the accounts' lifecycle epochs."""

    @staticmethod
    def _key(interaction_id: str) -> str:
        return rkey("interaction", interaction_id)

    @staticmethod
    def _epoch_key(account_id: str) -> str:
        return rkey("account-epoch", account_id)

    def create(self, *, client_id: str, request: dict[str, str], requirement: Requirement,
               reasons: list[str] | None = None) -> Interaction:
        """Start a new interaction for an authorization request."""
        now = timestamp(clock().now())
        interaction = Interaction(id=new_token(24), client_id=client_id, request=dict(request),
                                  requirement=requirement, created_at=now,
                                  expires_at=now + settings().interaction_ttl, reasons=reasons or [])
        self.save(interaction)
        return interaction

    def get(self, interaction_id: str | None) -> Interaction | None:
        """The live interaction with this id, or None (unknown, malformed or expired). One that identified
        an account whose epoch moved on since comes back restarted (its next step is identify)."""
        if not interaction_id or len(interaction_id) > 64:
            return None
        interaction = self._load(redis_client().get(self._key(interaction_id)))
        if interaction is not None and not self.current(interaction):
            interaction.restart(None)
            self.save(interaction)
        return interaction

    def save(self, interaction: Interaction) -> None:
        """Write the record; the Redis TTL is housekeeping only."""
        redis_client().set(self._key(interaction.id), interaction.to_json(), ex=self._ttl(interaction))

    @staticmethod
    def _ttl(interaction: Interaction) -> int:
        return max(1, interaction.expires_at - timestamp(clock().now())) + 60

    def rotate(self, interaction: Interaction, *, save: bool = True) -> Interaction:
        """Give the interaction a new id (after a first factor) so that an id planted in the browser before
        login, or seen before it, is worthless afterwards; the caller sets the cookie. ``save=False``: the
        caller saves the record under its new id (the old one is deleted now either way).

        Single winner: the old record is deleted first, and only the request whose DEL removed it goes on.
        Two requests that loaded the same interaction (two parallel right passwords, two WebAuthn sign-ins)
        would otherwise each save a new id and each finish a login of their own (two codes for one
        authorization request); the loser gets :class:`InteractionExpired`."""
        old = interaction.id
        client = redis_client()
        if not client.delete(self._key(old)):
            raise InteractionExpired(detail="interaction rotated or consumed concurrently")
        interaction.id = new_token(24)
        if save:
            client.set(self._key(interaction.id), interaction.to_json(), ex=self._ttl(interaction))
        return interaction

    def consume(self, interaction_id: str) -> Interaction | None:
        """Atomically read and delete (single use): two parallel resumes cannot both succeed. A record
        whose account epoch moved on is consumed but not returned."""
        interaction = self._load(redis_client().getdel(self._key(interaction_id)))
        return interaction if interaction is not None and self.current(interaction) else None

    def delete(self, interaction_id: str) -> None:
        """Forget an interaction (abandoned or replaced)."""
        redis_client().delete(self._key(interaction_id))

    # --- lifecycle epochs -------------------------------------------------------------------
    def epoch(self, account_id: str, *, touch: bool = False) -> int:
        """The account's lifecycle epoch (0 until its first password change or reset). ``touch`` (when an
        account is identified): the epoch key then outlives the interaction that records it."""
        key = self._epoch_key(account_id)
        raw = redis_client().getex(key, ex=self._epoch_ttl()) if touch else redis_client().get(key)
        return int(raw) if raw is not None else 0

    @staticmethod
    def _epoch_ttl() -> int:
        return settings().interaction_ttl + 3600

    def current(self, interaction: Interaction) -> bool:
        """False when the interaction's account changed its password or was reset since it was identified."""
        if interaction.account_id is None or interaction.from_session:
            return True
        return self.epoch(interaction.account_id) == interaction.account_epoch

    def end_logins_of(self, account_id: str) -> None:
        """End every login in flight for the account: their next step is identify again."""
        key = self._epoch_key(account_id)
        pipe = redis_client().pipeline(transaction=True)
        pipe.incr(key)
        # Outlives every interaction that may hold the previous epoch (housekeeping, not a decision).
        pipe.expire(key, self._epoch_ttl())
        pipe.execute()

    @staticmethod
    def _load(raw: bytes | str | None) -> Interaction | None:
        if raw is None:
            return None
        try:
            interaction = Interaction.from_json(raw)
        except (ValueError, TypeError, KeyError):
            return None
        return None if interaction.expired else interaction


interactions = InteractionStore()


def end_logins_in_flight(account_id: str, **_: Any) -> None:
    """Lifecycle receiver (password changed, account reset): see :meth:`InteractionStore.end_logins_of`."""
    interactions.end_logins_of(account_id)
