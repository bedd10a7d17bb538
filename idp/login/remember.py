"""The "Mémoriser mon numéro de sécurité sociale" cookie and the trusted-browser cookie.

The NIR is sealed with AES-GCM (``idp.crypto.encrypt(..., purpose="remember-nir")``) so that the
cookie shows nothing and cannot be forged; a value that does not open (corrupt, sealed by another
deployment, oversized) is treated as absent and the view clears it: stale cookies never block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from idp.crypto import DecryptionError, decrypt, encrypt
from idp.extensions import settings
from idp.mfa import trusted_browser
from idp.nir import InvalidNir, Nir

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

PURPOSE = "remember-nir"
MAX_LENGTH = 256  # a sealed NIR is ~60 characters; anything much longer is not ours


def cookie_name() -> str:
    """``__Host-idp_nir`` when cookies are Secure, else ``idp_nir``."""
    return "__Host-idp_nir" if settings().secure_cookies else "idp_nir"


def read_nir(raw: str | None) -> Nir | None:
    """The remembered NIR, or None for a missing, oversized, forged or foreign value."""
    if not raw or len(raw) > MAX_LENGTH:
        return None
    try:
        return Nir.parse(decrypt(raw, purpose=PURPOSE))
    except (DecryptionError, InvalidNir):
        return None


def remember_nir(response: Response, nir: Nir) -> None:
    """Set the sealed NIR cookie (HttpOnly, SameSite=Lax, Secure outside development)."""
    s = settings()
    response.set_cookie(cookie_name(), encrypt(nir.value, purpose=PURPOSE), max_age=s.remember_nir_ttl, path="/",
                        secure=s.secure_cookies, httponly=True, samesite="Lax")


def forget_nir(response: Response) -> None:
    """Remove the NIR cookie."""
    response.delete_cookie(cookie_name(), path="/", secure=settings().secure_cookies, httponly=True, samesite="Lax")


def set_trusted(response: Response, token: str) -> None:
    """Set the trusted-browser cookie for its whole life (6 months by default)."""
    s = settings()
    response.set_cookie(trusted_browser.cookie_name(), token, max_age=s.trusted_browser_ttl, path="/",
                        secure=s.secure_cookies, httponly=True, samesite="Lax")


def clear_trusted(response: Response) -> None:
    """Remove the trusted-browser cookie (forged, expired, revoked or another account's)."""
    response.delete_cookie(trusted_browser.cookie_name(), path="/", secure=settings().secure_cookies, httponly=True,
                           samesite="Lax")
