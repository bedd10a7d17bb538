"""HTTP views of the provider: thin wrappers around :mod:`idp.oidc.authorize`, the Authlib server
and the session store.

Blueprints: ``oidc`` (pages people's browsers reach: /authorize, /authorize/resume, /logout) and
``oidc_api`` (JSON for RPs: discovery, JWKS, token, userinfo, revocation, introspection), which
:func:`idp.errors.wants_json` answers in JSON and which is CSRF-exempt.
"""

from __future__ import annotations

import logging
from typing import Any

from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import AccessDeniedError
from flask import Blueprint, Request, Response, g, jsonify, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, validate_csrf
from werkzeug.routing import BuildError
from wtforms import ValidationError

from idp import metrics
from idp.errors import BadRequest, is_dependency_failure
from idp.extensions import db, reads_without_transaction, settings
from idp.login import assurance, cookies
from idp.login.interaction import Consent, Interaction, InteractionExpired, Step, interactions
from idp.login.sessions import BrowserSession, sessions
from idp.oidc import authorize as authz
from idp.oidc import claims, discovery, keys, token_wsgi, tokens, userinfo_wsgi
from idp.oidc.clients import get_client
from idp.oidc.server import add_issuer, current_server
from idp.oidc.tokens import EndUser
from idp.rfi_adapter import IdentityNotFound, RegistryUnavailable

log = logging.getLogger(__name__)

oidc_bp = Blueprint("oidc", __name__)
api_bp = Blueprint("oidc_api", __name__)


class LogoutRequestInvalid(BadRequest):
    """A logout request we cannot trust (bad id_token_hint, client mismatch): no redirect."""

    title = "Déconnexion impossible"
    description = ("La demande de déconnexion est invalide. Par sécurité, vous n'êtes pas redirigé vers le "
                   "service. Fermez votre navigateur pour terminer votre session.")


# --- helpers ---------------------------------------------------------------------------------
def _browser_session() -> BrowserSession | None:
    return sessions.get(cookies.read(cookies.SESSION))


def _login_url() -> str:
    """The login page of the login area; /connexion when its blueprint is not registered (yet)."""
    try:
        return url_for("login.start")
    except BuildError:
        return "/connexion"


def _error_response(error: OAuth2Error) -> ResponseReturnValue:
    """Redirect errors (with iss, RFC 9207) when the redirect URI is trusted; a French page otherwise."""
    if error.redirect_uri:
        return add_issuer(current_server().handle_error_response(None, error))
    raise BadRequest(detail=f"authorization request refused: {error.error}")


def _issue(params: dict[str, str], end_user: EndUser, session: BrowserSession) -> Any:
    """Authlib validates the request again and answers with the code (and iss)."""
    server = current_server()
    grant = server.get_consent_grant(request=params, end_user=end_user)
    response = server.create_authorization_response(request=grant.request, grant_user=end_user, grant=grant)
    sessions.add_client(session, params["client_id"])
    return response


# --- authorization endpoint ------------------------------------------------------------------
@oidc_bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> ResponseReturnValue:
    """RFC 6749 §4.1.1 / OIDC Core §3.1.2.1: answer from the session or start a login interaction."""
    session = _browser_session()
    try:
        decision = authz.decide(request.values.to_dict(flat=True), session)
        if decision.end_user is not None and session is not None:
            return _issue(decision.params, decision.end_user, session)
    except OAuth2Error as error:
        return _error_response(error)
    started = interactions.create(client_id=decision.client.client_id, request=decision.params,
                                  requirement=decision.requirement, reasons=decision.reasons)
    if session is not None and authz.consent_only(decision):
        # Only consent is missing: the session's authentication stands (the policy goes straight to the
        # consent page) and /authorize/resume answers from this very session. Nothing is proven in this
        # interaction: it can activate no credential and count no login.
        started.account_id, started.sso_sid = session.account_id, authz.session_sid(session.id)
        interactions.save(started)
    response = redirect(_login_url(), 303)
    cookies.set_interaction(response, started)
    return response


@oidc_bp.get("/authorize/resume")
def resume() -> ResponseReturnValue:
    """The login finished: answer the RP (:func:`answer_login`) for the browser's interaction."""
    pending = cookies.current_interaction()
    if pending is None:
        raise InteractionExpired(detail="no interaction")
    return answer_login(pending)


def answer_login(pending: Interaction) -> ResponseReturnValue:
    """Consume the finished interaction, open a NEW browser session, answer the RP.

    Called by /authorize/resume and, sparing the browser that hop, by the login step that finishes the
    login (its POST answers with the redirect to the RP). Consuming is atomic and single use, so a
    parallel resume of the same interaction gets the "expired" page, never a second code.
    Consent refused: the RP gets access_denied, no session is opened. Consent given within a live session
    (prompt=consent alone): that session answers, its amr, acr and auth_time unchanged."""
    if pending.consent is Consent.REFUSED:
        return _refused(pending)
    if pending.step is not Step.DONE or not pending.account_id:
        return redirect(_login_url(), 303)
    finished = interactions.consume(pending.id)
    client = get_client(pending.client_id)
    if finished is None or client is None or finished.account_id is None:
        raise InteractionExpired(detail="interaction consumed concurrently, account changed or client gone")
    if finished.step is not Step.DONE or finished.consent is Consent.REFUSED or finished.account_id != pending.account_id:
        # What was consumed is the stored record: a parallel save of this id (a refusal, a step) decides.
        raise InteractionExpired(detail="the stored interaction is not the finished login")
    old = _browser_session()
    if finished.from_session:
        if old is None or authz.session_sid(old.id) != finished.sso_sid or old.account_id != finished.account_id:
            raise InteractionExpired(detail="the session the consent was asked in is gone")
        session = old
        end_user = authz.end_user_from_session(old, authz.parse_claims(finished.request,
                                                                       finished.request["redirect_uri"]))
    else:
        if old is not None:
            sessions.end(old)
        session, end_user = _open_session(finished)
    try:
        if assurance.acr_too_low(finished.requirement, end_user.acr):
            raise authz.UnmetAuthenticationRequirements(redirect_uri=finished.request["redirect_uri"],
                                                        state=finished.request.get("state"))
        response = _issue(finished.request, end_user, session)
    except OAuth2Error as error:
        response = _error_response(error)
    response = make_response(response)
    cookies.set_session(response, session.id)
    cookies.clear_interaction(response)
    return response


@oidc_bp.post("/authorize/abandon")
def abandon() -> ResponseReturnValue:
    """"Revenir à FranceConnect" on the login page of a FranceConnect login: the person leaves this login
    (to choose another identity provider); FranceConnect gets access_denied with its state and shows its
    choice of providers again. CSRF-checked like every form of this blueprint."""
    pending = cookies.current_interaction()
    if pending is None:
        raise InteractionExpired(detail="no interaction")
    return _refused(pending)


def _refused(pending: Interaction) -> ResponseReturnValue:
    """"Refuser" on the consent page, or the login abandoned: end the interaction, access_denied to the RP
    (Core §3.1.2.6)."""
    finished = interactions.consume(pending.id)
    if finished is None:
        raise InteractionExpired(detail="interaction consumed concurrently")
    error = AccessDeniedError(redirect_uri=finished.request["redirect_uri"], state=finished.request.get("state"))
    response = make_response(_error_response(error))
    cookies.clear_interaction(response)
    return response


def _open_session(finished: Interaction) -> tuple[BrowserSession, EndUser]:
    from idp.webauthn.service import describe_device

    assert finished.account_id is not None
    session = sessions.create(account_id=finished.account_id, proof=finished.proof,
                              device=describe_device(request.user_agent.string or ""))
    claims_request = authz.parse_claims(finished.request, finished.request["redirect_uri"])
    return session, authz.end_user_from_session(session, claims_request)


# --- logout ----------------------------------------------------------------------------------
@oidc_bp.route("/logout", methods=["GET", "POST"])
def logout() -> ResponseReturnValue:
    """OIDC RP-Initiated Logout: redirect only with a valid hint and a registered URI (+ state)."""
    confirmed = request.method == "POST" and request.form.get("confirm") == "1"
    if confirmed:
        try:
            validate_csrf(request.form.get("csrf_token"))
        except (CSRFError, ValidationError):
            raise BadRequest(detail="logout confirmation without a valid CSRF token") from None
    server = current_server()
    try:
        validated = server.validate_endpoint_request("end_session")
    except OAuth2Error:
        raise LogoutRequestInvalid(detail="invalid end_session request") from None
    session = _browser_session()
    if not confirmed and (validated.needs_confirmation or not _hint_matches_session(validated, session)):
        # No hint, or a hint that is not about this browser's session (any ID token we issued, the
        # attacker's own included, could otherwise log anyone out cross-site): ask, with CSRF.
        kept = {k: v for k, v in request.values.items() if k in ("client_id", "post_logout_redirect_uri", "state")}
        return render_template("oidc/logout_confirm.html", params=kept, client=validated.client)
    g.oidc_browser_session = session
    response = server.create_endpoint_response("end_session", validated)
    if response is None:
        response = redirect(url_for("oidc.logged_out"), 303) if request.method == "POST" else \
            make_response(render_template("oidc/logged_out.html"))
    elif request.method == "POST":
        response.status_code = 303
    cookies.clear_session(response)
    return response


def _hint_matches_session(validated: Any, session: BrowserSession | None) -> bool:
    """The id_token_hint names this browser's session (its ``sid``) or its person (``sub`` for the
    hint's client); True when there is no session to end."""
    hint = validated.id_token_claims or {}
    if session is None:
        return True
    if hint.get("sid") and hint["sid"] == authz.session_sid(session.id):
        return True
    client = validated.client
    return client is not None and hint.get("sub") == claims.subject(client, session.account_id)


@oidc_bp.get("/logout/termine")
def logged_out() -> ResponseReturnValue:
    """The French "Vous êtes déconnecté" page."""
    return render_template("oidc/logged_out.html")


# --- API -------------------------------------------------------------------------------------
def _no_store(response: Any) -> Any:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@api_bp.before_request
def _refuse_malformed_authorization() -> ResponseReturnValue | None:
    """A lone scheme (``Authorization: Basic``) is a malformed request (RFC 6749 §5.2, RFC 6750 §3.1).

    Authlib splits the header as "<scheme> <credentials>" and raises on a lone scheme, which would be
    a 500: refuse it here, before any client authentication."""
    value = request.headers.get("Authorization")
    if value is None or len(value.split(None, 1)) == 2:
        return None
    response = jsonify(error="invalid_request", error_description="Malformed Authorization header.")
    response.status_code = 400
    return _no_store(response)


@api_bp.get("/.well-known/openid-configuration")
def openid_configuration() -> ResponseReturnValue:
    """OIDC Discovery 1.0 §3 metadata."""
    return _public_json(discovery.metadata_bytes())


@api_bp.get("/jwks")
def jwks() -> ResponseReturnValue:
    """The published signing keys (next, current, recently retired)."""
    return _public_json(keys.public_jwks_bytes())


def _public_json(body: bytes) -> Response:
    """A cacheable public JSON document whose bytes were made once (discovery, JWKS)."""
    return Response(body, mimetype="application/json", headers={"Cache-Control": "public, max-age=300"})


@api_bp.post("/token")
def token() -> ResponseReturnValue:
    """RFC 6749 §3.2, through Flask: what :func:`token_answer` answers (its common case is answered in front
    of Flask by :mod:`idp.oidc.token_wsgi`, which hands a failure it met to this route to be raised once)."""
    met = token_wsgi.failure(request.environ)
    if met is not None:
        raise met
    return token_answer(request)


@metrics.token_grant
def token_answer(req: Request) -> Response:
    """RFC 6749 §3.2: code and refresh_token grants, for the request ``req`` (Flask's, or the one of the request
    context the WSGI layer pushes without dispatching it).

    One commit (refresh rotation claim + successor, or the code's new family) once Authlib built the whole
    response, ID token included: if that fails, the old refresh token stays usable and the client's retry
    is not taken for a reuse. A refusal rolls back what the grant left pending."""
    # Signing keys exist before the grant starts (first use on a fresh install commits them): the commit
    # below must carry this request's rotation alone.
    keys.signing_key(settings().signing_alg)
    try:
        response: Response = current_server().create_token_response(FlaskOAuth2Request(req))
        if response.status_code != 200:
            db.session.rollback()
            _withdraw_undelivered(give_back_code=False)
            return _no_store(response)
        db.session.commit()
    except IdentityNotFound:
        # The registry no longer knows the person (RFC 6749 §5.2): the grant is dead, the code is not given back.
        db.session.rollback()
        _withdraw_undelivered(give_back_code=False)
        return _oauth_error(400, "invalid_grant", "The end-user is no longer known to the identity registry.")
    except Exception as exc:
        # An outage (database, Redis, registry) stopped the exchange: the RP receives a 503 and nothing
        # else, so what was prepared is withdrawn and a taken code is given back for the RP's retry, only
        # then: a code whose exchange failed for any other reason would fail the same way on every retry.
        db.session.rollback()
        _withdraw_undelivered(give_back_code=isinstance(exc, RegistryUnavailable) or is_dependency_failure(exc))
        raise
    return _no_store(response)


def _oauth_error(status: int, error: str, description: str, *, bearer: bool = False) -> Response:
    """An RFC 6749 §5.2 / RFC 6750 §3.1 error answer (JSON, no-store; ``bearer``: WWW-Authenticate too)."""
    response = jsonify(error=error, error_description=description)
    response.status_code = status
    if bearer:
        response.headers["WWW-Authenticate"] = f'Bearer error="{error}", error_description="{description}"'
    return _no_store(response)


def _withdraw_undelivered(*, give_back_code: bool) -> None:
    """Undo what a failed token request prepared in Redis (best effort: Redis itself may be the outage)."""
    try:
        access_token = g.pop("oidc_issued_access", None)
        if access_token:
            tokens.forget_access_token(access_token)
        taken = g.pop("oidc_taken_code", None)
        if give_back_code and taken is not None:
            tokens.give_back_code(*taken)
    except Exception:  # never hide the original failure behind a second one
        log.warning("could not withdraw an undelivered token response", exc_info=True)


@api_bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> ResponseReturnValue:
    """OIDC Core §5.3 (Bearer header or form body). A person the registry no longer knows: the token is
    worth nothing any more (RFC 6750 §3.1 ``invalid_token``), never a 500."""
    try:
        met = userinfo_wsgi.failure(request.environ)
        if met is not None:  # already met in front of Flask: answered here, not met a second time
            raise met
        reads_without_transaction()
        response = current_server().create_endpoint_response("userinfo")
    except IdentityNotFound:
        return _oauth_error(401, "invalid_token", "The end-user is no longer known to the identity registry.",
                            bearer=True)
    except claims.AccountNotUsable:  # disabled, deleted, or cut off since the token's login
        return _oauth_error(401, "invalid_token", "The access token is no longer valid for this end-user.",
                            bearer=True)
    if response.status_code == 403 and "WWW-Authenticate" not in response.headers:
        # RFC 6750 §3: a token without ``openid`` gets the challenge too (Authlib's 403 has none).
        response.headers["WWW-Authenticate"] = 'Bearer error="insufficient_scope", scope="openid"'
    return _no_store(response)


@api_bp.post("/revoke")
def revoke() -> ResponseReturnValue:
    """RFC 7009."""
    return _no_store(current_server().create_endpoint_response("revocation"))


@api_bp.post("/introspect")
def introspect() -> ResponseReturnValue:
    """RFC 7662."""
    return _no_store(current_server().create_endpoint_response("introspection"))
