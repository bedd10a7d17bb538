"""Optional sign-in of advisors through the organisation's staff OpenID provider (Authlib Flask client).

Configured by ``staff_oidc_metadata_url``, ``staff_oidc_client_id`` and ``staff_oidc_client_secret``; the
authorization code flow with PKCE S256, ``state`` and ``nonce`` checked by Authlib, the ID token verified
against the provider's JWKS. The role comes from the claim named by ``staff_oidc_role_claim`` (a string or
a list): the supervisor value makes a supervisor, the advisor value an advisor, anything else is refused.
The advisor record is found by e-mail (the provider's ``email`` claim, ``email_verified`` required) or
created with ``source="oidc"``; its role follows the provider at every sign-in.
"""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app
from werkzeug.wrappers import Response

from idp import audit
from idp.advisors.models import Advisor
from idp.advisors.service import find_by_email, normalise_email
from idp.errors import Forbidden
from idp.extensions import clock, db, settings


class StaffProviderRefused(Forbidden):
    """The staff provider's answer does not make this person an advisor."""

    code = "staff_oidc_refused"
    description = ("Votre compte de l'organisation ne donne pas accès à l'Espace conseiller. "
                   "Contactez votre responsable.")


def init_app(app: Flask) -> None:
    """Register the staff provider's client when it is configured."""
    s = app.extensions["idp.settings"]
    if not s.staff_oidc_metadata_url:
        return
    oauth = OAuth(app)  # one registry per application (tests build several apps in one process)
    app.extensions["idp.staff_oidc"] = oauth
    oauth.register("staff", client_id=s.staff_oidc_client_id, client_secret=s.staff_oidc_client_secret,
                    server_metadata_url=s.staff_oidc_metadata_url,
                    client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256"})


def configured() -> bool:
    """True when a staff provider is configured."""
    return bool(settings().staff_oidc_metadata_url)


def _client() -> Any:
    return current_app.extensions["idp.staff_oidc"].staff


def authorize_redirect(redirect_uri: str) -> Response:
    """Send the browser to the staff provider (state, nonce and PKCE verifier kept in the signed session)."""
    return _client().authorize_redirect(redirect_uri)


def role_of(claims: dict[str, Any]) -> str | None:
    """The console role the claims give, or None."""
    s = settings()
    value = claims.get(s.staff_oidc_role_claim)
    values = set(value) if isinstance(value, list) else {value}
    if s.staff_oidc_supervisor_role in values:
        return "supervisor"
    if s.staff_oidc_advisor_role in values:
        return "advisor"
    return None


def finish() -> Advisor:
    """Exchange the code, verify the ID token and return the advisor (created on first sign-in)."""
    from authlib.integrations.base_client.errors import OAuthError

    try:
        token = _client().authorize_access_token()
    except OAuthError as exc:
        raise StaffProviderRefused(detail=f"staff oidc: {exc.error}") from exc
    claims = dict(token.get("userinfo") or {})
    return advisor_for(claims)


def advisor_for(claims: dict[str, Any]) -> Advisor:
    """The advisor these verified claims describe; raises :class:`StaffProviderRefused`."""
    role = role_of(claims)
    email = str(claims.get("email") or "")
    if role is None or "@" not in email or claims.get("email_verified") is not True:
        audit.record("advisor.sign_in_failed", reason="staff oidc claims")
        raise StaffProviderRefused(detail="role or verified e-mail missing")
    advisor = find_by_email(email)
    if advisor is None:
        advisor = Advisor(email=normalise_email(email), role=role, source="oidc", created_at=clock().now(),
                          enrolled_at=clock().now())
        db.session.add(advisor)
    if advisor.disabled_at is not None:  # ``idp advisors disable``: the provider's word does not reopen it
        audit.record("advisor.sign_in_failed", advisor=advisor.id, reason="disabled")
        raise StaffProviderRefused(detail="advisor disabled")
    advisor.role = role
    advisor.last_sign_in_at = clock().now()
    db.session.flush()
    audit.record("advisor.signed_in", commit=False, advisor=advisor.id, method="oidc", role=role)
    db.session.commit()
    return advisor
