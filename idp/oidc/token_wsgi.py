"""The token endpoint answered in front of Flask (a WSGI layer installed by :func:`idp.create_app`).

Every relying party calls ``POST /token`` after each login and again at each refresh, so the framework's
share of it is paid at the scale of token use. Through Flask, each request also pays a request context,
the session machinery, URL matching, the blueprint's and the application's before- and after-request
hooks (timing, request id, access log, security headers, audit), which this layer does once, directly.

The answer is the Flask route's own: :func:`idp.oidc.views.token_answer`, called in a request context of
the same WSGI environment, pushed but not dispatched (``request``, ``g`` and the database session behave as
through Flask: the grants keep their state in ``g``, an audit event would carry the client's address, log
lines carry the request id, the session is removed when it ends, the body is read under the application's
``MAX_CONTENT_LENGTH``); what is skipped is URL dispatch and the before- and after-request hooks, whose work
is done here (the audit events a refused grant recorded in the request are written as the audit hook
writes them). ProxyFix, when configured, is outside this layer: it sees the client's scheme, host and address.
Its status, body and headers are those of the route, in the same order, with the
security headers of :mod:`idp.security_headers` and the ``X-Request-Id`` of :mod:`idp.observability`.
Errors of RFC 6749 §5.2 (``invalid_client``, ``invalid_grant``...) are answers like any other.

Flask answers, as it always did: another method or path, a host-matching configuration, and a malformed
``Authorization`` header (a lone scheme, refused by the API blueprint before any client authentication).
A failure met here (an outage of the database, Redis or the registry, a body too large) is handed to the
Flask route, which raises it: answered once by the application's error handlers (503
``temporarily_unavailable``, 413...), after what the grant prepared was withdrawn here, instead of the
grant being run a second time.

Observability: each answer is timed in ``idp_http_request_duration_seconds`` and written to the access log
under the route's labels and pattern (``/token``), as Flask would; the grant is counted in
``idp_token_grants_total`` by :func:`idp.metrics.token_grant`, once, on either path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from idp import audit, metrics
from idp.observability import REQUEST_ID, log_access, request_id
from idp.oidc.metadata_wsgi import FastPathLayer, StartResponse, routable

if TYPE_CHECKING:
    from flask import Flask

TOKEN_PATH = "/token"
FAILURE = "idp.token.failure"  # environ: the exception this layer met, for the route to raise


class TokenFastPath(FastPathLayer):
    """WSGI middleware: ``POST /token`` answered by the route's own function, everything else to ``wrapped``."""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer a token request, or pass the request on."""
        if environ.get("PATH_INFO") != TOKEN_PATH or environ.get("REQUEST_METHOD") != "POST" \
                or not routable(self.app) or not _well_formed_authorization(environ.get("HTTP_AUTHORIZATION")):
            return self.wrapped(environ, start_response)
        from flask import g

        from idp.oidc.views import token_answer

        started = time.perf_counter()
        rid = environ[REQUEST_ID] = request_id(environ.get("HTTP_X_REQUEST_ID"))
        try:
            with self.app.request_context(environ) as context:
                g.request_id = rid  # the log lines of the grant carry it, as through Flask
                response = audit.write_unsaved(token_answer(context.request))  # the audit hook, as through Flask
        except Exception as exc:  # handed to the Flask route, which raises it (answered once, as always)
            environ[FAILURE] = exc
            return self.wrapped(environ, start_response)
        headers = response.headers
        headers["X-Request-Id"] = rid
        headers.extend(self.security)  # the route's answers set none of them (JSON: no HTML Cache-Control rule)
        status = response.status_code
        elapsed = time.perf_counter() - started
        metrics.request_timer(TOKEN_PATH, "POST", str(status)).observe(elapsed)
        log_access(rid, "POST", TOKEN_PATH, status, elapsed * 1000)
        return response(environ, start_response)


def _well_formed_authorization(value: str | None) -> bool:
    """No header, or "<scheme> <credentials>" (the API blueprint answers a lone scheme: 400 invalid_request)."""
    return value is None or len(value.split(None, 1)) == 2


def failure(environ: dict[str, Any]) -> BaseException | None:
    """What failed in this layer for this request (the route raises it). A WSGI key without the ``HTTP_``
    prefix: no request header sets it."""
    return environ.get(FAILURE)


def install(app: Flask) -> None:
    """Put the fast path in front of the application's WSGI stack."""
    app.wsgi_app = TokenFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
