"""Discovery and JWKS answered in front of Flask (a WSGI layer installed by :func:`idp.create_app`).

Both documents are bytes made once (:func:`idp.oidc.discovery.metadata_bytes`,
:func:`idp.oidc.keys.public_jwks_bytes`); through Flask each request would still pay a request
context, the session, URL matching and every after-request hook, several times the cost of the answer.
This layer answers ``GET`` and ``HEAD`` of exactly ``/.well-known/openid-configuration`` and ``/jwks``
with the same status, body and headers as the Flask routes (Cache-Control, Content-Type, Content-Length,
X-Request-Id, the security headers of :mod:`idp.security_headers`, in the same order); anything else
(another method or path, an ``Authorization`` header, which the API blueprint may refuse, a
``SERVER_NAME``/``TRUSTED_HOSTS`` configuration, a failure while reading the keys) goes to Flask
unchanged, which then answers as it always did (errors included).

The JWKS is the bytes :func:`~idp.oidc.keys.public_jwks_bytes` gives, from this worker's key records while
they are fresh (:func:`~idp.oidc.keys.cached_public_jwks_bytes`, with the app's clock for retirements) and
read again in an application context otherwise, so a rotation or a retirement shows exactly as fast as
through Flask. The discovery bytes are
the application's own (its settings).

Observability: each answer is timed in ``idp_http_request_duration_seconds`` under the same labels the
Flask route would get (route pattern, method, status); it is not written to the access log (README,
"Logs and metrics").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from idp import metrics
from idp.observability import request_id
from idp.security_headers import fixed_headers

if TYPE_CHECKING:
    from flask import Flask

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/jwks"
CACHE_CONTROL = "public, max-age=300"  # the same as idp.oidc.views._public_json

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class FastPathLayer:
    """A WSGI layer in front of Flask that answers some requests itself and passes the rest to ``wrapped``,
    with the application's fixed security headers at hand (the same, in the same order, as Flask's)."""

    def __init__(self, app: Flask, wrapped: WsgiApp) -> None:
        self.app = app
        self.wrapped = wrapped
        self.security = fixed_headers(app.extensions["idp.settings"])


class MetadataFastPath(FastPathLayer):
    """WSGI middleware: the two public metadata documents from memory, everything else to ``wrapped``."""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer the metadata documents, or pass the request on."""
        method = environ.get("REQUEST_METHOD")
        path = environ.get("PATH_INFO")
        if (method != "GET" and method != "HEAD") or (path != DISCOVERY_PATH and path != JWKS_PATH) \
                or "HTTP_AUTHORIZATION" in environ or not routable(self.app):
            return self.wrapped(environ, start_response)
        started = time.perf_counter()
        try:
            body = self._discovery() if path == DISCOVERY_PATH else self._jwks()
        except Exception:  # Flask answers the failure as it always did (503 JSON, logged)
            return self.wrapped(environ, start_response)
        start_response("200 OK", [("Cache-Control", CACHE_CONTROL), ("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body))),
                                  ("X-Request-Id", request_id(environ.get("HTTP_X_REQUEST_ID"))), *self.security])
        metrics.request_timer(path, method, "200").observe(time.perf_counter() - started)
        return [body] if method == "GET" else []

    def _discovery(self) -> bytes:
        found = self.app.extensions.get("idp.discovery_bytes")
        if found is None:
            from idp.oidc import discovery

            with self.app.app_context():
                found = discovery.metadata_bytes()
        return bytes(found)

    def _jwks(self) -> bytes:
        from idp.oidc import keys

        found = keys.cached_public_jwks_bytes(self.app)  # no application context while the keys are fresh
        if found is not None:
            return found
        with self.app.app_context():
            return keys.public_jwks_bytes()


def routable(app: Flask) -> bool:
    """Flask would match a path for any host (no host matching configured), so a layer in front of it
    may answer by path alone."""
    config = app.config
    return not config.get("SERVER_NAME") and not config.get("TRUSTED_HOSTS") and not app.url_map.host_matching


def install(app: Flask) -> None:
    """Put the fast path in front of the application's WSGI stack (inside ProxyFix, when configured)."""
    app.wsgi_app = MetadataFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
