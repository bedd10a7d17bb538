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


def init_security_headers(app: Flask, settings: Settings) -> None:
    """Install the after-request hook that sets CSP, framing, referrer and transport headers."""

    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), "
                                                 "publickey-credentials-get=(self), "
                                                 "publickey-credentials-create=(self)")
        if response.mimetype == "text/html":
            headers.setdefault("Cache-Control", "no-store")
        if settings.secure_cookies:
            headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
        return response
