"""RP-Initiated Logout 1.0 and Back-Channel Logout 1.0.

The end-session endpoint is Authlib's (``id_token_hint`` signature check, exact
``post_logout_redirect_uri`` match, ``state``); here it also checks that we issued the hint, ends
the browser session and tells the clients of that session that registered a
``backchannel_logout_uri``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import requests
from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Request
from authlib.oidc.rpinitiated import EndSessionEndpoint, EndSessionRequest
from joserfc import jwt
from joserfc.jwk import KeySet

from idp.clock import timestamp
from idp.crypto import new_token
from idp.extensions import clock, settings
from idp.login.sessions import BrowserSession, sessions
from idp.oidc import claims, keys
from idp.oidc.authorize import session_sid
from idp.oidc.clients import get_client
from idp.oidc.models import Client

log = logging.getLogger(__name__)
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


class IdpEndSession(EndSessionEndpoint):
    """OIDC RP-Initiated Logout §2-§4 on Authlib's endpoint."""

    def get_server_jwks(self) -> KeySet:
        """Every key we publish (an old hint signed by a retired key is still ours)."""
        return keys.public_keyset()

    def validate_request(self, request: OAuth2Request) -> EndSessionRequest:
        """Authlib's checks, plus: the hint must have been issued by us (``iss``)."""
        validated = super().validate_request(request)
        hint = validated.id_token_claims
        if hint is not None and hint.get("iss") != settings().issuer:
            raise InvalidRequestError("The id_token_hint was not issued by this provider.")
        return validated

    def end_session(self, end_session_request: EndSessionRequest) -> None:
        """End the browser session found by the view (if any) and notify its clients."""
        from flask import g

        session: BrowserSession | None = g.get("oidc_browser_session")
        if session is not None:
            end_browser_session(session)


def end_browser_session(session: BrowserSession) -> None:
    """End one browser session and send back-channel logout tokens to its clients."""
    sessions.end(session)
    for client_id in session.clients:
        client = get_client(client_id)
        if client is not None and client.backchannel_logout_uri:
            send_backchannel_logout(client, session)


def notify_ended_sessions(account_id: str, *, sessions: list[BrowserSession], **_: Any) -> None:
    """Lifecycle receiver (:data:`idp.lifecycle.sessions_ended`): a back-channel logout to each client of the
    ended sessions that registered a ``backchannel_logout_uri``, sent after the answer (the outbox's ``logout``
    threads: a slow relying party delays neither the person, the advisor, the operator nor the mails)."""
    from flask import current_app

    from idp.notify import outbox

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for session in sessions:
        for client_id in session.clients:
            try:
                client = get_client(client_id)
                if client is not None and client.backchannel_logout_uri:
                    outbox.send_later(app, functools.partial(_send_to, client_id, session), queue="logout")
            except Exception:  # best effort: the clean-up that ended the sessions goes on (the other receivers)
                log.exception("back-channel logout not scheduled", extra={"client_id": client_id})


def _send_to(client_id: str, session: BrowserSession) -> None:
    client = get_client(client_id)
    if client is not None and client.backchannel_logout_uri:
        send_backchannel_logout(client, session)


def logout_token(client: Client, session: BrowserSession) -> str:
    """Back-Channel Logout §2.4: iss, aud, iat, exp, jti, sub, sid, events; never a nonce."""
    now = timestamp(clock().now())
    payload: dict[str, Any] = {
        "iss": settings().issuer, "aud": client.client_id, "iat": now, "exp": now + 120, "jti": new_token(16),
        "sub": claims.subject(client, session.account_id), "sid": session_sid(session.id),
        "events": {BACKCHANNEL_EVENT: {}},
    }
    alg = client.id_token_signed_response_alg or settings().signing_alg
    return jwt.encode({"alg": alg, "typ": "logout+jwt"}, payload, keys.signing_keyset(alg), algorithms=[alg])


def send_backchannel_logout(client: Client, session: BrowserSession) -> bool:
    """POST the logout token (best effort: a client that does not answer does not block the logout)."""
    assert client.backchannel_logout_uri
    try:
        response = requests.post(client.backchannel_logout_uri, data={"logout_token": logout_token(client, session)},
                                 timeout=settings().backchannel_logout_timeout, allow_redirects=False)
    except requests.RequestException as exc:
        log.warning("back-channel logout failed", extra={"client_id": client.client_id, "error": type(exc).__name__})
        return False
    if response.status_code >= 300:
        log.warning("back-channel logout refused", extra={"client_id": client.client_id,
                                                           "status": response.status_code})
        return False
    return True
