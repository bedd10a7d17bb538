"""Client registration and look-up (OIDC Dynamic Client Registration metadata names, RFC 7591).

Kinds (DESIGN.md §4): ``web`` (security-code step-up), ``mobile`` (the app: public client, no code),
``federation`` (FranceConnect: client_secret_post, short lifetimes, step-up per client setting).

Client records are cached per worker for :data:`CLIENT_CACHE_SECONDS` (every token request looks its
client up): a client created, changed or deleted through the ORM in this process is seen at once;
one changed or deleted elsewhere (another worker, ``idp clients``, SQL) takes effect in every worker
within that time, secret hash included.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, has_app_context
from sqlalchemy import event, select
from sqlalchemy.orm import Session, object_session

from idp.crypto import hash_token, new_token
from idp.extensions import clock, db, settings
from idp.oidc.models import AUTH_METHODS, KINDS, Client

CLIENT_CACHE_SECONDS = 5.0  # how long a worker reuses a client record it read
CLIENT_CACHE_SIZE = 256  # at most this many clients per worker (the oldest entry goes first)
_COLUMNS = tuple(attr.key for attr in Client.__mapper__.column_attrs)
_cache_lock = threading.Lock()

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
    """The client with this id, or None (an unknown id is not cached: a new client is usable at once).

    A fresh copy outside any session each time (plain values from the cache: no query within
    :data:`CLIENT_CACHE_SECONDS`, nothing expired or reloaded by a commit, no request sees another's
    changes); read-only: change clients through the ORM (which refreshes this cache) or by SQL."""
    if not client_id or len(client_id) > 64:
        return None
    cache = _client_cache()
    now = time.monotonic()
    hit = cache.get(client_id)
    if hit is None or now - hit[0] >= CLIENT_CACHE_SECONDS:
        row = db.session.execute(select(*(getattr(Client, name) for name in _COLUMNS))
                                 .where(Client.client_id == client_id)).first()
        if row is None:
            forget_cached_client(client_id)
            return None
        hit = (now, dict(zip(_COLUMNS, row, strict=True)))
        with _cache_lock:
            if len(cache) >= CLIENT_CACHE_SIZE and client_id not in cache:
                del cache[min(cache, key=lambda k: cache[k][0])]
            cache[client_id] = hit
    return Client(**{k: copy.deepcopy(v) if isinstance(v, list | dict) else v for k, v in hit[1].items()})


def _client_cache() -> dict[str, tuple[float, dict[str, Any]]]:
    """This application's per-process client cache (one per app: tests build many apps in one process)."""
    return current_app.extensions.setdefault("idp.oidc.clients", {})


def forget_cached_client(client_id: str) -> None:
    """Drop a client from this worker's cache."""
    with _cache_lock:
        _client_cache().pop(client_id, None)


_WRITTEN = "idp.oidc.clients.written"  # session.info key: client ids flushed in the current transaction


@event.listens_for(Client, "after_insert")
@event.listens_for(Client, "after_update")
@event.listens_for(Client, "after_delete")
def _client_written(_mapper: Any, _connection: Any, target: Client) -> None:
    """A client written through the ORM in this process is re-read at its next look-up: forgotten at the
    flush, and again when its transaction ends (commit or rollback), since between the two another thread
    (or this session, seeing its own flush) may have cached a row that is no longer the committed one."""
    if has_app_context():
        forget_cached_client(target.client_id)
        session = object_session(target)
        if session is not None:
            session.info.setdefault(_WRITTEN, set()).add(target.client_id)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _transaction_ended(session: Session) -> None:
    written = session.info.pop(_WRITTEN, None)
    if written and has_app_context():
        for client_id in written:
            forget_cached_client(client_id)


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
