"""The Authlib authorization server, its grants and their extensions (RFC 6749, OIDC Core, RFC 7636,
RFC 9207, RFC 7009, RFC 7662, RFC 7523, OIDC RP-Initiated Logout).

Nothing here forks Authlib: each class subclasses an Authlib grant, extension or endpoint and fills
in its storage hooks, or tightens one check (PKCE S256 only, iss from the settings, times from the
application clock instead of ``time.time()``).
"""

from __future__ import annotations

import logging
import threading
import time
from functools import cache
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import InvalidClientError, InvalidGrantError, InvalidRequestError, OAuth2Request, grants
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator, BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import OpenIDCode, OpenIDToken, UserInfoEndpoint
from flask import g
from flask import request as flask_request
from joserfc import jwe
from joserfc.jwk import KeySet

from idp.clock import timestamp
from idp.extensions import clock, db, redis_client, rkey, settings
from idp.oidc import claims, keys, tokens
from idp.oidc.clients import access_token_ttl, code_ttl, get_client, refresh_token_ttl
from idp.oidc.models import AUTH_METHODS, Client, RefreshToken

log = logging.getLogger(__name__)

# Scopes answered (discovery); a requested scope outside them, or outside the client's, is ignored.
SCOPES = ["openid", *claims.SCOPE_CLAIMS, "offline_access"]


# --- PKCE (RFC 7636), S256 only -------------------------------------------------------------
class S256CodeChallenge(CodeChallenge):
    """RFC 7636 restricted to S256 (RFC 9700 §2.1.1): ``plain`` and a challenge without a method are
    refused; a challenge is required from public clients and from clients registered with
    ``pkce_required``; a verifier without a challenge is refused (Authlib already does this)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 - overrides Authlib's class attribute

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        """Authorization request checks (RFC 7636 §4.3), stricter than Authlib's defaults."""
        data = grant.request.payload.data
        challenge, method = data.get("code_challenge"), data.get("code_challenge_method")
        client: Client = grant.request.client
        if not challenge and (client.is_public or client.pkce_required):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256.")
        if challenge and method != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is supported.")
        super().validate_code_challenge(grant, redirect_uri)


# --- offline_access (OIDC Core §11) -----------------------------------------------------------
def offline_access_allowed(client: Client, prompt: str | None) -> bool:
    """May ``offline_access`` be granted? Only to a client registered for the refresh_token grant; a
    third-party (federation) client also needs ``prompt=consent`` (Core §11); our own clients (web, the
    app) are the "other conditions ... in place" of §11: the person uses our service (node
    oidc-provider drops it the same way without consent, and its recipe keeps it for first parties)."""
    if not client.check_grant_type("refresh_token"):
        return False
    return client.kind != "federation" or "consent" in (prompt or "").split()


def issues_refresh_token(client: Client, scope: str | None) -> bool:
    """Refresh tokens only for clients registered for the refresh_token grant; a third-party client only
    when ``offline_access`` was granted."""
    if not client.check_grant_type("refresh_token"):
        return False
    return client.kind != "federation" or "offline_access" in (scope or "").split()


class OfflineAccess:
    """Authorization-request extension: drops ``offline_access`` from the granted scope when
    :func:`offline_access_allowed` says no (ignored, never an error)."""

    def __call__(self, grant: Any) -> None:
        """Hook into the code grant after Authlib resolved the granted scope."""
        grant.register_hook("after_validate_authorization_request_payload", self.validate)

    def validate(self, grant: Any, _redirect_uri: str) -> None:
        """Narrow ``request.scope``."""
        request: OAuth2Request = grant.request
        scopes = (request.scope or "").split()
        if "offline_access" in scopes and not offline_access_allowed(request.client, request.payload.data.get("prompt")):
            request.scope = " ".join(s for s in scopes if s != "offline_access")


# --- the ID token (OIDC Core §2, §3.1.3.6) ----------------------------------------------------
class _IdTokenMixin:
    """ID token claims from the application clock, the settings and the authentication context."""

    def get_client_algorithm(self, client: Client) -> str:
        """RS256 by default, ES256 when the client registered it."""
        return client.id_token_signed_response_alg or settings().signing_alg

    def resolve_client_private_key(self, client: Client) -> KeySet:
        """The current key for the client's algorithm; joserfc copies its ``kid`` into the header."""
        return keys.signing_keyset(self.get_client_algorithm(client))

    def get_compatible_claims(self, request: OAuth2Request) -> dict[str, Any]:
        """iss, aud, azp, iat, exp, auth_time, acr, amr, sid (times from the app clock)."""
        user: tokens.EndUser = request.user
        client: Client = request.client
        g.oidc_client = client  # generate_user_info, called next by Authlib, only receives the user
        now = timestamp(clock().now())
        result: dict[str, Any] = {
            "iss": settings().issuer, "aud": client.client_id, "azp": client.client_id,
            "iat": now, "exp": now + settings().id_token_ttl,
            "auth_time": user.auth_time, "acr": user.acr, "amr": list(user.amr),
        }
        if user.sid:
            result["sid"] = user.sid
        return result

    def generate_user_info(self, user: tokens.EndUser, scope: str) -> dict[str, Any]:
        """``sub`` plus the claims the ``claims`` parameter asked for in the ID token (Core §5.5)."""
        client: Client = g.oidc_client
        names = claims.requested_claims(scope, user.claims, "id_token", client)
        return {"sub": claims.subject(client, user.account_id), **claims.identity_claims(user.account_id, names)}

    def process_token(self, grant: Any, response: Any) -> dict[str, Any]:
        """Authlib's signed ID token, then nested in a JWE to the client's key when it registered
        ``id_token_encrypted_response_alg`` (Core §10.2: sign, then encrypt; FranceConnect+)."""
        token: dict[str, Any] = super().process_token(grant, response)  # type: ignore[misc]
        client: Client = grant.request.client
        if token.get("id_token") and client.id_token_encrypted_response_alg:
            token["id_token"] = encrypt_for_client(client, token["id_token"], alg=client.id_token_encrypted_response_alg,
                                                   enc=client.id_token_encrypted_response_enc, nested_jwt=True)
        return token


class IdpOpenIDCode(_IdTokenMixin, OpenIDCode):
    """OpenID Connect on the code grant: ID token with nonce, at_hash, auth_time, acr, amr."""

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        """The nonce protects the RP, which checks it in the ID token (Core §15.5.2); refusing a
        repeated one here would only break a reloaded authorization page, so none is refused."""
        return False


class IdpOpenIDRefresh(_IdTokenMixin, OpenIDToken):
    """A fresh ID token on refresh (Core §12.2), same sub and auth context, no nonce."""


# --- grants ----------------------------------------------------------------------------------
class IdpAuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    """RFC 6749 §4.1 with codes in Redis (single use, replay revokes what they issued)."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)  # noqa: RUF012

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        """Remember the request and the authentication context with the code."""
        user: tokens.EndUser = request.user
        data = request.payload.data
        client: Client = request.client
        tokens.save_code(code, tokens.AuthorizationCode(
            client_id=client.client_id, redirect_uri=request.payload.redirect_uri, scope=request.scope or "",
            nonce=data.get("nonce"), code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            expires_at=timestamp(clock().now()) + code_ttl(client), user=user.auth()))

    def query_authorization_code(self, code: str, client: Client) -> tokens.AuthorizationCode | None:
        """Take the code if it was issued to this client (checked in the atomic step: another client's
        presentation neither burns the code nor revokes what it issued)."""
        record = tokens.redeem_code(code, client.client_id)
        if record is None or record.client_id != client.client_id:
            return None
        self._code = code
        g.oidc_taken_code = (code, record)  # given back by the /token view if an outage stops the exchange
        return record

    def delete_authorization_code(self, authorization_code: tokens.AuthorizationCode) -> None:
        """Already deleted when redeemed; remember what it issued for replay detection."""
        issued = getattr(self.request, "issued", None)
        if not issued:
            return
        replayed = getattr(self.request, "code_replayed", None)  # recorded with the access token (_save_token)
        if replayed is None:
            replayed = tokens.remember_code_issue(self._code, *issued)
        elif replayed:
            tokens.revoke_replayed_issue(*issued)
        if replayed:
            log.warning("authorization code replayed during its exchange: what it issued is revoked",
                        extra={"client_id": authorization_code.client_id})

    def authenticate_user(self, authorization_code: tokens.AuthorizationCode) -> tokens.EndUser | None:
        """The account the code was issued to, if it is still active and the login is not older than its
        password (a code waiting in Redis when the password changed is refused: invalid_grant).

        When the exchange issues a refresh token, the check is made by the INSERT of its family in
        :func:`_save_token` (same rule, one round trip fewer), before anything is stored or signed."""
        user = authorization_code.end_user()
        if issues_refresh_token(self.request.client, authorization_code.get_scope()):
            g.oidc_owner_unchecked = True
            return user
        return _existing(user)


class IdpRefreshTokenGrant(grants.RefreshTokenGrant):
    """RFC 6749 §6 with rotation and family revocation on reuse (RFC 9700 §4.14.2)."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)  # noqa: RUF012
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> tokens.ClaimedRefreshToken | None:
        """Claim this client's usable token (one atomic UPDATE); a rotated one presented again revokes its
        family. Another client's token is invalid_grant and costs its owner nothing."""
        client: Client = self.request.client
        requested = self.request.payload.scope or None
        successor = None
        # Whether a new refresh token will be issued is known before the claim, except for a federation client
        # asking no scope (it depends on the claimed token's): then the successor is inserted by _save_token.
        if (client.kind != "federation" or requested) and issues_refresh_token(client, requested):
            successor = tokens.new_opaque_token()  # inserted with the claim, issued by _refresh_token_value
        claimed = tokens.claim_refresh_token(refresh_token, client.client_id, successor=successor, scope=requested)
        if claimed is None:
            # A claim that waited for a parallel use's commit keeps the row lock it then took, though it
            # claimed nothing: released before the revocation, which takes the family's advisory lock (a
            # revoker holding that lock and waiting for this row would otherwise deadlock with this one).
            db.session.rollback()
            family_id = tokens.reused_family(refresh_token, client.client_id)
            if family_id is not None:  # rotated before: stolen or replayed
                log.warning("refresh token reuse: family revoked", extra={"client_id": client.client_id})
                tokens.revoke_family(family_id)
            return None
        if clock().now() >= claimed.expires_at:  # past the family's absolute life: give the claim back
            db.session.rollback()
            return None
        if tokens.predates_cutoff(claimed.auth.get("auth_time"), claimed.grants_not_before):
            # A successor inserted by a refresh in flight while the password changed (or the account was
            # disabled) escaped the revocation.
            db.session.rollback()
            log.warning("refresh token older than the account's cut-off refused", extra={"client_id": client.client_id})
            return None
        g.oidc_refresh_family = claimed
        if successor is not None:
            g.oidc_successor = successor
        return claimed

    def authenticate_user(self, refresh_token: tokens.ClaimedRefreshToken) -> tokens.EndUser | None:
        """The account of the family, if it is still active (its status was read by the claim; a deleted
        account's tokens are deleted with it)."""
        if not _is_active(refresh_token.account_status):
            return None
        return tokens.EndUser(**refresh_token.auth)

    def revoke_old_credential(self, refresh_token: tokens.ClaimedRefreshToken) -> None:
        """Already marked rotated (atomically) in authenticate_refresh_token."""


def refresh_token_usable(record: RefreshToken) -> bool:
    """Not expired (absolute family life) and not revoked; rotation is claimed separately."""
    expires_at = keys.aware(record.expires_at)
    return not record.revoked and expires_at is not None and clock().now() < expires_at


def _is_active(status: str | None) -> bool:
    """The account rule (``Account.is_active``) applied to a status read without loading the account."""
    from idp.accounts.models import status_allows_sign_in

    return status_allows_sign_in(status)


def _existing(user: tokens.EndUser) -> tokens.EndUser | None:
    row = db.session.connection().execute(_owner_statement(), {"account_id": user.account_id}).first()
    if row is None or not _is_active(row.status) or tokens.predates_cutoff(user.auth_time, row.grants_not_before):
        return None
    return user


@cache
def _owner_statement() -> Any:
    """``SELECT status, grants_not_before FROM accounts WHERE id = :account_id`` (built once)."""
    from sqlalchemy import Table, bindparam, select

    from idp.accounts.models import Account, grants_cutoff_column

    table = Account.__table__
    assert isinstance(table, Table)
    return select(table.c.status, grants_cutoff_column(table).label("grants_not_before")) \
        .where(table.c.id == bindparam("account_id"))


# --- client authentication: private_key_jwt (RFC 7523 §2.2, OIDC Core §9) --------------------
ASSERTION_MAX_LIFETIME = 300  # seconds: the longest exp - iat accepted for a client assertion


class PrivateKeyJwt(JWTBearerClientAssertion):
    """``private_key_jwt``: an assertion signed with a key from the client's JWKS or jwks_uri."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def get_audiences(self) -> list[str]:
        """The issuer and its token endpoint are both accepted as audience."""
        issuer = settings().issuer
        return [issuer, f"{issuer}/token", f"{issuer}/revoke", f"{issuer}/introspect"]

    def verify_claims(self, claims: Any) -> None:
        """Authlib's checks (iss = sub, aud, exp with leeway, single-use jti), after refusing an assertion
        valid for more than :data:`ASSERTION_MAX_LIFETIME` (``exp - iat``; without ``iat``, from now): a
        long-lived assertion is a stolen credential's best friend, and its jti would have to be kept as long."""
        exp, iat = claims.get("exp"), claims.get("iat", time.time())
        if _is_number(exp) and _is_number(iat) and exp - iat > ASSERTION_MAX_LIFETIME:
            raise InvalidClientError(description="The client assertion is valid for too long (5 minutes at most).")
        super().verify_claims(claims)

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        """Each assertion is single use: its jti is remembered until the assertion's ``exp`` plus the leeway
        (the time during which Authlib would still accept it; Authlib checks ``exp`` on the real clock)."""
        ttl = max(1, int(claims["exp"] + self.leeway - time.time()) + 1)
        return bool(redis_client().set(rkey("jti", claims["sub"], str(jti)[:128]), "1", nx=True, ex=ttl))

    def resolve_client_public_key(self, client: Client) -> KeySet:
        """The client's registered keys."""
        return client_keyset(client)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


JWKS_URI_CACHE_SECONDS = 300.0  # a client's key set fetched from its jwks_uri is reused this long
JWKS_URI_CACHE_SIZE = 64  # at most this many clients' key sets per worker
JWKS_URI_MAX_BYTES = 64 * 1024  # a larger document is refused (a client cannot make us swallow a huge body)
_jwks_uri_cache: dict[str, tuple[float, KeySet]] = {}
_jwks_uri_lock = threading.Lock()


def client_keyset(client: Client) -> KeySet:
    """The client's public keys, registered inline or fetched from its jwks_uri (short timeout, size
    limit, cached a few minutes per worker)."""
    if client.jwks:
        return KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]
    if client.jwks_uri:
        return _fetch_jwks(client.jwks_uri)
    raise InvalidRequestError("The client has no registered keys.")


def encrypt_for_client(client: Client, plaintext: str, *, alg: str, enc: str | None, nested_jwt: bool) -> str:
    """JWE compact serialization (RFC 7516 §7.1) to the client's encryption key for ``alg``, with its
    ``kid`` in the header so the client finds its private key; ``cty: JWT`` for a signed JWT inside."""
    key = _encryption_key(client_keyset(client), alg)
    protected = {"alg": alg, "enc": enc or "A256GCM", "cty": "JWT" if nested_jwt else "json"}
    if key.kid:
        protected["kid"] = key.kid
    return jwe.encrypt_compact(protected, plaintext, key, algorithms=[alg, protected["enc"]])


def _encryption_key(keyset: KeySet, alg: str) -> Any:
    """The client's key for ``alg``: right type, ``use`` enc (or unset), ``alg`` matching (or unset)."""
    wanted = "RSA" if alg.startswith("RSA") else "EC"
    for key in keyset.keys:
        if key.key_type == wanted and key.get("use", "enc") == "enc" and key.get("alg") in (None, alg):
            return key
    raise InvalidRequestError(f"The client has no key to encrypt with {alg}.")


def _download_jwks(uri: str) -> KeySet:
    """The key set at ``uri``; a client whose jwks_uri does not answer 200 with a JWK Set within the limits
    gets an RFC error (invalid_request), never a 500: its keys are its problem, not an outage here."""
    import json

    import requests
    from joserfc.errors import JoseError

    try:
        with requests.get(uri, timeout=3, stream=True, allow_redirects=False) as response:
            status = response.status_code
            body = response.raw.read(JWKS_URI_MAX_BYTES + 1, decode_content=True)
        if len(body) > JWKS_URI_MAX_BYTES:
            raise InvalidRequestError("The client's jwks_uri document is too large.")
        if status != 200:
            raise ValueError(f"status {status}")
        return KeySet.import_key_set(json.loads(body))
    except (requests.RequestException, ValueError, TypeError, KeyError, JoseError) as exc:
        log.warning("client jwks_uri unusable", extra={"error": type(exc).__name__})
        raise InvalidRequestError("The client's jwks_uri could not be read.") from None


def _fetch_jwks(uri: str) -> KeySet:
    now = time.monotonic()
    with _jwks_uri_lock:
        cached = _jwks_uri_cache.get(uri)
    if cached is not None and now - cached[0] < JWKS_URI_CACHE_SECONDS:
        return cached[1]
    keyset = _download_jwks(uri)
    with _jwks_uri_lock:
        if len(_jwks_uri_cache) >= JWKS_URI_CACHE_SIZE and uri not in _jwks_uri_cache:
            oldest = min(_jwks_uri_cache, key=lambda k: _jwks_uri_cache[k][0])
            del _jwks_uri_cache[oldest]
        _jwks_uri_cache[uri] = (now, keyset)
    return keyset


# --- tokens ----------------------------------------------------------------------------------
def _save_token(token: dict[str, Any], request: OAuth2Request) -> None:
    """Store what the generator made: access token in Redis, refresh token in its family."""
    client: Client = request.client
    user: tokens.EndUser = request.user
    family: tokens.ClaimedRefreshToken | None = g.get("oidc_refresh_family")
    new_family_id = None
    successor: str | None = g.pop("oidc_successor", None)
    if successor is not None and token.get("refresh_token") != successor:
        tokens.forget_refresh_token(successor)  # inserted with the claim, but this response does not issue it
    unchecked = g.pop("oidc_owner_unchecked", False)  # code grant: the owner is checked here (authenticate_user)
    if token.get("refresh_token") and unchecked:
        created = tokens.insert_family_checking_owner(token["refresh_token"], client=client,
                                                      scope=token.get("scope", ""), user=user,
                                                      lifetime=refresh_token_ttl(client))
        if created is None or not _is_active(created.account_status) \
                or tokens.predates_cutoff(user.auth_time, created.grants_not_before):
            raise InvalidGrantError("There is no 'user' for this code.")  # the /token view rolls the insert back
        new_family_id = created.family_id
    elif unchecked and _existing(user) is None:  # no refresh token after all: the check as without one
        raise InvalidGrantError("There is no 'user' for this code.")
    elif family is not None and successor is not None and token.get("refresh_token") == successor:
        new_family_id = family.family_id  # inserted with the claim (authenticate_refresh_token)
    elif token.get("refresh_token"):
        new_family_id = tokens.insert_refresh_token(token["refresh_token"], client=client,
                                                    scope=token.get("scope", ""), user=user, family=family,
                                                    lifetime=refresh_token_ttl(client))
    g.oidc_issued_access = token["access_token"]  # withdrawn by the /token view if the response fails
    taken = g.get("oidc_taken_code")  # a code exchange: what it issues is recorded in the same round trip
    stored = tokens.store_access_token(token["access_token"], client=client, scope=token.get("scope", ""), user=user,
                                       expires_in=int(token["expires_in"]), family_id=new_family_id,
                                       code=taken[0] if taken else None)
    if taken:
        request.code_replayed = stored.code_replayed  # acted on by delete_authorization_code
    # Not committed here: the /token view commits the rotation claim and the successor once, after the whole
    # response (ID token included) was built, and after Redis took the access token. A failure before (Redis
    # or database down, ID token claims or keys, worker killed) leaves the old refresh token usable.
    request.issued = (token["access_token"], new_family_id)


class IdpAuthorizationServer(AuthorizationServer):
    """Flask authorization server whose requests can also be rebuilt from a stored interaction."""

    def validate_requested_scope(self, scope: str | None) -> None:
        """A scope we do not know is ignored, not refused (RFC 6749 §3.3, Core §3.1.2.1 "SHOULD ignore"):
        the client's ``get_allowed_scope`` keeps the known scopes it is registered for."""

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        """The live Flask request, or a resumed authorization request (dict of its parameters)."""
        if isinstance(request, dict):
            rebuilt = OAuth2Request("GET", settings().issuer + "/authorize", headers={})
            rebuilt.payload = BasicOAuth2Payload(dict(request))
            return rebuilt
        if isinstance(request, OAuth2Request):
            return request
        return super().create_oauth2_request(request)


class Issuer(IssuerParameter):
    """RFC 9207: ``iss`` on every authorization response, errors included."""

    def get_issuer(self) -> str:
        """The configured issuer."""
        return settings().issuer


def _generate_token(*, grant_type: str, client: Client, user: Any = None, scope: str | None = None,
                    expires_in: int | None = None, include_refresh_token: bool = True) -> dict[str, Any]:
    generator = BearerTokenGenerator(lambda **_: tokens.new_opaque_token(), _refresh_token_value,
                                     lambda c, _grant: access_token_ttl(c))
    include_refresh_token = include_refresh_token and issues_refresh_token(client, scope)
    return generator(grant_type, client, user, scope, expires_in, include_refresh_token)


def _refresh_token_value(**_: Any) -> str:
    """A new refresh token, or on a refresh the successor already inserted with the claim."""
    successor: str | None = g.get("oidc_successor")
    return successor or tokens.new_opaque_token()


# --- resource endpoints ----------------------------------------------------------------------
class AccessTokenValidator(BearerTokenValidator):
    """RFC 6750 bearer tokens from the Redis store."""

    def authenticate_token(self, token_string: str) -> tokens.AccessToken | None:
        """The live access token of a client that still exists, or None (the userinfo layer's look-up for
        this request when it made one: :func:`idp.oidc.userinfo_wsgi.found_token`)."""
        from idp.oidc.userinfo_wsgi import found_token

        looked_up, token = found_token(flask_request.environ, token_string)
        if not looked_up:
            token = tokens.find_access_token(token_string)
        if token is None or get_client(token.client_id) is None:  # a deleted client's tokens are worthless
            return None
        return token


class FormBearerProtector(ResourceProtector):
    """Accepts the token in the Authorization header or, for POST, in the form body (RFC 6750 §2.2)."""

    def parse_request_authorization(self, request: Any) -> Any:
        """Header first; then ``access_token`` in an url-encoded POST body."""
        if not request.headers.get("Authorization") and flask_request.method == "POST" \
                and flask_request.mimetype == "application/x-www-form-urlencoded" \
                and flask_request.form.get("access_token"):
            return self.get_token_validator("bearer"), flask_request.form["access_token"]
        return super().parse_request_authorization(request)


class IdpUserInfo(UserInfoEndpoint):
    """OIDC Core §5.3: claims by scope and ``claims`` parameter; signed (and encrypted) JWT when the
    client registered ``userinfo_signed_response_alg`` (and ``userinfo_encrypted_response_alg``)."""

    def get_issuer(self) -> str:
        """The configured issuer."""
        return settings().issuer

    def generate_user_info(self, user: tokens.EndUser, scope: str) -> dict[str, Any]:
        """sub plus the claims the scopes and the ``claims`` parameter asked for."""
        from authlib.integrations.flask_oauth2 import current_token

        return claims.userinfo_claims(current_token.get_client(), user, scope)

    def resolve_private_key(self) -> KeySet:
        """The current key for the client's userinfo signing algorithm."""
        from authlib.integrations.flask_oauth2 import current_token

        client: Client = current_token.get_client()
        return keys.signing_keyset(client.userinfo_signed_response_alg or settings().signing_alg)

    def get_supported_algorithms(self) -> list[str]:
        """Only the algorithms we hold keys for."""
        return list(keys.ALGORITHMS)

    def __call__(self, request: OAuth2Request) -> tuple[int, Any, list[tuple[str, str]]]:
        """Authlib's answer, then JWE-encrypted to the client's key when it asked (FranceConnect+)."""
        import json

        from authlib.integrations.flask_oauth2 import current_token

        status, body, headers = super().__call__(request)
        client: Client | None = current_token.get_client() if current_token else None
        if client is None or not client.userinfo_encrypted_response_alg or status != 200:
            return status, body, headers
        plaintext = body if isinstance(body, str) else json.dumps(body)
        encrypted = encrypt_for_client(client, plaintext, alg=client.userinfo_encrypted_response_alg,
                                       enc=client.userinfo_encrypted_response_enc, nested_jwt=isinstance(body, str))
        return status, encrypted, [("Content-Type", "application/jwt")]


class IdpRevocation(RevocationEndpoint):
    """RFC 7009: access tokens are deleted; a refresh token revokes its whole family."""

    CLIENT_AUTH_METHODS = list(AUTH_METHODS)  # noqa: RUF012

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        """Access token or refresh token (the hint only orders the look-ups)."""
        return _find_any_token(token_string, token_type_hint)

    def revoke_token(self, token: Any, request: OAuth2Request) -> None:
        """Revoke it (and, for a refresh token, its family and their access tokens)."""
        if isinstance(token, tokens.AccessToken):
            tokens.revoke_access_token(token)
        elif isinstance(token, RefreshToken):
            tokens.revoke_family(token.family_id)


class IdpIntrospection(IntrospectionEndpoint):
    """RFC 7662: a client may introspect the tokens issued to it."""

    CLIENT_AUTH_METHODS = list(AUTH_METHODS)  # noqa: RUF012

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        """Access token or refresh token."""
        token = _find_any_token(token_string, token_type_hint)
        return _RefreshView(token) if isinstance(token, RefreshToken) else token

    def check_permission(self, token: Any, client: Client, request: OAuth2Request) -> bool:
        """Only the client the token was issued to."""
        return bool(token.client_id == client.client_id)

    def introspect_token(self, token: Any) -> dict[str, Any]:
        """RFC 7662 §2.2 members (sub as that client sees it). An access token whose owner may no longer use
        it (disabled, or a login older than the account's cut-off: one issued by an exchange in flight across
        a disabling) is inactive (a refresh token's owner is checked by :meth:`_RefreshView.is_revoked`)."""
        client = get_client(token.client_id)
        user = token.get_user()
        if isinstance(token, tokens.AccessToken) and _existing(user) is None:
            return {"active": False}
        return {"active": True, "client_id": token.client_id, "scope": token.get_scope(),
                "token_type": token.token_type, "sub": claims.subject(client, user.account_id) if client else None,
                "aud": token.client_id, "iss": settings().issuer, "exp": token.expires_at_ts,
                "iat": token.issued_at_ts}


class _RefreshView:
    """A refresh token record with the TokenMixin methods introspection needs."""

    token_type = "refresh_token"

    def __init__(self, record: RefreshToken) -> None:
        self.record = record
        self.client_id = record.client_id
        self.expires_at_ts = tokens.expires_at_timestamp(record)
        issued = keys.aware(record.issued_at)
        self.issued_at_ts = timestamp(issued) if issued else 0

    def is_expired(self) -> bool:
        """Past the family's absolute life."""
        return not refresh_token_usable(self.record)

    def is_revoked(self) -> bool:
        """Revoked or already rotated, or its owner may no longer use it (disabled, or a login older than the
        account's cut-off: a family that a revocation in flight missed is refused by the refresh grant too)."""
        if self.record.revoked or self.record.rotated_at is not None:
            return True
        return _existing(self.get_user()) is None

    def get_scope(self) -> str:
        """Granted scope."""
        return self.record.scope

    def get_user(self) -> tokens.EndUser:
        """Owner."""
        return tokens.EndUser(**self.record.auth)


def _find_any_token(token_string: str, hint: str | None) -> Any:
    finders = [tokens.find_access_token, tokens.find_refresh_token]
    if hint == "refresh_token":
        finders.reverse()
    for finder in finders:
        found = finder(token_string)
        if found is not None:
            return found
    return None


# --- assembly --------------------------------------------------------------------------------
def init_server(app: Any) -> IdpAuthorizationServer:
    """A server for this application, with grants, extensions and endpoints registered."""
    from idp.oidc.logout import IdpEndSession

    server = IdpAuthorizationServer()
    server.init_app(app, query_client=get_client, save_token=_save_token)
    server.register_token_generator("default", _generate_token)
    server.scopes_supported = SCOPES
    server.register_client_auth_method("private_key_jwt", PrivateKeyJwt())
    server.register_grant(IdpAuthorizationCodeGrant, [S256CodeChallenge(required=True), OfflineAccess(),
                                                      IdpOpenIDCode()])
    server.register_grant(IdpRefreshTokenGrant, [IdpOpenIDRefresh()])
    server.register_extension(Issuer())
    server.register_endpoint(IdpRevocation)
    server.register_endpoint(IdpIntrospection)
    protector = FormBearerProtector()
    protector.register_token_validator(AccessTokenValidator())
    server.register_endpoint(IdpUserInfo(resource_protector=protector))
    server.register_endpoint(IdpEndSession)
    app.extensions["idp.oidc.server"] = server
    return server


def current_server() -> IdpAuthorizationServer:
    """The authorization server of the current application."""
    from flask import current_app

    return current_app.extensions["idp.oidc.server"]


def add_issuer(response: Any) -> Any:
    """RFC 9207 ``iss`` on an authorization error redirect built outside Authlib's response path."""
    Issuer().add_issuer_parameter(current_server(), response)
    return response
