"""Authorization codes, access tokens and refresh-token families.

- Codes (RFC 6749 §4.1.2) live in Redis under the hash of the code, are read and deleted in one
  atomic GETDEL (two parallel redemptions cannot both succeed) and leave a "used" marker (a Redis
  hash) that remembers what they issued, so that a replayed code revokes those tokens (RFC 6749
  §4.1.2). A replay that arrives while the first exchange is still running sets ``replayed`` in the
  marker; the first exchange, recording what it issued, finds the flag and revokes at once (both
  steps are single Lua scripts, so one of them always sees the other).
- Access tokens are opaque, kept in Redis under their hash with their expiry (decided by the app
  clock, the TTL only cleans up), and indexed by refresh family and by account for revocation
  (password change or reset revokes every token of the account).
- Refresh tokens are durable (SQL), hashed, bound to their client, rotated on every use inside a
  family with an absolute expiry; presenting a rotated token again revokes the whole family
  (RFC 9700 §4.14.2).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from idp.clock import timestamp
from idp.crypto import hash_token, new_token
from idp.extensions import clock, db, redis_client, rkey
from idp.oidc.clients import get_client
from idp.oidc.keys import aware
from idp.oidc.models import Client, RefreshToken

USED_CODE_TTL = 24 * 3600  # how long a redeemed code is remembered (replay detection)


@dataclass(kw_only=True)
class EndUser:
    """The authenticated person as the grants see it: account and how they authenticated."""

    account_id: str
    auth_time: int
    acr: str
    amr: list[str]
    sid: str = ""  # public session identifier for logout (a hash, never the cookie value)
    claims: dict[str, Any] = field(default_factory=dict)  # the OIDC ``claims`` request parameter

    def auth(self) -> dict[str, Any]:
        """The authentication context to store with a code or token."""
        return asdict(self)


@dataclass(kw_only=True)
class AuthorizationCode:
    """A stored code (Authlib's AuthorizationCodeMixin interface)."""

    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: int
    user: dict[str, Any]

    def get_redirect_uri(self) -> str:
        """The redirect URI of the authorization request."""
        return self.redirect_uri

    def get_scope(self) -> str:
        """The granted scope."""
        return self.scope

    def get_nonce(self) -> str | None:
        """The request's nonce (copied into the ID token)."""
        return self.nonce

    def get_auth_time(self) -> int:
        """When the person authenticated."""
        return int(self.user["auth_time"])

    def get_acr(self) -> str:
        """The achieved acr."""
        return str(self.user["acr"])

    def get_amr(self) -> list[str]:
        """The completed methods (RFC 8176)."""
        return list(self.user["amr"])

    def end_user(self) -> EndUser:
        """The person the code was issued to."""
        return EndUser(**self.user)


def save_code(code: str, record: AuthorizationCode) -> None:
    """Store a new code (single use)."""
    ttl = max(1, record.expires_at - timestamp(clock().now())) + 60
    redis_client().set(rkey("code", hash_token(code)), json.dumps(asdict(record)), ex=ttl)


# Replay of a used code: flag the marker (only if it exists: junk codes create nothing) and return
# what the first exchange recorded so far.
_FLAG_REPLAY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], 'replayed', '1')
return redis.call('HGETALL', KEYS[1])
"""
# The first exchange records what it issued and learns in the same step whether a replay came first.
_RECORD_ISSUE = """
redis.call('HSET', KEYS[1], 'access', ARGV[1], 'family', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return redis.call('HGET', KEYS[1], 'replayed')
"""


def redeem_code(code: str) -> AuthorizationCode | None:
    """Take the code (atomic GETDEL); a second redemption revokes what the first one issued."""
    digest = hash_token(code)
    raw = redis_client().getdel(rkey("code", digest))
    if raw is None:
        revoke_code_issue(digest)
        return None
    # Mark it used before anything else can fail, so a replay is always recognised.
    marker = rkey("code-used", digest)
    pipe = redis_client().pipeline(transaction=True)
    pipe.hset(marker, "used", "1")
    pipe.expire(marker, USED_CODE_TTL)
    pipe.execute()
    record = AuthorizationCode(**json.loads(raw))
    if timestamp(clock().now()) >= record.expires_at:
        return None
    return record


def remember_code_issue(code: str, access_token: str, family_id: str | None) -> bool:
    """Remember what a redeemed code issued; if the code was replayed meanwhile, revoke it now.

    Returns True when it had to be revoked."""
    access = hash_token(access_token)
    replayed = redis_client().register_script(_RECORD_ISSUE)(
        keys=[rkey("code-used", hash_token(code))], args=[access, family_id or "", USED_CODE_TTL])
    if not replayed:
        return False
    _revoke_issued(access, family_id)
    return True


def revoke_code_issue(code_digest: str) -> bool:
    """A replayed code: flag it and revoke the access token and the refresh family it issued (a first
    exchange still running revokes them itself when it records them); True if the code was known."""
    reply = redis_client().register_script(_FLAG_REPLAY)(keys=[rkey("code-used", code_digest)], args=[])
    if not reply:
        return False
    items = [v.decode() if isinstance(v, bytes) else str(v) for v in reply]
    issued = dict(zip(items[::2], items[1::2], strict=True))
    _revoke_issued(issued.get("access") or None, issued.get("family") or None)
    return True


def _revoke_issued(access_digest: str | None, family_id: str | None) -> None:
    if access_digest:
        redis_client().delete(rkey("at", access_digest))
    if family_id:
        revoke_family(family_id)


# --- access tokens ---------------------------------------------------------------------------
@dataclass(kw_only=True)
class AccessToken:
    """An issued access token (Authlib's TokenMixin interface)."""

    digest: str
    client_id: str
    scope: str
    issued_at: int
    expires_at: int
    user: dict[str, Any]
    family_id: str | None = None

    token_type = "access_token"

    @property
    def expires_at_ts(self) -> int:
        """Expiry timestamp (introspection ``exp``)."""
        return self.expires_at

    @property
    def issued_at_ts(self) -> int:
        """Issue timestamp (introspection ``iat``)."""
        return self.issued_at

    def check_client(self, client: Client) -> bool:
        """Issued to ``client``?"""
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        """Granted scope."""
        return self.scope

    def get_expires_in(self) -> int:
        """Lifetime in seconds."""
        return self.expires_at - self.issued_at

    def is_expired(self) -> bool:
        """Decided by the app clock."""
        return timestamp(clock().now()) >= self.expires_at

    def is_revoked(self) -> bool:
        """Revoked tokens are deleted, so a loaded one is not revoked."""
        return False

    def get_user(self) -> EndUser:
        """The person the token was issued to."""
        return EndUser(**self.user)

    def get_client(self) -> Client | None:
        """The client the token was issued to."""
        return get_client(self.client_id)


# Add a member to an index set and keep the set at least as long as its longest-lived member.
_INDEX_ADD = """
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


def store_access_token(token: str, *, client: Client, scope: str, user: EndUser, expires_in: int,
                       family_id: str | None) -> AccessToken:
    """Save a new access token under its hash (indexed by family and by account for revocation)."""
    now = timestamp(clock().now())
    record = AccessToken(digest=hash_token(token), client_id=client.client_id, scope=scope, issued_at=now,
                         expires_at=now + expires_in, user=user.auth(), family_id=family_id)
    data = {k: v for k, v in asdict(record).items() if k != "digest"}
    redis_client().set(rkey("at", record.digest), json.dumps(data), ex=expires_in + 60)
    index = redis_client().register_script(_INDEX_ADD)
    index(keys=[rkey("at-account", user.account_id)], args=[record.digest, expires_in + 60])
    if family_id:
        index(keys=[rkey("at-family", family_id)], args=[record.digest, expires_in + 60])
    return record


def find_access_token(token: str) -> AccessToken | None:
    """The live access token, or None (unknown, revoked or expired)."""
    if not token or len(token) > 200:
        return None
    digest = hash_token(token)
    raw = redis_client().get(rkey("at", digest))
    if raw is None:
        return None
    record = AccessToken(digest=digest, **json.loads(raw))
    return None if record.is_expired() else record


def revoke_access_token(record: AccessToken) -> None:
    """RFC 7009: the access token stops working at once."""
    redis_client().delete(rkey("at", record.digest))


# --- refresh tokens --------------------------------------------------------------------------
def issue_refresh_token(token: str, *, client: Client, scope: str, user: EndUser,
                        family: RefreshToken | None, lifetime: int) -> RefreshToken:
    """Save a refresh token: a new family (code grant) or the successor in ``family`` (rotation)."""
    now = clock().now()
    record = RefreshToken(token_hash=hash_token(token), family_id=family.family_id if family else new_token(24),
                          client_id=client.client_id, account_id=user.account_id, scope=scope, auth=user.auth(),
                          issued_at=now,
                          expires_at=aware(family.expires_at) if family else now + timedelta(seconds=lifetime))
    db.session.add(record)
    # Flushed, not committed: the caller commits once the access token is stored too, so that the claimed
    # rotation of the predecessor and its successor are written together or not at all.
    db.session.flush()
    return record


def find_refresh_token(token: str) -> RefreshToken | None:
    """The refresh token record with this value (any state), or None."""
    if not token or len(token) > 200:
        return None
    return db.session.scalars(select(RefreshToken).where(RefreshToken.token_hash == hash_token(token))).first()


def claim_rotation(record: RefreshToken) -> bool:
    """Atomically mark the token as used; False when someone used it already (reuse).

    Not committed here: the row stays locked until the successor is committed with it (see
    ``idp.oidc.server._save_token``). A worker that dies in between leaves the token unused, so that
    the client's retry succeeds instead of being taken for a reuse that revokes the family; a parallel
    use of the same token waits for that lock and then finds the token rotated."""
    result = db.session.execute(update(RefreshToken)
                                .where(RefreshToken.id == record.id, RefreshToken.rotated_at.is_(None))
                                .values(rotated_at=clock().now()))
    return bool(getattr(result, "rowcount", 0) == 1)


def revoke_family(family_id: str) -> None:
    """Revoke every refresh token of a family and the access tokens it issued."""
    # Lock the family's rows in id order first: two parallel reuses of one family otherwise update the
    # same rows in different orders and PostgreSQL kills one of them as a deadlock (a 503).
    ids = list(db.session.scalars(select(RefreshToken.id).where(RefreshToken.family_id == family_id)
                                  .order_by(RefreshToken.id).with_for_update()))
    db.session.execute(update(RefreshToken).where(RefreshToken.id.in_(ids)).values(revoked=True))
    db.session.commit()
    members = redis_client().smembers(rkey("at-family", family_id))
    for digest in members:
        redis_client().delete(rkey("at", digest.decode() if isinstance(digest, bytes) else digest))
    redis_client().delete(rkey("at-family", family_id))


def revoke_all_for_account(account_id: str) -> int:
    """Revoke every refresh-token family of an account and every access token issued to it (password
    change or reset, advisor reset); returns how many refresh tokens were revoked."""
    result = db.session.execute(update(RefreshToken)
                                .where(RefreshToken.account_id == account_id, RefreshToken.revoked.is_(False))
                                .values(revoked=True))
    db.session.commit()
    index = rkey("at-account", account_id)
    digests = [d.decode() if isinstance(d, bytes) else d for d in redis_client().smembers(index)]
    if digests:
        redis_client().delete(*(rkey("at", d) for d in digests))
        redis_client().srem(index, *digests)
    return int(getattr(result, "rowcount", 0) or 0)


def new_opaque_token() -> str:
    """A 256-bit opaque token value."""
    return new_token(32)


def expires_at_timestamp(record: RefreshToken) -> int:
    """The family's absolute expiry as a timestamp."""
    expires_at = aware(record.expires_at)
    return timestamp(expires_at) if expires_at else 0

