"""Userinfo's common case answered by the WSGI layer in front of Flask (idp.oidc.userinfo_wsgi): the same
status, headers (in order) and body as the Flask route; every other case (a token that is unknown,
revoked, expired or without ``openid``, a signing or encrypting client, another request shape, a
failure) answered by Flask exactly as before; every answer timed and logged."""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

import pytest

from idp.oidc.metadata_wsgi import MetadataFastPath
from idp.oidc.userinfo_wsgi import USERINFO_PATH, UserinfoFastPath
from tests.oidc.conftest import flow, login, make_person, make_rp, redeem, requests_passed_on, without_layer

REQUEST_ID = "fixed-request-id-42"


def _layer(app: Any) -> UserinfoFastPath:
    outer = app.wsgi_app
    assert isinstance(outer, MetadataFastPath) and isinstance(outer.wrapped, UserinfoFastPath)
    return outer.wrapped


def flask_only(app: Any) -> Any:
    """The application without the userinfo fast path (what the Flask route answers)."""
    return without_layer(app, UserinfoFastPath)


def _reaching_flask(app: Any, monkeypatch: Any) -> list[str]:
    """Record every request that reaches Flask through the userinfo layer."""
    return requests_passed_on(_layer(app), monkeypatch)


def _answer(app: Any, method: str = "GET", path: str = USERINFO_PATH, **kwargs: Any) -> tuple[int, list[Any], bytes]:
    headers = {"X-Request-Id": REQUEST_ID, **kwargs.pop("headers", {})}
    response = app.test_client().open(path, method=method, headers=headers, **kwargs)
    return response.status_code, list(response.headers.items()), response.get_data()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _access_token(app: Any, person: Any, rp: Any, scope: str, **params: Any) -> str:
    client = app.test_client()
    f = flow(rp, scope=scope, **params)
    return str(redeem(client, rp, login(app, client, person, f)["code"], f).json["access_token"])


def _stored_token(app: Any, person: Any, rp: Any, scope: str, expires_in: int = 600) -> str:
    """An access token stored directly (a scope no authorization request here would give, e.g. no openid)."""
    from idp.clock import timestamp
    from idp.extensions import clock
    from idp.oidc import tokens
    from idp.oidc.clients import get_client

    token = secrets.token_urlsafe(32)
    with app.app_context():
        client = get_client(rp.client_id)
        assert client is not None
        tokens.store_access_token(token, client=client, scope=scope, expires_in=expires_in, family_id=None,
                                  user=tokens.EndUser(account_id=person.account_id, auth_time=timestamp(clock().now()),
                                                      acr="eidas1", amr=["pwd"]))
    return token


@pytest.mark.parametrize("scope", ["openid", "openid email", "openid profile email birth identite_pivot"])
@pytest.mark.parametrize("subject_type", ["pairwise", "public"])
def test_the_fast_path_answers_byte_for_byte_what_the_flask_route_answers(any_app: Any, monkeypatch: Any, scope: str,
                                                                           subject_type: str) -> None:
    person, rp = make_person(any_app), make_rp(any_app, subject_type=subject_type)
    token = _access_token(any_app, person, rp, scope)
    with flask_only(any_app):
        expected = _answer(any_app, headers=_bearer(token))
    reached = _reaching_flask(any_app, monkeypatch)
    assert _answer(any_app, headers=_bearer(token)) == expected
    assert reached == []
    status, headers, body = expected
    assert status == 200 and ("Cache-Control", "no-store") in headers and json.loads(body)["sub"]
    # a lower-case scheme is the same request (Authlib compares schemes without case)
    assert _answer(any_app, headers={"Authorization": f"bearer {token}"}) == expected and reached == []


def test_the_claims_parameter_narrows_the_answer_as_through_flask(app: Any, monkeypatch: Any) -> None:
    person, rp = make_person(app), make_rp(app)
    token = _access_token(app, person, rp, "openid profile email",
                          claims='{"userinfo": {"given_name": null, "birthplace": null}}')
    with flask_only(app):
        expected = _answer(app, headers=_bearer(token))
    reached = _reaching_flask(app, monkeypatch)
    assert _answer(app, headers=_bearer(token)) == expected and reached == []


def test_https_deployments_get_the_same_headers_hsts_included(tmp_path: Any, clock: Any, mailbox: Any) -> None:
    from idp import create_app
    from idp.extensions import db
    from tests.conftest import base_config

    app = create_app(base_config(clock, mailbox, issuer="https://localhost", redis_url="memory://",
                                 database_url=f"sqlite:///{tmp_path}/h.db"))
    with app.app_context():
        db.create_all()
    person, rp = make_person(app), make_rp(app, redirect_uris=["https://rp.example/callback"])
    token = _stored_token(app, person, rp, "openid email")
    with flask_only(app):
        expected = _answer(app, headers=_bearer(token), base_url="https://localhost")
    answered = _answer(app, headers=_bearer(token), base_url="https://localhost")
    assert answered == expected and answered[0] == 200
    assert dict(answered[1])["Strict-Transport-Security"].startswith("max-age=")


def test_request_ids_are_kept_when_wellformed_and_made_otherwise(app: Any, person: Any, web_rp: Any) -> None:
    token = _stored_token(app, person, web_rp, "openid")
    client = app.test_client()
    kept = client.get(USERINFO_PATH, headers={**_bearer(token), "X-Request-Id": "abc-123-def-456"})
    assert kept.status_code == 200 and kept.headers["X-Request-Id"] == "abc-123-def-456"
    made = client.get(USERINFO_PATH, headers={**_bearer(token), "X-Request-Id": "<script>"}).headers["X-Request-Id"]
    assert made != "<script>" and len(made) == 16


@pytest.mark.parametrize("case", ["unknown token", "expired token", "no openid scope", "revoked token",
                                  "signing client", "encrypting client", "person unknown to the registry"])
def test_a_token_the_fast_path_does_not_serve_is_answered_by_flask_as_before(any_app: Any, monkeypatch: Any,
                                                                            clock: Any, case: str) -> None:
    from joserfc.jwk import RSAKey

    person = make_person(any_app)
    if case == "signing client":
        rp = make_rp(any_app, userinfo_signed_response_alg="RS256")
    elif case == "encrypting client":
        key = RSAKey.generate_key(2048, parameters={"kid": "enc", "use": "enc"}).as_dict(private=False)
        rp = make_rp(any_app, userinfo_signed_response_alg="RS256", userinfo_encrypted_response_alg="RSA-OAEP-256",
                     userinfo_encrypted_response_enc="A256GCM", jwks={"keys": [key]})
    else:
        rp = make_rp(any_app)
    token = _stored_token(any_app, person, rp, "email" if case == "no openid scope" else "openid email",
                          expires_in=60)
    if case == "unknown token":
        token = secrets.token_urlsafe(32)
    elif case == "expired token":
        clock.advance(seconds=61)
    elif case == "revoked token":
        revoked = any_app.test_client().post("/revoke", data={"token": token}, auth=(rp.client_id, rp.secret))
        assert revoked.status_code == 200
    elif case == "person unknown to the registry":
        from sqlalchemy import text

        from idp.extensions import db

        with any_app.app_context():
            db.session.execute(text("DELETE FROM rfi_records"))
            db.session.commit()
        token = _stored_token(any_app, person, rp, "openid profile")
    reached = _reaching_flask(any_app, monkeypatch)
    answered = _answer(any_app, headers=_bearer(token))
    assert reached == [f"GET {USERINFO_PATH}"]
    with flask_only(any_app):
        expected = _answer(any_app, headers=_bearer(token))
    if case in ("signing client", "encrypting client"):  # each answer is signed (and encrypted) afresh
        assert answered[0] == expected[0] == 200
        assert dict(answered[1])["Content-Type"] == dict(expected[1])["Content-Type"] == "application/jwt"
        return
    assert answered == expected
    assert answered[0] == (403 if case == "no openid scope" else 401)
    assert "WWW-Authenticate" in dict(answered[1])


@pytest.mark.parametrize(("method", "path", "kwargs"), [
    ("POST", USERINFO_PATH, {"header": True}),
    ("POST", USERINFO_PATH, {"data": "form"}),
    ("GET", USERINFO_PATH, {"query_string": "x=1", "header": True}),
    ("GET", USERINFO_PATH + "/", {"header": True}),
    ("GET", USERINFO_PATH, {"headers": {"Authorization": "Bearer"}}),  # a lone scheme: the API refuses it (400)
    ("GET", USERINFO_PATH, {"headers": {"Authorization": "Basic eDp5"}}),
    ("GET", USERINFO_PATH, {"double_space": True}),
    ("GET", USERINFO_PATH, {}),
])
def test_another_request_shape_goes_to_flask_unchanged(app: Any, monkeypatch: Any, person: Any, web_rp: Any,
                                                      method: str, path: str, kwargs: dict[str, Any]) -> None:
    token = _stored_token(app, person, web_rp, "openid email")
    kwargs = dict(kwargs)
    if kwargs.pop("header", False):
        kwargs["headers"] = _bearer(token)
    if kwargs.pop("double_space", False):
        kwargs["headers"] = {"Authorization": f"Bearer  {token}"}
    if kwargs.get("data") == "form":
        kwargs["data"] = {"access_token": token}
    with flask_only(app):
        expected = _answer(app, method, path, **kwargs)
    reached = _reaching_flask(app, monkeypatch)
    answered = _answer(app, method, path, **kwargs)
    assert reached == [f"{method} {path}"]
    if dict(expected[1])["Content-Type"] == "application/json":
        assert answered == expected
    else:  # the French 404 page (its headers vary: a session cookie)
        assert answered[0] == expected[0] == 404


def _count_calls(monkeypatch: Any, owner: Any, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_a_failure_in_the_fast_path_is_answered_by_flask_once_not_met_again(app: Any, monkeypatch: Any,
                                                                            person: Any, web_rp: Any) -> None:
    """The registry fails: the answer is the route's own (503), after one attempt, not two (a stalled registry
    or Redis would otherwise hold the worker twice as long, and count twice on the circuit breaker)."""
    from idp.oidc import claims
    from idp.rfi_adapter.base import RegistryUnavailable

    token = _stored_token(app, person, web_rp, "openid profile")
    asked: list[int] = []

    def registry_down(*_args: Any) -> Any:
        asked.append(1)
        raise RegistryUnavailable()

    monkeypatch.setattr(claims, "userinfo_claims", registry_down)
    with flask_only(app):
        expected = _answer(app, headers=_bearer(token))
    assert expected[0] == 503 and asked == [1]
    reached = _reaching_flask(app, monkeypatch)
    assert _answer(app, headers=_bearer(token)) == expected
    assert reached == [f"GET {USERINFO_PATH}"] and asked == [1, 1]


@pytest.mark.parametrize("case", ["unknown token", "signing client", "person unknown to the registry"])
def test_what_the_fast_path_looked_up_is_not_looked_up_again(app: Any, monkeypatch: Any, person: Any,
                                                             case: str) -> None:
    """A token sprayed at random, or a FranceConnect client's signed answer: one Redis look-up of the token
    per request, and one registry look-up, whichever path answers."""
    from idp.oidc import tokens
    from idp.rfi_adapter.sql import SqlRfiAdapter

    rp = make_rp(app, userinfo_signed_response_alg="RS256") if case == "signing client" else make_rp(app)
    token = secrets.token_urlsafe(32) if case == "unknown token" else _stored_token(app, person, rp, "openid profile")
    if case == "person unknown to the registry":
        from sqlalchemy import text

        from idp.extensions import db

        with app.app_context():
            db.session.execute(text("DELETE FROM rfi_records"))
            db.session.commit()
    token_reads = _count_calls(monkeypatch, tokens, "find_access_token")
    registry_reads = _count_calls(monkeypatch, SqlRfiAdapter, "lookup")
    answered = _answer(app, headers=_bearer(token))
    assert answered[0] == {"unknown token": 401, "signing client": 200, "person unknown to the registry": 401}[case]
    assert token_reads == [1]
    assert registry_reads == ([] if case == "unknown token" else [1])


def test_a_token_of_a_deleted_client_is_worthless_not_a_server_error(any_app: Any, person: Any) -> None:
    from idp.extensions import db
    from idp.oidc.clients import forget_cached_client
    from idp.oidc.models import Client

    rp = make_rp(any_app)
    token = _stored_token(any_app, person, rp, "openid email")
    with any_app.app_context():
        db.session.delete(db.session.get(Client, rp.client_id))
        db.session.commit()
        forget_cached_client(rp.client_id)
    for only_flask in (False, True):
        if only_flask:
            with flask_only(any_app):
                answered = any_app.test_client().get(USERINFO_PATH, headers=_bearer(token))
        else:
            answered = any_app.test_client().get(USERINFO_PATH, headers=_bearer(token))
        assert answered.status_code == 401 and answered.json["error"] == "invalid_token"


def test_each_answer_is_timed_and_written_to_the_access_log(app: Any, person: Any, web_rp: Any,
                                                            caplog: Any) -> None:
    from idp import metrics

    token = _stored_token(app, person, web_rp, "openid email")
    timer = metrics.request_timer(USERINFO_PATH, "GET", "200")
    before = timer._sum.get()
    with caplog.at_level(logging.INFO, logger="idp.access"):
        assert app.test_client().get(USERINFO_PATH, headers={**_bearer(token), "X-Request-Id": REQUEST_ID}) \
            .status_code == 200
    assert timer._sum.get() > before
    lines = [r for r in caplog.records if r.name == "idp.access"]
    assert [(r.request_id, r.method, r.path, r.status_code) for r in lines] == \
        [(REQUEST_ID, "GET", USERINFO_PATH, 200)]
    assert token not in caplog.text
