"""The authorization endpoint's decisions (RFC 6749 §4.1.1, OIDC Core §3.1.2), as a list of checks.

The view gives plain values (the request parameters, the browser session); this module decides:
French error page (unknown client, unregistered redirect URI: never redirect), error redirect,
a new login (with the reasons; ``consent`` alone: only the consent page, within the existing session),
or an authorization response for the existing session. It does
not touch the Flask request.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError, UnsupportedResponseTypeError
from authlib.oidc.core.errors import LoginRequiredError, RequestNotSupportedError, RequestURINotSupportedError
from joserfc import jwt
from joserfc.errors import JoseError

from idp.clock import timestamp
from idp.crypto import lookup_hmac
from idp.errors import BadRequest
from idp.extensions import clock, settings
from idp.login import assurance
from idp.login.assurance import Requirement
from idp.login.sessions import BrowserSession
from idp.oidc import claims, keys
from idp.oidc.clients import get_client
from idp.oidc.models import Client
from idp.oidc.server import current_server
from idp.oidc.tokens import EndUser

# Parameters kept with the interaction; everything else is ignored (Core §3.1.2.1: unknown ones).
REQUEST_PARAMS = ("response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge",
                  "code_challenge_method", "prompt", "max_age", "acr_values", "claims", "login_hint",
                  "id_token_hint", "ui_locales", "display", "response_mode", "claims_locales")
UNMET = "unmet_authentication_requirements"  # OpenID Connect Unmet Authentication Requirements 1.0


class UnknownClientPage(BadRequest):
    """Unknown client or redirect URI not registered: a French page, never a redirect (RFC 6749 §4.1.2.1)."""

    code = "invalid_request"
    title = "Demande de connexion invalide"
    description = ("Le service qui vous a dirigé vers cette page n'est pas reconnu, ou son adresse de retour "
                   "n'est pas enregistrée. Par sécurité, la connexion ne peut pas continuer. Retournez sur le "
                   "site du service et recommencez.")


class UnmetAuthenticationRequirements(OAuth2Error):
    """The achieved (or any reachable) acr is below what the client required (OpenID Connect Unmet
    Authentication Requirements 1.0): redirected with ``state`` and ``iss``."""

    error = UNMET
    description = "The authentication level is lower than requested."


@dataclass(kw_only=True)
class Decision:
    """What /authorize does next."""

    client: Client
    params: dict[str, str]
    requirement: Requirement
    reasons: list[str] = field(default_factory=list)  # non-empty: a new login is needed
    end_user: EndUser | None = None  # set: answer now with the existing session


def request_params(values: dict[str, str]) -> dict[str, str]:
    """The authorization parameters we keep (first value of each)."""
    return {k: str(values[k]) for k in REQUEST_PARAMS if values.get(k) not in (None, "")}


def check_client(params: dict[str, str]) -> Client:
    """Client and redirect URI must be registered (exact match) before anything is redirected."""
    client = get_client(params.get("client_id"))
    if client is None or not params.get("redirect_uri") or not client.check_redirect_uri(params["redirect_uri"]):
        raise UnknownClientPage(detail="unknown client or unregistered redirect_uri")
    return client


def parse_claims(params: dict[str, str], redirect_uri: str) -> dict[str, Any]:
    """The ``claims`` parameter (Core §5.5) as a dict: a JSON object whose ``userinfo`` and ``id_token``
    members are objects of claim requests (null or an object each); anything else is invalid_request
    (nesting too deep for the parser included)."""
    raw = params.get("claims")
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        parsed = None
    if not _claims_shape_ok(parsed):
        raise InvalidRequestError("Invalid 'claims' parameter.", redirect_uri=redirect_uri, state=params.get("state"))
    return parsed


def _claims_shape_ok(parsed: Any) -> bool:
    if not isinstance(parsed, dict):
        return False
    for member in ("userinfo", "id_token"):
        requests = parsed.get(member, {})
        if not isinstance(requests, dict) or not all(map(_claim_request_ok, requests.values())):
            return False
    return True


def _claim_request_ok(request: Any) -> bool:
    """Core §5.5.1: null, or an object with optional ``essential`` (boolean), ``value`` (one value) and
    ``values`` (an array)."""
    if request is None:
        return True
    return isinstance(request, dict) and isinstance(request.get("essential", False), bool) and \
        isinstance(request.get("values", []), list) and not isinstance(request.get("value"), list | dict)


def hint_subject(params: dict[str, str], redirect_uri: str) -> str | None:
    """``sub`` of a valid id_token_hint we issued (an expired one is accepted, Core §3.1.2.1)."""
    hint = params.get("id_token_hint")
    if not hint:
        return None
    try:
        token = jwt.decode(hint, keys.public_keyset())
    except (JoseError, ValueError, TypeError, KeyError):
        token = None
    if token is None or token.claims.get("iss") != settings().issuer or token.claims.get("aud") not in (
            params.get("client_id"), [params.get("client_id")]):
        raise InvalidRequestError("Invalid 'id_token_hint'.", redirect_uri=redirect_uri, state=params.get("state"))
    return str(token.claims.get("sub"))


def decide(values: dict[str, str], session: BrowserSession | None) -> Decision:
    """The authorization endpoint as a table of checks (anchor: node-oidc-provider
    ``lib/actions/authorization/index.js``)."""
    params = request_params(values)
    client = check_client(params)
    redirect_uri, state = params["redirect_uri"], params.get("state")
    if "request" in values:
        raise RequestNotSupportedError(redirect_uri=redirect_uri, state=state)
    if "request_uri" in values:
        raise RequestURINotSupportedError(redirect_uri=redirect_uri, state=state)
    if "response_type" not in params:
        raise InvalidRequestError("Missing 'response_type' parameter.", redirect_uri=redirect_uri, state=state)
    if params["response_type"] != "code":
        # Checked here with a fixed description: Authlib's own error quotes the value, and refuses to build
        # an error whose description holds a quote (a ValueError, i.e. a 500).
        raise UnsupportedResponseTypeError("Only response_type=code is supported.", redirect_uri=redirect_uri,
                                           state=state)
    if "none" in params.get("prompt", "").split() and len(params["prompt"].split()) > 1:
        # Core §3.1.2.1: none with any other value (consent included) is an error, whatever the session.
        raise InvalidRequestError("Invalid 'prompt' parameter.", redirect_uri=redirect_uri, state=state)
    claims_request = parse_claims(params, redirect_uri)
    requirement = assurance.requirement(client_kind=client.kind, client_requires_code=client.require_email_code,
                                        acr_values=params.get("acr_values"), claims_request=claims_request)
    if requirement.binding and not assurance.reachable(requirement.acr):
        # No login here can reach it: say so now rather than after a login that cannot be enough.
        raise UnmetAuthenticationRequirements(redirect_uri=redirect_uri, state=state)
    decision = Decision(client=client, params=params, requirement=requirement)
    decision.reasons = login_reasons(params, session, client, requirement, redirect_uri)
    if session is not None and not decision.reasons:
        decision.end_user = end_user_from_session(session, claims_request)
    elif "none" in params.get("prompt", "").split():
        raise LoginRequiredError(redirect_uri=redirect_uri, state=state)
    # Authlib's own checks (response_type, scope, PKCE, prompt) before anyone is asked to log in.
    current_server().get_consent_grant(request=params, end_user=decision.end_user)
    return decision


def login_reasons(params: dict[str, str], session: BrowserSession | None, client: Client,
                  requirement: Requirement, redirect_uri: str) -> list[str]:
    """Why the existing session cannot answer this request (empty: it can). A session yields at most the
    level it proved, and only to clients whose rule it meets (``assurance``)."""
    reasons = []
    if session is None:
        reasons.append("login_required")
    if "login" in params.get("prompt", "").split():
        reasons.append("prompt_login")
    max_age = _max_age(params, redirect_uri)
    if session is not None and max_age is not None and (
            max_age == 0 or timestamp(clock().now()) - session.auth_time > max_age):
        reasons.append("max_age")
    if session is not None and assurance.a_new_login_may_raise(requirement, session.acr):
        reasons.append("acr_values")
    if session is not None and not assurance.second_factor_satisfied(requirement, session.proof):
        # A mobile (password only, or biometrics in place of the password) or federation-without-code login
        # must not give web clients SSO without the password and a second factor: the login policy asks for
        # them in a new interaction.
        reasons.append("second_factor")
    if session is not None and not reasons and session_cut_off(session):
        # The session was kept by a password change on "Sécurité de mon compte" (or opened by a login that
        # finished while the account was being disabled): a code from it would be refused at the token
        # endpoint (its authentication predates the account's cut-off), so a new login is asked.
        reasons.append("password_changed")
    hinted = hint_subject(params, redirect_uri)
    if session is not None and hinted is not None and hinted != claims.subject(client, session.account_id):
        reasons.append("id_token_hint")
    if session is not None and "consent" in params.get("prompt", "").split():
        reasons.append("consent")  # alone: the session stays, only the consent page is shown (consent_only)
    return reasons


def session_cut_off(session: BrowserSession) -> bool:
    """True when the session must not answer: its account is gone or disabled, or its authentication is older
    than the account's cut-off (``grants_not_before``: a password change, a disabling)."""
    from idp.accounts.service import get_account
    from idp.oidc.tokens import predates_cutoff

    account = get_account(session.account_id)
    return account is None or not account.is_active or predates_cutoff(session.auth_time, account.grants_cutoff)


def consent_only(decision: Decision) -> bool:
    """The live session answers this request once the person consents (prompt=consent, nothing else missing)."""
    return decision.reasons == ["consent"]


def _max_age(params: dict[str, str], redirect_uri: str) -> int | None:
    raw = params.get("max_age")
    if raw is None:
        return None
    if not re.fullmatch(r"[0-9]{1,10}", raw):  # ASCII digits only ("²".isdigit() is True), bounded
        raise InvalidRequestError("Invalid 'max_age' parameter.", redirect_uri=redirect_uri, state=params.get("state"))
    return int(raw)


def session_sid(session_id: str) -> str:
    """The ``sid`` claim: a keyed hash of the session id (the cookie value never leaves the browser)."""
    return lookup_hmac(session_id, purpose="sid")[:32]


def end_user_from_session(session: BrowserSession, claims_request: dict[str, Any]) -> EndUser:
    """The authenticated person of a browser session."""
    return EndUser(account_id=session.account_id, auth_time=session.auth_time, acr=session.acr,
                   amr=list(session.amr), sid=session_sid(session.id), claims=claims_request)
