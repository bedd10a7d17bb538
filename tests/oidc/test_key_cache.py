"""Caching of signing keys, of the published key set and of clients' jwks_uri documents (review
finding 17): no parsing or query per signature, rotation still reaches every worker within seconds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask, jsonify

from tests.conftest import serve_in_thread


@contextmanager
def counted_queries() -> Iterator[list[str]]:
    from sqlalchemy import event

    from idp.extensions import db

    seen: list[str] = []

    def _count(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(db.engine, "before_cursor_execute", _count)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", _count)


def test_signing_and_the_published_key_set_need_no_query_while_cached(app: Any) -> None:
    from idp.oidc import keys

    with app.app_context():
        keys.signing_key("RS256")
        first = keys.public_keyset()
        with counted_queries() as queries:
            keys.signing_key("RS256")
            keys.signing_key("ES256")
            again = keys.public_keyset()
        assert queries == []
        assert again is first, "the published set is parsed once"


def test_rotation_here_is_seen_at_once(app: Any) -> None:
    from idp.oidc import keys

    with app.app_context():
        before = keys.signing_key("RS256").kid
        upcoming = next(k.kid for k in keys.list_keys() if k.alg == "RS256" and k.state == "next")
        keys.rotate("RS256")
        assert keys.signing_key("RS256").kid == upcoming != before
        assert upcoming in {k.kid for k in keys.public_keyset().keys}


def test_rotation_by_another_worker_is_seen_within_the_cache_time(app: Any, monkeypatch: Any) -> None:
    from idp.oidc import keys

    now = [1000.0]
    monkeypatch.setattr(keys.time, "monotonic", lambda: now[0])
    with app.app_context():
        before = keys.signing_key("RS256").kid
        monkeypatch.setattr(keys, "forget_cached_keys", lambda: None)  # the rotation happens elsewhere
        keys.rotate("RS256")
        assert keys.signing_key("RS256").kid == before, "this worker still uses what it read"
        now[0] += keys.KEY_CACHE_SECONDS
        assert keys.signing_key("RS256").kid != before


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, list[int]]]:
    from joserfc.jwk import RSAKey

    hits: list[int] = []
    key = RSAKey.generate_key(2048, parameters={"kid": "rp-1"})
    sink = Flask("rp-jwks")

    @sink.get("/jwks")
    def _jwks() -> Any:
        hits.append(1)
        return jsonify(keys=[key.as_dict(private=False)])

    @sink.get("/huge")
    def _huge() -> Any:
        hits.append(1)
        return jsonify(keys=[], padding="x" * 100_000)

    server = serve_in_thread(sink)
    try:
        yield server.url, hits
    finally:
        server.stop()


def test_jwks_uri_is_fetched_once_per_cache_period(app: Any, jwks_server: Any, monkeypatch: Any) -> None:
    from idp.oidc import server
    from idp.oidc.models import Client

    url, hits = jwks_server
    monkeypatch.setattr(server, "_jwks_uri_cache", {})
    now = [50.0]
    monkeypatch.setattr(server.time, "monotonic", lambda: now[0])
    client = Client(client_id="rp", jwks_uri=f"{url}/jwks")
    assert [k.kid for k in server.client_keyset(client).keys] == ["rp-1"]
    server.client_keyset(client)
    assert len(hits) == 1
    now[0] += server.JWKS_URI_CACHE_SECONDS
    server.client_keyset(client)
    assert len(hits) == 2


def test_jwks_uri_document_larger_than_the_limit_is_refused(app: Any, jwks_server: Any, monkeypatch: Any) -> None:
    from authlib.oauth2.rfc6749 import InvalidRequestError

    from idp.oidc import server
    from idp.oidc.models import Client

    url, _ = jwks_server
    monkeypatch.setattr(server, "_jwks_uri_cache", {})
    with pytest.raises(InvalidRequestError):
        server.client_keyset(Client(client_id="rp", jwks_uri=f"{url}/huge"))


def test_jwks_uri_cache_keeps_at_most_its_size(app: Any, jwks_server: Any, monkeypatch: Any) -> None:
    from idp.oidc import server
    from idp.oidc.models import Client

    url, _ = jwks_server
    monkeypatch.setattr(server, "_jwks_uri_cache", {})
    monkeypatch.setattr(server, "JWKS_URI_CACHE_SIZE", 2)
    for n in range(3):
        server.client_keyset(Client(client_id="rp", jwks_uri=f"{url}/jwks?n={n}"))
    assert len(server._jwks_uri_cache) == 2 and f"{url}/jwks?n=0" not in server._jwks_uri_cache
