"""A small keep-alive HTTP/1.1 client for the load generator.

``requests`` costs about a millisecond of the generator's CPU per call; the generator shares the two
cores with the servers it measures, so the cheap endpoints (JWKS, discovery, token) are driven with
``http.client`` connections kept open per virtual user instead.
"""

from __future__ import annotations

import base64
import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

# The server closed an idle keep-alive connection before reading our request: safe to send again.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, http.client.CannotSendRequest)


@dataclass
class Answer:
    """Status, headers (lower-case names) and body of a response."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class Connection:
    """One persistent connection to ``base_url`` (one per virtual user: no sharing between threads)."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, *, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> Answer:
        """Send one request; reconnects once when a reused connection turned out to be closed."""
        body = urlencode(form).encode() if form is not None else None
        sent_headers = dict(headers or {})
        if body is not None:
            sent_headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (0, 1):
            reused = self._conn is not None
            conn = self._conn or http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                conn.request(method, path, body=body, headers=sent_headers)
                response = conn.getresponse()
                data = response.read()
            except _STALE:
                conn.close()
                self._conn = None
                if attempt or not reused:
                    raise
                continue
            except Exception:
                conn.close()
                self._conn = None
                raise
            answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
            self._conn = None if answer.headers.get("connection", "").lower() == "close" else conn
            if self._conn is None:
                conn.close()
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def basic_auth(client_id: str, secret: str) -> dict[str, str]:
    """RFC 6749 §2.3.1 client_secret_basic header (form-encoded id and secret)."""
    from urllib.parse import quote

    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
