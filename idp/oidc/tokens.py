"""Authorization codes, access tokens and refresh-token families.

- Codes (RFC 6749 §4.1.2) live in Redis under the hash of the code, are read and deleted in one
  atomic GETDEL (two parallel redemptions cannot both succeed) and leave a "used" marker (a Redis
  hash) that remembers what they issued, so that a replayed code revokes those tokens (RFC 6749
  §4.1.2). A replay that arrives while the first exchange is still running sets ``replayed`` in the
  marker; the first exchange, recording what it issued, finds the flag and revokes at once (both
  steps are single Lua scripts, so one of them always sees the other). The code's client is checked
  inside the taking step: another client's code is left untouched (no marker), and only the client the
  code was issued to can flag a replay.
- Access tokens are opaque, kept in Redis under their hash with their expiry (decided by the app
  clock, the TTL only cleans up), and indexed by refresh family and by account for revocation
  (password change or reset revokes every token of the account).
- Refresh tokens are durable (SQL), hashed, bound to their client, rotated on every use inside a
  family with an absolute expiry; presenting a rotated token again revokes the whole family
  (RFC 9700 §4.14.2).

The token endpoint is the hot path: on PostgreSQL a refresh is one statement that claims the token, inserts its
successor and reads the owner's account status (a data-modifying CTE; elsewhere the claiming ``UPDATE ...
RETURNING`` then the ``INSERT``), and one commit; a code exchange's new family is one ``INSERT ... SELECT`` that
also reads the owner's status (on PostgreSQL both run on the driver's cursor: :mod:`idp.driver_sql`); an access
token is one pipelined Redis round trip. These use Core statements
built once and plain values, never ORM objects that a commit would expire and reload.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, literal_column, select, text, update

from idp.clock import timestamp
from idp.crypto import hash_token, new_token
from idp.driver_sql import first_in_transaction
from idp.extensions import clock, db, hashtag, redis_client, rkey
from idp.oidc.clients import get_client
from idp.oidc.keys import aware
from idp.oidc.models import Client, RefreshToken
from idp.redis_store import durable, script

USED_CODE_TTL = 24 * 3600  # how long a redeemed code is remembered (replay detection)
_REFRESH = cast("Table", RefreshToken.__table__)  # Core statements on the hot path


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
        """The authentication context to store with a code or token (what ``asdict`` gives, built directly:
        this runs several times per token request)."""
        return {"account_id": self.account_id, "auth_time": self.auth_time, "acr": self.acr, "amr": list(self.amr),
                "sid": self.sid, "claims": copy.deepcopy(self.claims) if self.claims else {}}


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


def _code_keys(digest: str) -> list[str]:
    """A code and its "used" marker, in one slot (the code digest's)."""
    return [rkey("code", hashtag(digest)), rkey("code-used", hashtag(digest))]


def save_code(code: str, record: AuthorizationCode) -> None:
    """Store a new code (single use)."""
    ttl = max(1, record.expires_at - timestamp(clock().now())) + 60
    redis_client().set(_code_keys(hash_token(code))[0], json.dumps(vars(record)), ex=ttl)


# Replay of a used code by the client it was issued to: flag the marker (only if it exists: junk codes
# create nothing; another client's presentation changes nothing) and return what the first exchange
# recorded so far. A marker without ``client`` (written before the client was recorded) counts as a match.
_FLAG_REPLAY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local owner = redis.call('HGET', KEYS[1], 'client')
if owner and owner ~= ARGV[1] then return false end
redis.call('HSET', KEYS[1], 'replayed', '1')
return redis.call('HGETALL', KEYS[1])
"""
# The first exchange records what it issued and learns in the same step whether a replay came first.
_RECORD_ISSUE = """
redis.call('HSET', KEYS[1], 'access', ARGV[1], 'family', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return redis.call('HGET', KEYS[1], 'replayed')
"""


# Take a code issued to the client ARGV[2] and leave its "used" marker (with that client) in the same atomic
# step (one round trip), so that a replay is always recognised, even if the process dies right after.
# Another client's code is left as it is and 0 is returned (it cannot burn a code it does not own).
_TAKE_CODE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local ok, record = pcall(cjson.decode, raw)
if not ok or type(record) ~= 'table' or record['client_id'] ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], 'used', '1', 'client', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return raw
"""


def redeem_code(code: str, client_id: str) -> AuthorizationCode | None:
    """Take the code if it was issued to ``client_id`` (atomic get-check-and-delete); a second redemption
    by that client revokes what the first one issued. Another client's presentation of a live or used code
    changes nothing (no code burnt, no revocation)."""
    digest = hash_token(code)
    raw = durable(_TAKE_CODE, keys=_code_keys(digest), args=[USED_CODE_TTL, client_id])
    if isinstance(raw, int):  # another client's code, left untouched
        return None
    if raw is None:
        revoke_code_issue(digest, client_id)
        return None
    record = AuthorizationCode(**json.loads(raw))
    if timestamp(clock().now()) >= record.expires_at:
        return None
    return record


# Give a taken code back (its exchange failed on a dependency outage before anything was delivered), unless
# it was replayed meanwhile: then it stays consumed and the replay revocation stands.
_GIVE_BACK_CODE = """
if redis.call('HGET', KEYS[2], 'replayed') then return 0 end
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
"""


def give_back_code(code: str, record: AuthorizationCode) -> bool:
    """Put a redeemed code back for its remaining life (the token request failed on an outage, so the RP
    received nothing and may retry); False when it was replayed meanwhile or has expired."""
    remaining = record.expires_at - timestamp(clock().now())
    if remaining <= 0:
        return False
    digest = hash_token(code)
    return bool(script(_GIVE_BACK_CODE)(keys=_code_keys(digest), args=[json.dumps(vars(record)), remaining + 60]))


def forget_access_token(access_token: str) -> None:
    """Withdraw an access token whose response was never delivered."""
    redis_client().delete(rkey("at", hash_token(access_token)))


def revoke_replayed_issue(access_token: str, family_id: str | None) -> None:
    """What a code issued, when :func:`store_access_token` found the code replayed meanwhile."""
    _revoke_issued(hash_token(access_token), family_id)


def remember_code_issue(code: str, access_token: str, family_id: str | None) -> bool:
    """Remember what a redeemed code issued; if the code was replayed meanwhile, revoke it now.

    Returns True when it had to be revoked."""
    access = hash_token(access_token)
    replayed = script(_RECORD_ISSUE)(
        keys=_code_keys(hash_token(code))[1:], args=[access, family_id or "", USED_CODE_TTL])
    if not replayed:
        return False
    _revoke_issued(access, family_id)
    return True


def revoke_code_issue(code_digest: str, client_id: str) -> bool:
    """A code replayed by the client it was issued to: flag it and revoke the access token and the refresh
    family it issued (a first exchange still running revokes them itself when it records them); True if
    the code was known (and that client's)."""
    reply = script(_FLAG_REPLAY)(keys=_code_keys(code_digest)[1:], args=[client_id])
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
    code_replayed: bool = field(default=False, compare=False)  # see store_access_token(code=...)

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


def store_access_token(token: str, *, client: Client, scope: str, user: EndUser, expires_in: int,
                       family_id: str | None, code: str | None = None) -> AccessToken:
    """Save a new access token under its hash (indexed by family and by account for revocation).

    With ``code`` (a code exchange), the same round trip records what the code issued in its "used" marker
    and reads whether a replay flagged it (``record.code_replayed``: see :func:`remember_code_issue`)."""
    now = timestamp(clock().now())
    record = AccessToken(digest=hash_token(token), client_id=client.client_id, scope=scope, issued_at=now,
                         expires_at=now + expires_in, user=user.auth(), family_id=family_id)
    data = {"client_id": record.client_id, "scope": scope, "issued_at": now, "expires_at": record.expires_at,
            "user": record.user, "family_id": family_id}  # asdict(record) without the digest, no deep copy
    ttl = expires_in + 60
    # The token and its index sets (account, family) live in different hash slots, so this is one pipelined
    # round trip rather than one script. Revocations never remove an index member (the sets expire with
    # their longest-lived member: EXPIRE NX then GT), so a token is always found by a revocation that runs
    # after this step, whatever order a cluster applies these commands in.
    pipe = redis_client().pipeline(transaction=False)
    pipe.set(rkey("at", record.digest), json.dumps(data), ex=ttl)
    for index in _access_indexes(user.account_id, family_id):
        pipe.sadd(index, record.digest)
        pipe.expire(index, ttl, nx=True)
        pipe.expire(index, ttl, gt=True)
    if code is not None:
        # Not one script, yet as safe: the replay's _FLAG_REPLAY is atomic and these run in order on one
        # connection, so either it ran first (HGET reads its flag) or it sees what HSET recorded.
        marker = _code_keys(hash_token(code))[1]
        pipe.hset(marker, mapping={"access": record.digest, "family": family_id or ""})
        pipe.expire(marker, USED_CODE_TTL)
        pipe.hget(marker, "replayed")
    replies = pipe.execute()
    record.code_replayed = code is not None and bool(replies[-1])
    return record


def _access_indexes(account_id: str, family_id: str | None) -> list[str]:
    return [rkey("at-account", account_id)] + ([rkey("at-family", family_id)] if family_id else [])


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
@dataclass(frozen=True, slots=True)
class ClaimedRefreshToken:
    """A refresh token this request has just claimed for rotation (plain values read by the claiming
    UPDATE: nothing to reload after the commit). Authlib's TokenMixin methods the refresh grant uses."""

    id: int
    family_id: str
    client_id: str
    account_id: str
    scope: str
    auth: dict[str, Any]
    expires_at: datetime
    account_status: str
    grants_not_before: datetime | None = None  # the owner's cut-off (aware): grants from older logins are refused

    def check_client(self, client: Client) -> bool:
        """Bound to the client it was issued to."""
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        """Granted scope."""
        return self.scope


@cache
def _claim_statement() -> Any:
    """``UPDATE oidc_refresh_tokens SET rotated_at = :now WHERE token_hash = :h AND client_id = :c AND
    rotated_at IS NULL AND NOT revoked RETURNING ..., (SELECT status FROM accounts WHERE id = account_id), (SELECT
    grants_not_before ...)`` (built once; the owner's status and grant cut-off come back with the claim,
    correlated subqueries because SQLite's RETURNING cannot name the tables of an UPDATE ... FROM)."""
    from idp.accounts.models import Account, grants_cutoff_column

    rt, owner = _REFRESH, cast("Table", Account.__table__).alias("owner")
    # Spelled out: SQLite's compiler leaves the columns of a RETURNING clause unqualified, subquery included.
    correlation = literal_column("owner.id") == literal_column(f"{rt.name}.account_id")
    status = select(owner.c.status).where(correlation).scalar_subquery()
    changed = select(grants_cutoff_column(owner)).where(correlation).scalar_subquery()
    return (update(rt)
            .where(rt.c.token_hash == bindparam("h"), rt.c.client_id == bindparam("c"), rt.c.rotated_at.is_(None),
                   rt.c.revoked.is_(False))
            .values(rotated_at=bindparam("now"))
            .returning(rt.c.id, rt.c.family_id, rt.c.client_id, rt.c.account_id, rt.c.scope, rt.c.auth,
                       rt.c.expires_at, status.label("account_status"), changed.label("grants_not_before")))


@cache
def _rotate_statement() -> Any:
    """PostgreSQL: the claim of :func:`_claim_statement` and the insert of the successor in one statement (a
    data-modifying CTE: the successor is inserted only for a claimed row, with its family, client, owner, auth
    and absolute expiry; its scope is the requested one, else the predecessor's). The owner's cut-off is
    PostgreSQL's GREATEST, which skips nulls: :func:`idp.accounts.models.grants_cutoff_column`."""
    return text("""
WITH claimed AS (
    UPDATE oidc_refresh_tokens SET rotated_at = :now
    WHERE token_hash = :h AND client_id = :c AND rotated_at IS NULL AND NOT revoked
    RETURNING id, family_id, client_id, account_id, scope, auth, expires_at
), successor AS (
    INSERT INTO oidc_refresh_tokens (token_hash, family_id, client_id, account_id, scope, auth, issued_at,
                                     expires_at, rotated_at, revoked)
    SELECT :successor, family_id, client_id, account_id, COALESCE(CAST(:scope AS VARCHAR), scope), auth, :now,
           expires_at, NULL, false
    FROM claimed
)
SELECT claimed.id, claimed.family_id, claimed.client_id, claimed.account_id, claimed.scope, claimed.auth,
       claimed.expires_at, owner.status AS account_status,
       GREATEST(owner.grants_not_before, owner.password_changed_at) AS grants_not_before
FROM claimed LEFT JOIN accounts AS owner ON owner.id = claimed.account_id""")


def claim_refresh_token(token: str, client_id: str, *, successor: str | None = None,
                        scope: str | None = None) -> ClaimedRefreshToken | None:
    """Atomically mark this client's unrotated, unrevoked token as used and return it; None otherwise
    (unknown, another client's, revoked, or already rotated: see :func:`reused_family`). With ``successor``,
    also insert that token as its successor in the family (scope ``scope``, else the claimed token's): one
    statement on PostgreSQL, the claim then :func:`insert_refresh_token` elsewhere.

    One statement: of two parallel uses exactly one gets the row (the other waits for its row lock,
    then finds it rotated). Not committed here: the row stays locked until the successor is committed
    with it (see ``idp.oidc.views.token``). A worker that dies in between leaves the token
    unused, so that the client's retry succeeds instead of being taken for a reuse that revokes the
    family. Expiry and the account's status are the caller's to check (roll back when refused: the
    successor goes with the claim)."""
    if not token or len(token) > 200:
        return None
    connection = db.session.connection()
    now = clock().now()
    together = successor is not None and connection.dialect.name == "postgresql"
    if together:  # the hottest statement of the token endpoint: on the driver's cursor (idp.driver_sql)
        row = first_in_transaction(_rotate_statement(), {"h": hash_token(token), "c": client_id, "now": now,
                                                         "successor": hash_token(successor or ""),
                                                         "scope": scope or None})
    else:
        row = connection.execute(_claim_statement(), {"h": hash_token(token), "c": client_id, "now": now}).first()
    if row is None:
        return None
    claimed = ClaimedRefreshToken(id=row.id, family_id=row.family_id, client_id=row.client_id,
                               account_id=row.account_id, scope=row.scope, auth=dict(row.auth),
                               expires_at=aware(row.expires_at) or row.expires_at, account_status=row.account_status,
                               grants_not_before=aware(row.grants_not_before))
    if successor is not None and not together:
        _insert_refresh(successor, family_id=claimed.family_id, client_id=client_id, account_id=claimed.account_id,
                        scope=scope or claimed.scope, auth=claimed.auth, issued_at=now, expires_at=claimed.expires_at)
    return claimed


def reused_family(token: str, client_id: str) -> str | None:
    """After a refused claim: the family of this client's token when it is a live token that was already
    rotated, i.e. a reuse (stolen or replayed: RFC 9700 §4.14.2), else None."""
    if not token or len(token) > 200:
        return None
    rt = _REFRESH
    row = db.session.execute(select(rt.c.family_id, rt.c.rotated_at, rt.c.revoked, rt.c.expires_at)
                             .where(rt.c.token_hash == hash_token(token), rt.c.client_id == client_id)).first()
    if row is None or row.rotated_at is None or row.revoked:
        return None
    expires_at = aware(row.expires_at)
    return row.family_id if expires_at is not None and clock().now() < expires_at else None


def insert_refresh_token(token: str, *, client: Client, scope: str, user: EndUser,
                         family: RefreshToken | ClaimedRefreshToken | None, lifetime: int) -> str:
    """Write a refresh token (Core INSERT): a new family (code grant) or the successor in ``family``
    (rotation); returns its family id.

    Not committed: the caller commits once the access token is stored too, so that the claimed
    rotation of the predecessor and its successor are written together or not at all."""
    now = clock().now()
    family_id = family.family_id if family else new_token(24)
    expires_at = aware(family.expires_at) if family else now + timedelta(seconds=lifetime)
    _insert_refresh(token, family_id=family_id, client_id=client.client_id, account_id=user.account_id, scope=scope,
                    auth=user.auth(), issued_at=now, expires_at=expires_at)
    return family_id


def _insert_refresh(token: str, *, family_id: str, client_id: str, account_id: str, scope: str, auth: dict[str, Any],
                    issued_at: datetime, expires_at: datetime | None) -> None:
    db.session.connection().execute(_INSERT_REFRESH, {
        "token_hash": hash_token(token), "family_id": family_id, "client_id": client_id, "account_id": account_id,
        "scope": scope, "auth": auth, "issued_at": issued_at, "expires_at": expires_at, "rotated_at": None,
        "revoked": False})


def forget_refresh_token(token: str) -> None:
    """Delete a successor inserted with its claim that the response did not issue after all (not committed)."""
    db.session.connection().execute(delete(_REFRESH).where(_REFRESH.c.token_hash == hash_token(token)))


# Built once: the parameters name every column, so the compiled form is cached and nothing is rebuilt per request.
_INSERT_REFRESH = insert(_REFRESH)


@dataclass(frozen=True, slots=True)
class NewFamily:
    """A refresh-token family just inserted by a code exchange, with its owner's status and password change
    as the same statement read them."""

    family_id: str
    account_status: str
    grants_not_before: datetime | None


@cache
def _insert_family_statement() -> Any:
    """``INSERT INTO oidc_refresh_tokens (...) SELECT :token_hash, ... FROM accounts WHERE id = :account_id
    RETURNING (SELECT status ...), (SELECT grants_not_before ...)``: nothing is inserted for an account that
    no longer exists, and the owner's state comes back with the insert (one round trip instead of a SELECT
    and an INSERT). Correlated subqueries, as in :func:`_claim_statement`, for SQLite's RETURNING."""
    from idp.accounts.models import Account, grants_cutoff_column

    rt, account = _REFRESH, cast("Table", Account.__table__)
    owner = account.alias("owner")
    names = ["token_hash", "family_id", "client_id", "account_id", "scope", "auth", "issued_at", "expires_at",
             "revoked"]
    values = [bindparam(name, type_=rt.c[name].type) for name in names]
    correlation = literal_column("owner.id") == literal_column(f"{rt.name}.account_id")
    status = select(owner.c.status).where(correlation).scalar_subquery()
    changed = select(grants_cutoff_column(owner)).where(correlation).scalar_subquery()
    source = select(*values).where(account.c.id == bindparam("owner_id"))
    return (insert(rt).from_select(names, source)
            .returning(status.label("account_status"), changed.label("grants_not_before")))


@cache
def _insert_family_text() -> Any:
    """PostgreSQL: :func:`_insert_family_statement` as SQL text, the JSON ``auth`` bound as text and cast (no
    bind processor: it runs on the driver's cursor, :func:`idp.driver_sql.first_in_transaction`). It also
    takes the new family's advisory lock until the exchange commits (:func:`revoke_family` waits for it)."""
    return text("""
WITH owner AS (
    SELECT id, status, GREATEST(grants_not_before, password_changed_at) AS cutoff,
           pg_advisory_xact_lock(hashtextextended(:family_id, 0)) AS family_lock
    FROM accounts WHERE id = :owner_id
), inserted AS (
    INSERT INTO oidc_refresh_tokens (token_hash, family_id, client_id, account_id, scope, auth, issued_at,
                                     expires_at, revoked)
    SELECT :token_hash, :family_id, :client_id, id, :scope, CAST(:auth AS JSON), :issued_at, :expires_at, :revoked
    FROM owner
    RETURNING account_id
)
SELECT owner.status AS account_status, owner.cutoff AS grants_not_before
FROM owner JOIN inserted ON inserted.account_id = owner.id""")


def insert_family_checking_owner(token: str, *, client: Client, scope: str, user: EndUser,
                                 lifetime: int) -> NewFamily | None:
    """The first refresh token of a new family (code grant), inserted only if its owner's account exists, whose
    status and grant cut-off come back with it (the caller refuses an inactive owner or a login older than
    the cut-off, and rolls back); None when the account does not exist. Not committed (see
    :func:`insert_refresh_token`)."""
    now = clock().now()
    family_id = new_token(24)
    values = {"token_hash": hash_token(token), "family_id": family_id, "client_id": client.client_id,
              "account_id": user.account_id, "owner_id": user.account_id, "scope": scope, "auth": user.auth(),
              "issued_at": now, "expires_at": now + timedelta(seconds=lifetime), "revoked": False}
    if db.engine.dialect.name == "postgresql":  # every code exchange: on the driver's cursor (idp.driver_sql)
        values["auth"] = json.dumps(values["auth"])
        row = first_in_transaction(_insert_family_text(), values)
    else:
        row = db.session.connection().execute(_insert_family_statement(), values).first()
    if row is None:
        return None
    return NewFamily(family_id, row.account_status, aware(row.grants_not_before))


def issue_refresh_token(token: str, *, client: Client, scope: str, user: EndUser,
                        family: RefreshToken | ClaimedRefreshToken | None, lifetime: int) -> RefreshToken:
    """:func:`insert_refresh_token`, returning the ORM record (not committed either)."""
    insert_refresh_token(token, client=client, scope=scope, user=user, family=family, lifetime=lifetime)
    return db.session.scalars(select(RefreshToken).where(RefreshToken.token_hash == hash_token(token))).one()


def find_refresh_token(token: str) -> RefreshToken | None:
    """The refresh token record with this value (any state), or None."""
    if not token or len(token) > 200:
        return None
    return db.session.scalars(select(RefreshToken).where(RefreshToken.token_hash == hash_token(token))).first()


def revoke_family(family_id: str) -> None:
    """Revoke every refresh token of a family and the access tokens it issued, including rows that requests in
    flight commit meanwhile:

    - a code exchange inserting the family: its rows are not visible until it commits, yet the code's "used"
      marker names the family as soon as the access token is stored (before the ID token is signed and the
      exchange committed), and a replay of the code revokes what the marker names. On PostgreSQL the exchange
      holds the family's advisory lock until it commits (:func:`insert_family_checking_owner`); each pass
      here takes it first, so the revocation waits for that commit and then sees the rows;
    - a rotation in flight: the pass waits for the claimed row's lock, but the successor that rotation
      commits was not in the pass's snapshot. Passes repeat until one finds no unrevoked row left (a revoked
      token can no longer be rotated, so this ends).

    SQLite (the embedded default, refused in production) has no advisory lock: there a code replayed in
    that window still leaves the new family alive."""
    live = (RefreshToken.family_id == family_id, RefreshToken.revoked.is_(False))
    while True:
        if db.engine.dialect.name == "postgresql":
            db.session.execute(_FAMILY_LOCK, {"family_id": family_id})
        # Updated by family, not by a list of ids: a family rotated 65,535 times would exceed the driver's
        # parameter limit and could never be revoked.
        locked = _lock_in_id_order(*live)
        if locked:
            db.session.execute(update(RefreshToken).where(*live).values(revoked=True))
        db.session.commit()
        if not locked:
            break
    _revoke_indexed(rkey("at-family", family_id))


_FAMILY_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:family_id, 0))")


def _lock_in_id_order(*where: Any) -> int:
    """Lock the refresh-token rows matching ``where`` in id order, and count them (nothing fetched). Every
    revocation locks this way before it updates: two of them on the same rows (parallel reuses of a family, a
    reuse during a password change) otherwise lock in different orders and PostgreSQL kills one of them as a
    deadlock (a 503)."""
    return int(db.session.scalar(select(func.count()).select_from(
        select(RefreshToken.id).where(*where).order_by(RefreshToken.id).with_for_update().subquery())) or 0)


def revoke_on_event(account_id: str, **_: object) -> None:
    """Lifecycle receiver (password changed, account reset): see :func:`revoke_all_for_account`."""
    revoke_all_for_account(account_id)


def revoke_all_for_account(account_id: str) -> int:
    """Revoke every refresh-token family of an account and every access token issued to it (password
    change or reset, advisor reset); returns how many refresh tokens were revoked."""
    live = (RefreshToken.account_id == account_id, RefreshToken.revoked.is_(False))
    _lock_in_id_order(*live)
    result = db.session.execute(update(RefreshToken).where(*live).values(revoked=True))
    db.session.commit()
    _revoke_indexed(rkey("at-account", account_id))
    return int(getattr(result, "rowcount", 0) or 0)


def _revoke_indexed(index: str) -> None:
    """Delete every access token of an index set; the set itself is left to expire (see store_access_token)."""
    digests = [d.decode() if isinstance(d, bytes) else d for d in redis_client().smembers(index)]
    if digests:
        redis_client().delete(*(rkey("at", d) for d in digests))


def predates_cutoff(auth_time: int | None, grants_not_before: datetime | None) -> bool:
    """True when a grant's authentication happened before the account's cut-off (``Account.grants_not_before``:
    its last password change, or its disabling): it must not be honoured (a refresh or a code exchange in
    flight then may have escaped :func:`revoke_all_for_account`, a code waiting in Redis was not revoked at
    all). ``grants_not_before`` may be naive (SQLite): read as UTC."""
    cutoff = aware(grants_not_before)
    return cutoff is not None and auth_time is not None and int(auth_time) < timestamp(cutoff)


def new_opaque_token() -> str:
    """A 256-bit opaque token value."""
    return new_token(32)


def expires_at_timestamp(record: RefreshToken) -> int:
    """The family's absolute expiry as a timestamp."""
    expires_at = aware(record.expires_at)
    return timestamp(expires_at) if expires_at else 0

