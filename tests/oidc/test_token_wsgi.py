"""The token endpoint answered by the WSGI layer in front of Flask (idp.oidc.token_wsgi): the same status,
headers (in order) and body as the Flask route, successes and RFC 6749 errors alike; a malformed
Authorization header, another method, or a failure met in the layer answered by Flask as before, a failure
after one attempt only; every answer counted, timed and logged once."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from idp.oidc.token_wsgi import TOKEN_PATH, TokenFastPath
from tests.oidc.conftest import (
    REDIRECT,
    flow,
    layer_above,
    login,
    make_person,
    make_rp,
    redeem,
    requests_passed_on,
    token_request,
    without_layer,
)

REQUEST_ID = "token-request-id-7"


def flask_only(app: Any) -> Any:
    """The application without the token fast path (what the Flask route answers)."""
    return without_layer(app, TokenFastPath)


def _reaching_flask(app: Any, monkeypatch: Any) -> list[str]:
    """Every request the token layer passes on to Flask (the login pages' requests too: filter them)."""
    return requests_passed_on(layer_above(app, TokenFastPath).wrapped, monkeypatch)


def _token_requests(reached: list[str]) -> list[str]:
    return [r for r in reached if r.endswith(f" {TOKEN_PATH}")]


def _shape(response: Any) -> tuple[int, list[str], list[str]]:
    """Status, header names in order, JSON member names (the values of a success are fresh tokens)."""
    return response.status_code, [name for name, _ in response.headers.items()], sorted(response.json)


def _exact(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, list(response.headers.items()), response.get_data()


def _code(app: Any, person: Any, rp: Any, scope: str = "openid email") -> tuple[Any, str, Any]:
    client = app.test_client()
    f = flow(rp, scope=scope)
    return client, login(app, client, person, f)["code"], f


def test_a_code_exchange_and_a_refresh_are_answered_as_the_flask_route_answers_them(any_app: Any,
                                                                                   monkeypatch: Any) -> None:
    person, rp = make_person(any_app), make_rp(any_app)
    headers = {"X-Request-Id": REQUEST_ID}
    with flask_only(any_app):
        client, code, f = _code(any_app, person, rp)
        expected_exchange = redeem(client, rp, code, f)
        expected_refresh = token_request(client, rp, {"grant_type": "refresh_token",
                                                      "refresh_token": expected_exchange.json["refresh_token"]})
    reached = _reaching_flask(any_app, monkeypatch)
    client, code, f = _code(any_app, person, rp)
    exchange = redeem(client, rp, code, f)
    refresh = token_request(client, rp, {"grant_type": "refresh_token", "refresh_token": exchange.json["refresh_token"]})
    assert _token_requests(reached) == []
    assert _shape(exchange) == _shape(expected_exchange) and exchange.status_code == 200
    assert _shape(refresh) == _shape(expected_refresh) and refresh.status_code == 200
    assert exchange.headers["Cache-Control"] == "no-store" and exchange.headers["Pragma"] == "no-cache"
    assert exchange.headers["Content-Security-Policy"] == expected_exchange.headers["Content-Security-Policy"]
    assert len(exchange.headers["X-Request-Id"]) == 16
    kept = client.post(TOKEN_PATH, data={"grant_type": "refresh_token", "refresh_token": refresh.json["refresh_token"]},
                       auth=(rp.client_id, rp.secret), headers=headers)
    assert kept.status_code == 200 and kept.headers["X-Request-Id"] == REQUEST_ID


@pytest.mark.parametrize("case", ["unknown refresh token", "wrong client secret", "unsupported grant type",
                                  "missing code", "unknown code", "no client authentication"])
def test_rfc6749_errors_are_the_flask_routes_byte_for_byte(any_app: Any, monkeypatch: Any, case: str) -> None:
    rp = make_rp(any_app)
    data, auth = {
        "unknown refresh token": ({"grant_type": "refresh_token", "refresh_token": "x" * 43}, (rp.client_id, rp.secret)),
        "wrong client secret": ({"grant_type": "refresh_token", "refresh_token": "x" * 43}, (rp.client_id, "nope")),
        "unsupported grant type": ({"grant_type": "password", "username": "a", "password": "b"},
                                   (rp.client_id, rp.secret)),
        "missing code": ({"grant_type": "authorization_code", "redirect_uri": REDIRECT},
                         (rp.client_id, rp.secret)),
        "unknown code": ({"grant_type": "authorization_code", "code": "c" * 43, "redirect_uri": REDIRECT,
                          "code_verifier": "v" * 43}, (rp.client_id, rp.secret)),
        "no client authentication": ({"grant_type": "refresh_token", "refresh_token": "x" * 43}, None),
    }[case]
    headers = {"X-Request-Id": REQUEST_ID}
    with flask_only(any_app):
        expected = _exact(any_app.test_client().post(TOKEN_PATH, data=data, auth=auth, headers=headers))
    reached = _reaching_flask(any_app, monkeypatch)
    answered = _exact(any_app.test_client().post(TOKEN_PATH, data=data, auth=auth, headers=headers))
    assert answered == expected and reached == []
    assert answered[0] in (400, 401) and json.loads(answered[2])["error"]


@pytest.mark.parametrize(("method", "headers", "status"), [
    ("POST", {"Authorization": "Basic"}, 400),  # a lone scheme: the API blueprint refuses it before Authlib
    ("GET", {}, 405),
    ("PUT", {}, 405),
])
def test_other_request_shapes_go_to_flask_unchanged(app: Any, monkeypatch: Any, method: str, headers: dict[str, str],
                                                    status: int) -> None:
    def answer() -> Any:
        return app.test_client().open(TOKEN_PATH, method=method, headers={**headers, "X-Request-Id": REQUEST_ID},
                                      data={"grant_type": "refresh_token"} if method != "GET" else None)

    with flask_only(app):
        expected = answer()
    reached = _reaching_flask(app, monkeypatch)
    answered = answer()
    assert answered.status_code == expected.status_code == status
    assert list(answered.headers.keys()) == list(expected.headers.keys())
    if status == 400:  # JSON: the same bytes (the 405 page is HTML with a fresh nonce)
        assert answered.get_data() == expected.get_data()
    assert reached == [f"{method} {TOKEN_PATH}"]


def test_a_body_over_the_size_limit_is_refused_by_flask_as_before(app: Any, monkeypatch: Any) -> None:
    rp = make_rp(app)
    data = {"grant_type": "refresh_token", "refresh_token": "x" * (80 * 1024)}
    with flask_only(app):
        expected = app.test_client().post(TOKEN_PATH, data=data, auth=(rp.client_id, rp.secret))
    reached = _reaching_flask(app, monkeypatch)
    answered = app.test_client().post(TOKEN_PATH, data=data, auth=(rp.client_id, rp.secret))
    assert answered.status_code == expected.status_code == 413
    assert answered.get_data() == expected.get_data() and reached == [f"POST {TOKEN_PATH}"]


def test_an_outage_met_in_the_fast_path_is_answered_by_flask_once_and_the_code_survives(
        any_app: Any, monkeypatch: Any) -> None:
    """Redis fails while the access token is stored: the route's own 503, after one attempt (the grant is not
    run a second time by Flask), and the code is given back for the RP's retry."""
    import redis.exceptions

    from idp.oidc import tokens

    person, rp = make_person(any_app), make_rp(any_app)
    client, code, f = _code(any_app, person, rp)
    stored = tokens.store_access_token
    attempts: list[int] = []

    def redis_down(*args: Any, **kwargs: Any) -> Any:
        attempts.append(1)
        raise redis.exceptions.ConnectionError("Redis is down")

    monkeypatch.setattr(tokens, "store_access_token", redis_down)
    reached = _reaching_flask(any_app, monkeypatch)
    answered = redeem(client, rp, code, f)
    assert answered.status_code == 503 and answered.json["error"] == "temporarily_unavailable"
    assert answered.headers["Cache-Control"] == "no-store"
    assert attempts == [1] and reached == [f"POST {TOKEN_PATH}"]
    monkeypatch.setattr(tokens, "store_access_token", stored)
    retried = redeem(client, rp, code, f)
    assert retried.status_code == 200 and retried.json["access_token"]


def test_each_request_is_counted_timed_and_logged_once(app: Any, caplog: Any) -> None:
    from idp import metrics

    person, rp = make_person(app), make_rp(app)
    client, code, f = _code(app, person, rp)
    ok = metrics.TOKEN_GRANTS.labels(grant_type="authorization_code", outcome="ok")
    refused = metrics.TOKEN_GRANTS.labels(grant_type="refresh_token", outcome="invalid_grant")
    before = (ok._value.get(), refused._value.get())
    timer = metrics.request_timer(TOKEN_PATH, "POST", "200")
    timed = timer._sum.get()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="idp.access"):
        exchange = redeem(client, rp, code, f)
        assert exchange.status_code == 200
        assert token_request(client, rp, {"grant_type": "refresh_token", "refresh_token": "y" * 43}).status_code == 400
    assert (ok._value.get(), refused._value.get()) == (before[0] + 1, before[1] + 1)
    assert timer._sum.get() > timed
    lines = [(r.method, r.path, r.status_code) for r in caplog.records if r.name == "idp.access"]
    assert lines == [("POST", TOKEN_PATH, 200), ("POST", TOKEN_PATH, 400)]
    for secret in (code, exchange.json["access_token"], exchange.json["refresh_token"], rp.secret):
        assert secret not in caplog.text


def test_what_the_grant_logs_carries_the_request_id_and_a_failure_keeps_it(app: Any, monkeypatch: Any,
                                                                          caplog: Any) -> None:
    """A refresh token replayed (its family revoked: a security warning) is logged under the request's id, as
    through Flask; an outage handed to Flask is answered under the id the layer gave the request."""
    import redis.exceptions

    from idp.oidc import tokens

    person, rp = make_person(app), make_rp(app)
    client, code, f = _code(app, person, rp)
    first = redeem(client, rp, code, f).json["refresh_token"]
    assert token_request(client, rp, {"grant_type": "refresh_token", "refresh_token": first}).status_code == 200
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        replayed = client.post(TOKEN_PATH, data={"grant_type": "refresh_token", "refresh_token": first},
                               auth=(rp.client_id, rp.secret), headers={"X-Request-Id": REQUEST_ID})
    assert replayed.status_code == 400 and replayed.json["error"] == "invalid_grant"
    warnings = [r for r in caplog.records if "reuse" in r.getMessage()]
    assert warnings and {r.request_id for r in warnings} == {REQUEST_ID}

    def redis_down(*_args: Any, **_kwargs: Any) -> Any:
        raise redis.exceptions.ConnectionError("Redis is down")

    client, code, f = _code(app, person, rp)
    monkeypatch.setattr(tokens, "store_access_token", redis_down)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        down = redeem(client, rp, code, f)
    assert down.status_code == 503
    ids = {r.request_id for r in caplog.records if r.name in ("idp.errors", "idp.access")}
    assert ids == {down.headers["X-Request-Id"]} and len(down.headers["X-Request-Id"]) == 16


def test_behind_a_tls_proxy_the_layer_sees_the_clients_scheme_and_address_and_writes_the_audit_hook(
        tmp_path: Any, clock: Any, mailbox: Any, monkeypatch: Any) -> None:
    """``proxy_hops=1`` (the documented production shape): ProxyFix runs before every layer, so Authlib sees an
    https request (no InsecureTransportError, a 500) and the client's address is the forwarded one; an audit
    event recorded during a refused grant is written as Flask's after-request hook writes it, with that address."""
    from sqlalchemy import text

    from idp import audit, create_app
    from idp.extensions import db
    from idp.oidc import tokens
    from tests.conftest import base_config

    app = create_app(base_config(clock, mailbox, issuer="https://idp.example.fr", proxy_hops=1, redis_url="memory://",
                                 dev_allow_remote_issuer=True,
                                 database_url=f"sqlite:///{tmp_path}/proxied.db"))
    with app.app_context():
        db.create_all()
    rp = make_rp(app)
    refused = tokens.reused_family

    def recording(*args: Any, **kwargs: Any) -> Any:
        audit.record_in_request("probe.refused_refresh", client_id=rp.client_id)
        return refused(*args, **kwargs)

    monkeypatch.setattr(tokens, "reused_family", recording)

    def answer() -> Any:
        return app.test_client().post(TOKEN_PATH, base_url="http://idp.example.fr",
                                      data={"grant_type": "refresh_token", "refresh_token": "x" * 43},
                                      auth=(rp.client_id, rp.secret),
                                      headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9",
                                               "X-Request-Id": REQUEST_ID})

    with flask_only(app):
        expected = _exact(answer())
    answered = _exact(answer())
    assert answered == expected and answered[0] == 400 and json.loads(answered[2])["error"] == "invalid_grant"
    assert dict(answered[1])["Strict-Transport-Security"].startswith("max-age=")
    with app.app_context():
        ips = db.session.execute(text("SELECT ip FROM audit_events WHERE event = 'probe.refused_refresh'")).scalars()
        assert list(ips) == ["203.0.113.9", "203.0.113.9"]
