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

from flask import current_app, g, has_app_context, has_request_context
from sqlalchemy import event, select
from sqlalchemy.orm import Session, object_session

from idp.crypto import hash_token, new_identifier, new_token
from idp.extensions import clock, db, settings
from idp.oidc import registration
from idp.oidc.models import Client
from idp.oidc.registration import ClientRegistrationError

CLIENT_CACHE_SECONDS = 5.0  # how long a worker reuses a client record it read
CLIENT_CACHE_SIZE = 256  # at most this many clients per worker (the oldest entry goes first)
_COLUMNS = tuple(attr.key for attr in Client.__mapper__.column_attrs)
_cache_lock = threading.Lock()

@dataclass(frozen=True, slots=True)
class Registered:
    """A new client and its secret, shown once (only its hash is stored)."""

    client: Client
    client_secret: str | None


def create_client(*, name: str | None = None, kind: str | None = None, redirect_uris: list[str] | None = None,
                  post_logout_redirect_uris: list[str] | None = None, auth_method: str | None = None,
                  client_id: str | None = None, profile: str | None = None, **metadata: Any) -> Registered:
    """Register a client from RFC 7591 metadata (a profile's preset first, then ``metadata``, then the
    named arguments); generates its id and, unless public, a 43-character secret."""
    given: dict[str, Any] = registration.profile(profile) if profile else {}
    given.update({k: v for k, v in metadata.items() if v is not None})
    named = {"client_name": name, "kind": kind, "redirect_uris": redirect_uris,
             "post_logout_redirect_uris": post_logout_redirect_uris, "token_endpoint_auth_method": auth_method}
    given.update({k: v for k, v in named.items() if v is not None})
    given.setdefault("kind", "web")
    given.setdefault("post_logout_redirect_uris", [])
    if "client_name" not in given and "name" not in given:
        raise ClientRegistrationError("client_name is required")
    values = registration.columns(given, production=settings().is_production)
    values = registration.check_consistency({**registration.kind_defaults(values["kind"]), **values})
    method = values["token_endpoint_auth_method"]
    secret = new_token(32) if method in ("client_secret_basic", "client_secret_post") else None
    if client_id is not None and (not client_id or len(client_id) > 64):
        raise ClientRegistrationError("client_id must be 1 to 64 characters")
    client = Client(client_id=client_id or new_identifier(), client_secret_hash=hash_token(secret) if secret else None,
                    created_at=clock().now(), **values)
    db.session.add(client)
    db.session.commit()
    return Registered(client, secret)


def update_client(client_id: str, metadata: dict[str, Any]) -> Client:
    """Change a client's metadata (the same names and checks as at registration; None or "" unsets an
    optional value). Changing the authentication method to or from a secret is refused: register anew."""
    client = db.session.get(Client, client_id)
    if client is None:
        raise ClientRegistrationError(f"no client {client_id!r}")
    changes = registration.columns(metadata, production=settings().is_production)
    current = {column: getattr(client, column) for column in registration.COLUMN_TO_NAME}
    values = registration.check_consistency({**current, **changes})
    had_secret = client.client_secret_hash is not None
    if had_secret != (values["token_endpoint_auth_method"] in ("client_secret_basic", "client_secret_post")):
        raise ClientRegistrationError("token_endpoint_auth_method cannot switch between secret and no secret: "
                                      "register a new client")
    for column, value in values.items():
        setattr(client, column, value)
    db.session.commit()
    return client


def get_client(client_id: str | None) -> Client | None:
    """The client with this id, or None (an unknown id is not cached: a new client is usable at once).

    A fresh copy outside any session for each request (plain values from the cache: no query within
    :data:`CLIENT_CACHE_SECONDS`, nothing expired or reloaded by a commit, no request sees another's
    changes), the same copy for the calls of one request (Authlib asks for the client several times per
    grant); read-only: change clients through the ORM (which refreshes this cache) or by SQL."""
    if not client_id or len(client_id) > 64:
        return None
    memo: dict[str, Client] | None = g.setdefault(_REQUEST_MEMO, {}) if has_request_context() else None
    if memo is not None and client_id in memo:
        return memo[client_id]
    found = _fresh_copy(client_id)
    if memo is not None and found is not None:
        memo[client_id] = found
    return found


_REQUEST_MEMO = "idp_oidc_clients"  # flask.g: the clients this request already got


def _fresh_copy(client_id: str) -> Client | None:
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
    return _copy_of(hit[1])


_NEW_CLIENT = Client.__mapper__.class_manager.new_instance  # an instance with its ORM state, no constructor


def _copy_of(values: dict[str, Any]) -> Client:
    """A transient Client holding its own copy of ``values`` (lists and the JWKS copied, so a request that
    changed one would not change the cache). Built like the ORM loads a row (values straight into the
    instance's ``__dict__``), not through the declarative constructor, which costs ten times as much."""
    client = _NEW_CLIENT()
    client.__dict__.update({k: list(v) if isinstance(v, list) else copy.deepcopy(v) if isinstance(v, dict) else v
                            for k, v in values.items()})
    return client


def _client_cache() -> dict[str, tuple[float, dict[str, Any]]]:
    """This application's per-process client cache (one per app: tests build many apps in one process)."""
    return current_app.extensions.setdefault("idp.oidc.clients", {})


def forget_cached_client(client_id: str) -> None:
    """Drop a client from this worker's cache (and from this request's copies)."""
    with _cache_lock:
        _client_cache().pop(client_id, None)
    if has_request_context():
        g.get(_REQUEST_MEMO, {}).pop(client_id, None)


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
    """Operator view of a client under its metadata names (never the secret or its hash)."""
    values = {column: getattr(client, column) for column in registration.COLUMN_TO_NAME}
    return {"client_id": client.client_id, **registration.metadata_view(values),
            "client_secret_set": client.client_secret_hash is not None}
