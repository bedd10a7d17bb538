"""Client registration and look-up (OIDC Dynamic Client Registration metadata names, RFC 7591).

Kinds (DESIGN.md §4): ``web`` (security-code step-up), ``mobile`` (the app: public client, no code),
``federation`` (FranceConnect: client_secret_post, short lifetimes, step-up per client setting).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from idp.crypto import hash_token, new_token
from idp.extensions import clock, db, settings
from idp.oidc.models import AUTH_METHODS, KINDS, Client

_DEFAULT_AUTH = {"web": "client_secret_basic", "mobile": "none", "federation": "client_secret_post"}


class ClientRegistrationError(ValueError):
    """The requested client metadata is inconsistent; the message says why (English, for operators)."""


@dataclass(frozen=True, slots=True)
class Registered:
    """A new client and its secret, shown once (only its hash is stored)."""

    client: Client
    client_secret: str | None


def _check_uri(uri: str, what: str) -> None:
    parts = urlsplit(uri)
    if not parts.scheme or parts.fragment or (parts.scheme in ("http", "https") and not parts.netloc):
        raise ClientRegistrationError(f"{what} must be an absolute URI without fragment: {uri!r}")
    if parts.scheme == "http" and settings().is_production and parts.hostname not in ("127.0.0.1", "localhost"):
        raise ClientRegistrationError(f"{what} must use https in production: {uri!r}")


def create_client(*, name: str, kind: str, redirect_uris: list[str], post_logout_redirect_uris: list[str] | None = None,
                  auth_method: str | None = None, client_id: str | None = None, **metadata: Any) -> Registered:
    """Register a client; generates its id and (unless public) a 43-character secret."""
    if kind not in KINDS:
        raise ClientRegistrationError(f"kind must be one of {', '.join(KINDS)}")
    method = auth_method or _DEFAULT_AUTH[kind]
    if method not in AUTH_METHODS:
        raise ClientRegistrationError(f"auth method must be one of {', '.join(AUTH_METHODS)}")
    if not redirect_uris:
        raise ClientRegistrationError("at least one redirect URI is required")
    for uri in redirect_uris:
        _check_uri(uri, "redirect URI")
    for uri in post_logout_redirect_uris or []:
        _check_uri(uri, "post-logout redirect URI")
    if method == "private_key_jwt" and not (metadata.get("jwks") or metadata.get("jwks_uri")):
        raise ClientRegistrationError("private_key_jwt needs the client's jwks or jwks_uri")
    secret = new_token(32) if method in ("client_secret_basic", "client_secret_post") else None
    defaults: dict[str, Any] = {
        "grant_types": ["authorization_code"] if kind == "federation" else ["authorization_code", "refresh_token"],
        "pkce_required": True,
        "require_email_code": kind != "mobile",
    }
    if kind == "federation":
        defaults["scope"] = "openid profile email birth identite_pivot"
    defaults.update({k: v for k, v in metadata.items() if v is not None})
    client = Client(client_id=client_id or new_token(16), name=name, kind=kind, redirect_uris=list(redirect_uris),
                    post_logout_redirect_uris=list(post_logout_redirect_uris or []),
                    token_endpoint_auth_method=method, client_secret_hash=hash_token(secret) if secret else None,
                    created_at=clock().now(), **defaults)
    db.session.add(client)
    db.session.commit()
    return Registered(client, secret)


def get_client(client_id: str | None) -> Client | None:
    """The client with this id, or None."""
    if not client_id or len(client_id) > 64:
        return None
    return db.session.get(Client, client_id)


def code_ttl(client: Client) -> int:
    """Authorization code lifetime: the client's, else 30 s for federation, else the default."""
    s = settings()
    return client.code_ttl or (s.federation_code_ttl if client.kind == "federation" else s.authorization_code_ttl)


def access_token_ttl(client: Client) -> int:
    """Access token lifetime: the client's, else 60 s for federation, else the default."""
    s = settings()
    return client.access_token_ttl or (
        s.federation_access_token_ttl if client.kind == "federation" else s.access_token_ttl)


def refresh_token_ttl(client: Client) -> int:
    """Absolute lifetime of a refresh-token family."""
    return client.refresh_token_ttl or settings().refresh_token_ttl


def describe(client: Client) -> dict[str, Any]:
    """Operator view of a client (never the secret or its hash)."""
    return {"client_id": client.client_id, "name": client.name, "kind": client.kind,
            "redirect_uris": client.redirect_uris, "post_logout_redirect_uris": client.post_logout_redirect_uris,
            "token_endpoint_auth_method": client.token_endpoint_auth_method, "grant_types": client.grant_types,
            "pkce_required": client.pkce_required, "subject_type": client.subject_type,
            "require_email_code": client.require_email_code}
