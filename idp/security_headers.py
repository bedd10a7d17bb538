"""Strict security headers on every response (DESIGN.md §5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask, Response

    from idp.settings import Settings

# No inline script or style: the pages use only files under /static. form-action is left out on
# purpose: Chromium applies it to the redirect that follows a form POST, which would block the
# 303 back to a relying party's redirect_uri.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


_ALWAYS = (("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY"), ("X-Content-Type-Options", "nosniff"),
           ("Referrer-Policy", "no-referrer"), ("Cross-Origin-Opener-Policy", "same-origin"),
           ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), publickey-credentials-get=(self), "
                                  "publickey-credentials-create=(self)"))
_HSTS = ("Strict-Transport-Security", "max-age=63072000; includeSubDomains")


def fixed_headers(settings: Settings) -> tuple[tuple[str, str], ...]:
    """The headers every response carries, in order (HSTS when the cookies are secure, i.e. over HTTPS)."""
    return (*_ALWAYS, _HSTS) if settings.secure_cookies else _ALWAYS


def init_security_headers(app: Flask, settings: Settings) -> None:
    """Install the after-request hook that sets CSP, framing, referrer and transport headers.

    The list is made once; each response is scanned once for the names it already set (a view may
    set its own CSP or Cache-Control), instead of one scan per header."""
    fixed = [(name.lower(), name, value) for name, value in fixed_headers(settings)]

    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        present = set()
        content_type = ""
        for name, value in headers.items():
            lowered = name.lower()
            present.add(lowered)
            if lowered == "content-type":
                content_type = value
        missing = [(name, value) for lowered, name, value in fixed if lowered not in present]
        # response.mimetype, without parsing the parameters each time
        if "cache-control" not in present and content_type.split(";", 1)[0].strip().lower() == "text/html":
            missing.append(("Cache-Control", "no-store"))
        if missing:
            headers.extend(missing)
        return response
