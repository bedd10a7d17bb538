"""The cheapest WSGI application: fixed bytes. Run under the IdP's gunicorn configuration, it gives the
per-request cost of gunicorn itself (HTTP parsing, gthread dispatch, sockets), which no endpoint of the
IdP can go below: the floor against which discovery and JWKS per CPU-second are read."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b'{"keys":[]}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY))),
           ("Cache-Control", "public, max-age=300")]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer every request with :data:`BODY`."""
    start_response("200 OK", HEADERS)
    return [BODY]
