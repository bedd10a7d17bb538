"""Discovery and JWKS answered by the WSGI layer in front of Flask (idp.oidc.metadata_wsgi): the same
status, headers (in order) and body as the Flask routes, anything else passed to Flask unchanged, a
rotation visible at once, every answer counted in the HTTP histogram."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from idp.oidc.metadata_wsgi import DISCOVERY_PATH, JWKS_PATH, MetadataFastPath
from tests.conftest import base_config
from tests.oidc.conftest import requests_passed_on

REQUEST_ID = "fixed-request-id-42"


@contextmanager
def flask_only(app: Any) -> Iterator[None]:
    """The application without the fast path (what the Flask routes answer)."""
    layer = app.wsgi_app
    assert isinstance(layer, MetadataFastPath)
    app.wsgi_app = layer.wrapped
    try:
        yield
    finally:
        app.wsgi_app = layer


def _answer(app: Any, method: str, path: str, **headers: str) -> tuple[str, list[tuple[str, str]], bytes]:
    response = app.test_client().open(path, method=method, headers=headers)
    return response.status, list(response.headers.items()), response.get_data()


def _fast_path_taken(app: Any, monkeypatch: Any) -> list[str]:
    """Record every request that reaches Flask."""
    return requests_passed_on(app.wsgi_app, monkeypatch)


@pytest.mark.parametrize("path", [DISCOVERY_PATH, JWKS_PATH])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_fast_path_answers_byte_for_byte_what_the_flask_route_answers(app: Any, monkeypatch: Any, method: str,
                                                                           path: str) -> None:
    with flask_only(app):
        expected = _answer(app, method, path, **{"X-Request-Id": REQUEST_ID})
    reached = _fast_path_taken(app, monkeypatch)
    assert _answer(app, method, path, **{"X-Request-Id": REQUEST_ID}) == expected
    assert reached == []
    assert expected[0] == "200 OK" and ("Cache-Control", "public, max-age=300") in expected[1]
    assert (expected[2] == b"") == (method == "HEAD")


@pytest.mark.parametrize("path", [DISCOVERY_PATH, JWKS_PATH])
def test_https_deployments_get_the_same_headers_hsts_included(tmp_path: Any, clock: Any, path: str) -> None:
    from idp import create_app

    app = create_app(base_config(clock, None, issuer="https://localhost", redis_url="memory://",
                                 database_url=f"sqlite:///{tmp_path}/h.db"))
    from idp.extensions import db

    with app.app_context():
        db.create_all()
    with flask_only(app):
        expected = _answer(app, "GET", path, **{"X-Request-Id": REQUEST_ID})
    answered = _answer(app, "GET", path, **{"X-Request-Id": REQUEST_ID})
    assert answered == expected
    assert dict(answered[1])["Strict-Transport-Security"].startswith("max-age=")


def test_request_ids_are_kept_when_wellformed_and_made_otherwise(client: Any) -> None:
    assert client.get(JWKS_PATH, headers={"X-Request-Id": "abc-123-def-456"}).headers["X-Request-Id"] == \
        "abc-123-def-456"
    made = client.get(JWKS_PATH, headers={"X-Request-Id": "<script>"}).headers["X-Request-Id"]
    assert made != "<script>" and len(made) == 16
    assert len(client.get(DISCOVERY_PATH).headers["X-Request-Id"]) == 16


@pytest.mark.parametrize(("method", "path", "headers"), [
    ("POST", JWKS_PATH, {}),
    ("OPTIONS", DISCOVERY_PATH, {}),
    ("GET", JWKS_PATH + "/", {}),
    ("GET", "/.well-known/openid-configuration/", {}),
    ("GET", JWKS_PATH, {"Authorization": "Basic"}),  # the API blueprint refuses a lone scheme (400)
    ("GET", JWKS_PATH, {"Authorization": "Bearer abc"}),
])
def test_anything_else_goes_to_flask_unchanged(app: Any, monkeypatch: Any, method: str, path: str,
                                               headers: dict[str, str]) -> None:
    headers = {"X-Request-Id": REQUEST_ID, **headers}
    with flask_only(app):
        expected = _answer(app, method, path, **headers)
    reached = _fast_path_taken(app, monkeypatch)
    answered = _answer(app, method, path, **headers)
    assert reached == [f"{method} {path}"]
    # The same status and kind of answer (a 405 page lists the allowed methods in a set's order).
    assert answered[0] == expected[0] and dict(answered[1])["Content-Type"] == dict(expected[1])["Content-Type"]


def test_a_rotation_shows_in_the_jwks_at_once(app: Any, client: Any) -> None:
    from idp.oidc import keys

    before = {k["kid"] for k in client.get(JWKS_PATH).json["keys"]}
    with app.app_context():
        keys.rotate("RS256")
        published = {k["kid"] for k in keys.public_jwks()["keys"]}
    after = {k["kid"] for k in client.get(JWKS_PATH).json["keys"]}
    assert after == published and after - before


def test_each_application_answers_its_own_settings(tmp_path: Any, clock: Any) -> None:
    from idp import create_app

    issuers = []
    for name in ("a", "b"):
        app = create_app(base_config(clock, None, issuer=f"http://{name}.localhost", redis_url="memory://",
                                     database_url=f"sqlite:///{tmp_path}/{name}.db"))
        issuers.append(app.test_client().get(DISCOVERY_PATH).json["issuer"])
    assert issuers == ["http://a.localhost", "http://b.localhost"]


def test_a_failure_reading_the_keys_is_answered_by_flask_as_before(app: Any, monkeypatch: Any) -> None:
    from idp.oidc import keys

    def broken() -> bytes:
        raise RuntimeError("database down")

    monkeypatch.setattr(keys, "public_jwks_bytes", broken)
    with flask_only(app):
        expected = app.test_client().get(JWKS_PATH)
    reached = _fast_path_taken(app, monkeypatch)
    answered = app.test_client().get(JWKS_PATH)
    assert reached == [f"GET {JWKS_PATH}"]
    assert answered.status_code == expected.status_code >= 500
    assert answered.get_data() == expected.get_data()


def test_fast_answers_are_counted_in_the_http_histogram_not_logged(client: Any, caplog: Any) -> None:
    from prometheus_client import REGISTRY

    def count(route: str, method: str) -> float:
        labels = {"route": route, "method": method, "status": "200"}
        return REGISTRY.get_sample_value("idp_http_request_duration_seconds_count", labels) or 0.0

    before = count(JWKS_PATH, "GET"), count(DISCOVERY_PATH, "HEAD")
    with caplog.at_level(logging.INFO, logger="idp.access"):
        client.get(JWKS_PATH)
        client.get(JWKS_PATH)
        client.head(DISCOVERY_PATH)
    assert (count(JWKS_PATH, "GET"), count(DISCOVERY_PATH, "HEAD")) == (before[0] + 2, before[1] + 1)
    assert not [r for r in caplog.records if r.name == "idp.access"]


def test_fresh_key_records_serve_the_jwks_without_an_app_context_and_a_retirement_still_shows(
        app: Any, client: Any, clock: Any, monkeypatch: Any) -> None:
    from idp.oidc import keys

    client.get(JWKS_PATH)  # creates the keys
    with app.app_context():
        keys.rotate("RS256")
        retired = next(k.kid for k in keys.list_keys() if k.state == "retired")
    assert retired in {k["kid"] for k in client.get(JWKS_PATH).json["keys"]}  # records read, now fresh

    def no_context() -> Any:
        raise AssertionError("an application context was pushed")

    monkeypatch.setattr(app, "app_context", no_context)
    assert retired in {k["kid"] for k in client.get(JWKS_PATH).json["keys"]}
    clock.advance(app.extensions["idp.settings"].key_retire_after + 1)
    assert retired not in {k["kid"] for k in client.get(JWKS_PATH).json["keys"]}, "unpublished at once"
