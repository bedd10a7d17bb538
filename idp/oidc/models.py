"""Durable OIDC records: clients, refresh tokens (rotated, in families) and signing keys.

Authorization codes and access tokens are short-lived and live in Redis (:mod:`idp.oidc.tokens`,
DESIGN.md §3). Secrets are never stored in clear: client secrets and refresh tokens are kept as
SHA-256 hashes of high-entropy random values, private keys are sealed with :func:`idp.crypto.encrypt`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from idp.crypto import constant_time_equal, hash_token
from idp.extensions import GROWING_ID, Base

KINDS = ("web", "mobile", "federation")
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")


class Client(Base, ClientMixin):
    """A registered relying party (RFC 7591 metadata names where one exists)."""

    __tablename__ = "oidc_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_secret_hash: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="web")  # web | mobile | federation
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32), default="client_secret_basic")
    grant_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    scope: Mapped[str] = mapped_column(String(500), default="openid profile email birth identite_pivot")
    pkce_required: Mapped[bool] = mapped_column(Boolean, default=True)
    subject_type: Mapped[str] = mapped_column(String(16), default="pairwise")  # pairwise | public
    sector_identifier: Mapped[str | None] = mapped_column(String(255))
    id_token_signed_response_alg: Mapped[str | None] = mapped_column(String(16))
    id_token_encrypted_response_alg: Mapped[str | None] = mapped_column(String(32))
    id_token_encrypted_response_enc: Mapped[str | None] = mapped_column(String(32))
    userinfo_signed_response_alg: Mapped[str | None] = mapped_column(String(16))
    userinfo_encrypted_response_alg: Mapped[str | None] = mapped_column(String(32))
    userinfo_encrypted_response_enc: Mapped[str | None] = mapped_column(String(32))
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    jwks_uri: Mapped[str | None] = mapped_column(String(500))
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(500))
    require_email_code: Mapped[bool] = mapped_column(Boolean, default=True)
    code_ttl: Mapped[int | None] = mapped_column(Integer)  # None: the settings' default for the kind
    access_token_ttl: Mapped[int | None] = mapped_column(Integer)
    refresh_token_ttl: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    # --- ClientMixin (Authlib) -----------------------------------------------------------
    def get_client_id(self) -> str:
        """The public client identifier."""
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        """No default: OIDC requires ``redirect_uri`` on every request (Core §3.1.2.1)."""
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        """The requested scopes this client may have (unknown ones are dropped, RFC 6749 §3.3)."""
        allowed = set(self.scope.split())
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact string match against the registered URIs (no prefix, no pattern)."""
        return redirect_uri in (self.redirect_uris or [])

    def check_client_secret(self, client_secret: str) -> bool:
        """Compare the hash of the presented secret in constant time."""
        if not self.client_secret_hash or not client_secret:
            return False
        return constant_time_equal(hash_token(client_secret), self.client_secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """One registered method for every endpoint (token, revocation, introspection)."""
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        """Code flow only."""
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        """authorization_code always; refresh_token when registered."""
        return grant_type in (self.grant_types or [])

    # --- helpers -------------------------------------------------------------------------
    @property
    def is_public(self) -> bool:
        """A client without credentials (PKCE is then mandatory)."""
        return self.token_endpoint_auth_method == "none"

    @property
    def sector(self) -> str:
        """The pairwise sector: the registered sector identifier's host, else the redirect URIs' host."""
        source = self.sector_identifier or (self.redirect_uris[0] if self.redirect_uris else self.client_id)
        return urlsplit(source).hostname or source

    @property
    def client_metadata(self) -> dict[str, Any]:
        """RFC 7591 view used by Authlib endpoints (userinfo signing, end session)."""
        return {
            "client_name": self.name,
            "redirect_uris": list(self.redirect_uris or []),
            "post_logout_redirect_uris": list(self.post_logout_redirect_uris or []),
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "grant_types": list(self.grant_types or []),
            "userinfo_signed_response_alg": self.userinfo_signed_response_alg,
            "userinfo_encrypted_response_alg": self.userinfo_encrypted_response_alg,
            "userinfo_encrypted_response_enc": self.userinfo_encrypted_response_enc,
            "id_token_signed_response_alg": self.id_token_signed_response_alg,
            "id_token_encrypted_response_alg": self.id_token_encrypted_response_alg,
            "id_token_encrypted_response_enc": self.id_token_encrypted_response_enc,
        }


class RefreshToken(Base):
    """One refresh token of a rotation family (RFC 9700 §4.14.2).

    Each use rotates it: the token is marked ``rotated_at`` and a successor is issued in the same
    family with the family's absolute expiry. Presenting a rotated token again revokes the family.
    """

    __tablename__ = "oidc_refresh_tokens"

    id: Mapped[int] = mapped_column(GROWING_ID, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(64), index=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("oidc_clients.client_id", ondelete="CASCADE"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(String(500))
    auth: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # auth_time, acr, amr, sid, claims
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)  # absolute, of the family
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    def check_client(self, client: Client) -> bool:
        """Bound to the client it was issued to (Authlib TokenMixin)."""
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        """Granted scope (Authlib TokenMixin)."""
        return self.scope


class SigningKey(Base):
    """A JWS signing key. States: ``next`` (published, not signing yet), ``current`` (signs),
    ``retired`` (published until ``retired_at + key_retire_after`` so what it signed stays verifiable)."""

    __tablename__ = "oidc_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    private_jwk_enc: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
