"""Userinfo's common case answered in front of Flask (a WSGI layer installed by :func:`idp.create_app`).

Every relying party calls userinfo after each login and many call it on every page, so its cost is
paid at the scale of token use. Through Flask and Authlib half of it is the framework: a request
context, the session machinery, URL matching, the resource protector's request wrapper, the
endpoint's dispatch, every after-request hook (measured in-process: 2.06 ms of CPU through Flask, ~1.2 ms
through this layer).

This layer answers only the common case, with what the Flask route answers for it:
``GET /userinfo`` (no query string) with ``Authorization: Bearer <token>``, where the token is live
and was granted ``openid``, and its client wants a plain JSON answer (no signed or encrypted
userinfo). The checks are the route's own, in the same functions: :func:`idp.oidc.tokens.find_access_token`
(unknown, revoked or expired tokens are not found), the ``openid`` scope Authlib's endpoint requires,
and :func:`idp.oidc.claims.userinfo_claims` for what is said. The answer has the same status, body and
headers, in the same order (the security headers of :mod:`idp.security_headers`, ``no-store``).

Anything else goes to Flask unchanged, which answers as it always did: another method or path, a query
string, another header shape (a lone scheme, Basic, a token in the form body), a token that is not
found or lacks ``openid`` (Flask's 401/403 with ``WWW-Authenticate``), a signing or encrypting client
(FranceConnect, FranceConnect+), a host-matching configuration. The route does not repeat this
layer's work: it takes the token looked up here (:func:`found_token`), and a failure met here (a person
the registry no longer knows, an outage) is raised by the route (:func:`failure`) and answered once, as
it always was, instead of being met a second time (twice the wait on a stalled Redis or registry, two
failures counted by the registry's circuit breaker).

Observability: each answer is timed in ``idp_http_request_duration_seconds`` and written to the access
log under the route's labels and pattern (``/userinfo``), as Flask would.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from idp import metrics
from idp.crypto import constant_time_equal
from idp.observability import log_access, request_id
from idp.oidc.metadata_wsgi import FastPathLayer, StartResponse, routable

if TYPE_CHECKING:
    from flask import Flask

USERINFO_PATH = "/userinfo"
FOUND = "idp.userinfo.token"  # environ: (token string, the AccessToken or None) looked up here
FAILURE = "idp.userinfo.failure"  # environ: the exception this layer met, for the route to raise
# RFC 6750 §2.1: "Bearer" 1*SP b64token; Authlib compares the scheme without case.
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] ([A-Za-z0-9\-._~+/]+=*)")


class UserinfoFastPath(FastPathLayer):
    """WSGI middleware: userinfo's common case, everything else to ``wrapped``."""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer a plain userinfo request, or pass the request on."""
        if environ.get("PATH_INFO") != USERINFO_PATH or environ.get("REQUEST_METHOD") != "GET" \
                or environ.get("QUERY_STRING") or not routable(self.app):
            return self.wrapped(environ, start_response)
        bearer = _BEARER.fullmatch(environ.get("HTTP_AUTHORIZATION", ""))
        if bearer is None:
            return self.wrapped(environ, start_response)
        started = time.perf_counter()
        try:
            body = self._answer(bearer.group(1), environ)
        except Exception as exc:  # handed to the Flask route, which raises it (one attempt only)
            environ[FAILURE] = exc
            return self.wrapped(environ, start_response)
        if body is None:
            return self.wrapped(environ, start_response)
        rid = request_id(environ.get("HTTP_X_REQUEST_ID"))
        start_response("200 OK", [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                                  ("Pragma", "no-cache"), ("Content-Length", str(len(body))), ("X-Request-Id", rid),
                                  *self.security])
        elapsed = time.perf_counter() - started
        metrics.request_timer(USERINFO_PATH, "GET", "200").observe(elapsed)
        log_access(rid, "GET", USERINFO_PATH, 200, elapsed * 1000)
        return [body]

    def _answer(self, token_string: str, environ: dict[str, Any]) -> bytes | None:
        """The JSON body Authlib's endpoint would give, or None when this is not the common case (the token
        found, or not, is left in ``environ`` for the route, which then does not look it up again)."""
        from idp.oidc import claims, tokens
        from idp.oidc.clients import get_client

        with self.app.app_context():  # the database session is removed when it ends
            token = tokens.find_access_token(token_string)
            environ[FOUND] = (token_string, token)
            if token is None or "openid" not in token.get_scope().split():
                return None
            # No transaction: the account is read in autocommit (idp.driver_sql.first_without_transaction);
            # a client this worker has not cached is read in one the teardown rolls back.
            client = get_client(token.client_id)
            if client is None or client.userinfo_signed_response_alg or client.userinfo_encrypted_response_alg:
                return None
            # the app's JSON provider, as Authlib's Flask integration encodes it (sorted keys)
            return self.app.json.dumps(claims.userinfo_claims(client, token.get_user(), token.get_scope())).encode()


def found_token(environ: dict[str, Any], token_string: str) -> tuple[bool, Any]:
    """(True, the access token or None) when this layer already looked ``token_string`` up for this
    request; (False, None) otherwise. WSGI keys without the ``HTTP_`` prefix: no request header sets them."""
    found = environ.get(FOUND)
    if found is None or not constant_time_equal(found[0], token_string):
        return False, None
    return True, found[1]


def failure(environ: dict[str, Any]) -> BaseException | None:
    """What failed in this layer for this request (the route raises it: answered once, as it always was)."""
    return environ.get(FAILURE)


def install(app: Flask) -> None:
    """Put the fast path in front of the application's WSGI stack."""
    app.wsgi_app = UserinfoFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
