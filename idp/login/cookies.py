"""Every cookie of the login area, with its attributes written once.

- the interaction (``idp_interaction``): the login in progress, for ``interaction_ttl``;
- the browser session (``idp_session``): single sign-on, ended server-side;
- the remembered NIR (``idp_nir``, "Mémoriser mon numéro de sécurité sociale"): sealed with AES-GCM
  (``idp.crypto.encrypt(..., purpose="remember-nir")``) so that it shows nothing and cannot be forged;
- the trusted browser (``idp_trusted``, "J'utilise mon ordinateur personnel"): a random token whose hash
  is kept server-side (:mod:`idp.mfa.trusted_browser`).

- the advisors' console session (``idp_advisor``, :mod:`idp.advisors.sessions`): another cookie, never read
  by people's pages, for the console's absolute timeout; set here so that its attributes are these.

All are HttpOnly, SameSite=Lax, path ``/``, and ``__Host-`` prefixed and Secure when the issuer is https (the
prefix requires path ``/``; a narrower path would not isolate pages of one origin anyway, while ``__Host-``
stops a sibling sub-domain from planting or shadowing the cookie).
A value that does not open (corrupt, sealed by another deployment, oversized) is treated as absent and
cleared: stale cookies never block a login (DESIGN.md §2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import request

from idp.crypto import DecryptionError, decrypt, encrypt
from idp.extensions import settings
from idp.login.interaction import Interaction, InteractionExpired, Step, interactions
from idp.nir import InvalidNir, Nir

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

NIR_PURPOSE = "remember-nir"
NIR_MAX_LENGTH = 256  # a sealed NIR is ~60 characters; anything much longer is not ours


def name(base: str) -> str:
    """``__Host-<base>`` when cookies are Secure, else ``<base>``."""
    return f"__Host-{base}" if settings().secure_cookies else base


INTERACTION, SESSION, NIR, TRUSTED = "idp_interaction", "idp_session", "idp_nir", "idp_trusted"
ADVISOR = "idp_advisor"


def _set(response: Response, base: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(name(base), value, max_age=max_age, path="/", secure=settings().secure_cookies,
                        httponly=True, samesite="Lax")


def _clear(response: Response, base: str) -> None:
    response.delete_cookie(name(base), path="/", secure=settings().secure_cookies, httponly=True, samesite="Lax")


def read(base: str) -> str | None:
    """The raw value of a login cookie in the current request."""
    return request.cookies.get(name(base))


# --- the interaction -------------------------------------------------------------------------
def set_interaction(response: Response, interaction: Interaction) -> None:
    """Bind the browser to the interaction."""
    _set(response, INTERACTION, interaction.id, settings().interaction_ttl)


def clear_interaction(response: Response) -> None:
    """Forget the interaction cookie."""
    _clear(response, INTERACTION)


def current_interaction() -> Interaction | None:
    """The live interaction referenced by the request's cookie, or None (missing, stale, forged)."""
    return interactions.get(read(INTERACTION))


def live_interaction() -> Interaction:
    """The live, unfinished interaction of this browser; :class:`InteractionExpired` otherwise."""
    found = current_interaction()
    if found is None or found.step is Step.DONE:
        raise InteractionExpired(detail="no live interaction")
    return found


# --- the browser session ---------------------------------------------------------------------
def set_session(response: Response, session_id: str) -> None:
    """The browser-session cookie (a session cookie: the server decides when the session ends)."""
    _set(response, SESSION, session_id)


def clear_session(response: Response) -> None:
    """Forget the browser-session cookie."""
    _clear(response, SESSION)


# --- the remembered NIR ----------------------------------------------------------------------
def read_nir(raw: str | None) -> Nir | None:
    """The remembered NIR, or None for a missing, oversized, forged or foreign value."""
    if not raw or len(raw) > NIR_MAX_LENGTH:
        return None
    try:
        return Nir.parse(decrypt(raw, purpose=NIR_PURPOSE))
    except (DecryptionError, InvalidNir):
        return None


def remembered_nir() -> Nir | None:
    """The NIR remembered by this browser, if its cookie opens."""
    return read_nir(read(NIR))


def remember_nir(response: Response, nir: Nir) -> None:
    """Set the sealed NIR cookie."""
    _set(response, NIR, encrypt(nir.value, purpose=NIR_PURPOSE), settings().remember_nir_ttl)


def forget_nir(response: Response) -> None:
    """Remove the NIR cookie."""
    _clear(response, NIR)


# --- the trusted browser ---------------------------------------------------------------------
def set_trusted(response: Response, token: str) -> None:
    """Set the trusted-browser cookie for its whole life (6 months by default)."""
    _set(response, TRUSTED, token, settings().trusted_browser_ttl)


def clear_trusted(response: Response) -> None:
    """Remove the trusted-browser cookie (forged, expired, revoked or another account's)."""
    _clear(response, TRUSTED)


# --- the advisors' console -------------------------------------------------------------------
def set_advisor(response: Response, session_id: str) -> None:
    """The advisor-session cookie, for the console session's absolute life."""
    _set(response, ADVISOR, session_id, settings().advisor_session_absolute_timeout)


def clear_advisor(response: Response) -> None:
    """Forget the advisor-session cookie."""
    _clear(response, ADVISOR)
