"""Demonstration relying party served by the IdP itself (development only, ``idp demo``).

It lets a newcomer click through a login from ``make run`` and see the ID token's claims. It is a
public client (PKCE S256, no secret) talking to the token endpoint over HTTP with ``requests``, like
any RP would; it is not the strict RP of the end-to-end tests (node ``openid-client``).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import urlencode

import requests
from flask import Blueprint, Flask, redirect, render_template, request, session
from flask.typing import ResponseReturnValue
from joserfc import jwt

from idp.crypto import constant_time_equal, new_token
from idp.demo import DEMO_STEPS
from idp.errors import BadRequest
from idp.extensions import settings

DEMO_CLIENT_ID = "demo-rp"
demo_bp = Blueprint("demo_rp", __name__, url_prefix="/demo")


def _callback_uri() -> str:
    return f"{settings().issuer}/demo/callback"


@demo_bp.get("/")
def index() -> ResponseReturnValue:
    """The demo RP's page with its "Se connecter" button."""
    return render_template("oidc/demo_index.html")


@demo_bp.get("/connexion")
def login() -> ResponseReturnValue:
    """Start a code + PKCE login against the IdP."""
    verifier, state, nonce = new_token(48), new_token(16), new_token(16)
    session["demo_rp"] = {"verifier": verifier, "state": state, "nonce": nonce}
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urlencode({"response_type": "code", "client_id": DEMO_CLIENT_ID, "redirect_uri": _callback_uri(),
                       "scope": "openid profile email birth", "state": state, "nonce": nonce,
                       "code_challenge": challenge, "code_challenge_method": "S256"})
    return redirect(f"{settings().issuer}/authorize?{query}", 303)


@demo_bp.get("/callback")
def callback() -> ResponseReturnValue:
    """Exchange the code, check the ID token and show its claims."""
    pending: dict[str, str] = session.pop("demo_rp", None) or {}
    if not pending or not constant_time_equal(request.args.get("state", ""), pending.get("state", "")):
        raise BadRequest(detail="demo RP: state mismatch")
    if request.args.get("error"):
        return render_template("oidc/demo_result.html", error=request.args.get("error"), claims=None, userinfo=None)
    answer = requests.post(f"{settings().issuer}/token", timeout=5, data={
        "grant_type": "authorization_code", "code": request.args.get("code", ""), "redirect_uri": _callback_uri(),
        "client_id": DEMO_CLIENT_ID, "code_verifier": pending["verifier"]}).json()
    if "id_token" not in answer:
        return render_template("oidc/demo_result.html", error=answer.get("error", "?"), claims=None, userinfo=None)
    from idp.oidc.keys import public_keyset

    claims: dict[str, Any] = dict(jwt.decode(answer["id_token"], public_keyset()).claims)
    if claims.get("nonce") != pending["nonce"] or claims.get("aud") != DEMO_CLIENT_ID:
        raise BadRequest(detail="demo RP: ID token not for this login")
    userinfo = requests.get(f"{settings().issuer}/userinfo", timeout=5,
                            headers={"Authorization": f"Bearer {answer['access_token']}"}).json()
    session["demo_rp_id_token"] = answer["id_token"]
    return render_template("oidc/demo_result.html", error=None, claims=claims, userinfo=userinfo)


@demo_bp.get("/deconnexion")
def logout() -> ResponseReturnValue:
    """RP-initiated logout with the ID token as hint."""
    query = urlencode({"id_token_hint": session.pop("demo_rp_id_token", ""),
                       "post_logout_redirect_uri": f"{settings().issuer}/demo/", "state": new_token(8)})
    return redirect(f"{settings().issuer}/logout?{query}", 303)


def register_demo_client(app: Flask) -> None:
    """Demo step: the demo RP's client (public, PKCE) and the signing keys."""
    from idp.oidc.clients import create_client, get_client
    from idp.oidc.keys import ALGORITHMS, ensure_keys

    with app.app_context():
        for alg in ALGORITHMS:
            ensure_keys(alg)
        if get_client(DEMO_CLIENT_ID) is None:
            create_client(client_id=DEMO_CLIENT_ID, name="Service de démonstration", kind="web", auth_method="none",
                          redirect_uris=[_callback_uri()], post_logout_redirect_uris=[f"{settings().issuer}/demo/"],
                          subject_type="public")


if not any(name == "oidc-demo-rp" for name, _ in DEMO_STEPS):
    DEMO_STEPS.append(("oidc-demo-rp", register_demo_client))
