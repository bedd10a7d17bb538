"""The advisors' console ("Espace conseiller", blueprint ``advisors`` under ``/conseiller/``).

Sign-in: ``/conseiller/connexion`` (e-mail + password) then ``/conseiller/connexion/cle`` (the security key,
JSON ceremony), or ``/conseiller/connexion/organisation`` (the staff OpenID provider, when configured);
enrolment: ``/conseiller/inscription/<token>`` (password) then ``/conseiller/inscription/cle``.
Work: ``/conseiller/`` (search by NIR), ``/conseiller/dossier/<handle>`` (the account's state and the actions,
each a POST with CSRF token and reason), ``/conseiller/journal`` (supervisors: advisors' actions).

Only the advisor cookie is read here (:mod:`idp.advisors.sessions`; its attributes are set in
:mod:`idp.login.cookies` with the other login cookies); people's session cookies mean nothing
to this blueprint and the advisor cookie means nothing to people's pages. Views stay thin.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Blueprint, g, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from idp.accounts.service import AccountDisabled
from idp.advisors import console, service, staff_oidc
from idp.advisors import sessions as advisor_sessions
from idp.advisors.models import Advisor
from idp.advisors.sessions import AdvisorSession
from idp.errors import BadRequest, Forbidden, IdpError
from idp.extensions import settings
from idp.login import cookies
from idp.nir import InvalidNir, Nir

bp = Blueprint("advisors", __name__, url_prefix="/conseiller")


class AdvisorSignInRequired(IdpError):
    """JSON endpoints of the key step without the matching session stage."""

    code = "advisor_sign_in_required"
    status = 401
    title = "Connexion requise"
    description = "Votre connexion à l'Espace conseiller a expiré. Merci de vous reconnecter."


# --- session helpers ------------------------------------------------------------------------------
def _session() -> AdvisorSession | None:
    return advisor_sessions.get(cookies.read(cookies.ADVISOR))


def _set_cookie(response: Response, session: AdvisorSession) -> Response:
    cookies.set_advisor(response, session.id)
    return response


def _clear_cookie(response: Response) -> Response:
    cookies.clear_advisor(response)
    return response


def _staged(stage: str) -> tuple[AdvisorSession, Advisor]:
    session = _session()
    advisor = service.get(session.advisor_id) if session is not None else None
    if session is None or session.stage != stage or advisor is None or advisor.disabled_at is not None:
        raise AdvisorSignInRequired(detail=f"no advisor session at stage {stage}")
    return session, advisor


def signed_in(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """The view gets the signed-in advisor's session and record; anyone else goes to the sign-in page."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        session = _session()
        advisor = service.get(session.advisor_id) if session is not None and session.signed_in else None
        if session is None or advisor is None or advisor.disabled_at is not None:
            return _clear_cookie(redirect(url_for("advisors.sign_in"), 303))
        g.advisor = advisor
        return view(session, advisor, *args, **kwargs)

    return wrapper


def _page(template: str, status: int = 200, **context: Any) -> ResponseReturnValue:
    return render_template(f"advisors/{template}", advisor=g.get("advisor"), **context), status


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest(detail="JSON object expected")
    return body


# --- sign-in ----------------------------------------------------------------------------------------
@bp.route("/connexion", methods=["GET", "POST"])
def sign_in() -> ResponseReturnValue:
    """First factor: e-mail and password."""
    oidc = staff_oidc.configured()
    if request.method == "GET":
        return _page("sign_in.html", alert_message=None, email="", oidc=oidc)
    email = request.form.get("email", "")
    check = service.check_password(email, request.form.get("password", ""))
    if check.advisor is None:
        return _page("sign_in.html", 200, alert_message=check.message, email=email[:254], oidc=oidc)
    response = redirect(url_for("advisors.key"), 303)
    return _set_cookie(response, advisor_sessions.start(check.advisor.id, "password"))


def _key_page(stage: str, mode: str, endpoint: str) -> ResponseReturnValue:
    """The security-key page of a stage (``mode``: "get" signs in, "create" registers)."""
    session = _session()
    if session is None or session.stage != stage:
        return redirect(url_for("advisors.sign_in"), 303)
    return _page("key.html", mode=mode, options_url=url_for(f"{endpoint}_options"),
                 verify_url=url_for(f"{endpoint}_verify"))


def _promoted(session: AdvisorSession) -> Response:
    """The key was right: signed in under a new session id; the script goes to the console."""
    promoted = advisor_sessions.promote(session, "signed_in")
    return _set_cookie(_no_store(jsonify(redirect=url_for("advisors.home"))), promoted)


@bp.get("/connexion/cle")
def key() -> ResponseReturnValue:
    """Second factor: the page with the security-key button."""
    return _key_page("password", "get", "advisors.key")


@bp.post("/connexion/cle/options")
def key_options() -> ResponseReturnValue:
    """Authentication options (JSON)."""
    session, advisor = _staged("password")
    return _no_store(jsonify(publicKey=service.start_key_sign_in(advisor, session.id)))


@bp.post("/connexion/cle/verifier")
def key_verify() -> ResponseReturnValue:
    """Verify the assertion; the session moves to ``signed_in`` under a new id."""
    session, advisor = _staged("password")
    service.finish_key_sign_in(advisor, session.id, _json_body())
    return _promoted(session)


@bp.get("/connexion/organisation")
def oidc_start() -> ResponseReturnValue:
    """Sign-in through the organisation's staff OpenID provider (Authlib client)."""
    if not staff_oidc.configured():
        raise BadRequest("La connexion par le fournisseur d'identité de l'organisation n'est pas configurée.",
                         detail="staff oidc not configured")
    return staff_oidc.authorize_redirect(url_for("advisors.oidc_callback", _external=True))


@bp.get("/connexion/organisation/retour")
def oidc_callback() -> ResponseReturnValue:
    """The staff provider's answer: the advisor (role from the configured claim) is signed in."""
    advisor = staff_oidc.finish()
    response = redirect(url_for("advisors.home"), 303)
    return _set_cookie(response, advisor_sessions.start(advisor.id, "signed_in", method="oidc"))


@bp.post("/deconnexion")
def sign_out() -> ResponseReturnValue:
    """End the console session."""
    session = _session()
    if session is not None:
        advisor_sessions.end(session)
        from idp import audit

        audit.record("advisor.signed_out", advisor=session.advisor_id)
    return _clear_cookie(redirect(url_for("advisors.sign_in", deconnecte=1), 303))


# --- enrolment --------------------------------------------------------------------------------------
@bp.route("/inscription/<token>", methods=["GET", "POST"])
def enrol(token: str) -> ResponseReturnValue:
    """Enrolment step 1: choose the password (the link is used once)."""
    advisor = service.enrolment_advisor(token)
    errors: dict[str, str] = {}
    if request.method == "POST":
        password = request.form.get("password", "")
        if password != request.form.get("confirm", ""):
            errors["confirm"] = "Les deux mots de passe saisis sont différents."
        else:
            reasons = service.staff_password_reasons(password)
            if not reasons:
                service.begin_enrolment(token, password)
                response = redirect(url_for("advisors.enrol_key"), 303)
                return _set_cookie(response, advisor_sessions.start(advisor.id, "enrol"))
            errors["password"] = " ".join(reasons)
    return _page("enrol.html", email=advisor.email, errors=errors,
                 min_length=settings().advisor_password_min_length)


@bp.get("/inscription/cle")
def enrol_key() -> ResponseReturnValue:
    """Enrolment step 2: register the security key or platform credential."""
    return _key_page("enrol", "create", "advisors.enrol_key")


@bp.post("/inscription/cle/options")
def enrol_key_options() -> ResponseReturnValue:
    """Registration options (JSON)."""
    session, advisor = _staged("enrol")
    return _no_store(jsonify(publicKey=service.start_key_registration(advisor, session.id)))


@bp.post("/inscription/cle/verifier")
def enrol_key_verify() -> ResponseReturnValue:
    """Store the key; the advisor is enrolled and signed in (new session id)."""
    session, advisor = _staged("enrol")
    service.finish_key_registration(advisor, session.id, _json_body())
    return _promoted(session)


# --- the console ------------------------------------------------------------------------------------
@bp.get("/")
@signed_in
def home(session: AdvisorSession, advisor: Advisor) -> ResponseReturnValue:
    """Search form."""
    return _page("home.html", errors={}, nir="")


@bp.post("/recherche")
@signed_in
def search(session: AdvisorSession, advisor: Advisor) -> ResponseReturnValue:
    """Search an account by NIR (rate-limited, audited); opens a dossier in the session."""
    try:
        nir = Nir.parse(request.form.get("nir", ""))
    except InvalidNir as exc:
        return _page("home.html", 200, errors={"nir": exc.reason}, nir="")
    found = console.search(advisor, nir)
    handle = advisor_sessions.open_dossier(session, nir_enc=found.nir_enc, account_id=found.account_id)
    return redirect(url_for("advisors.dossier", handle=handle), 303)


def _found(session: AdvisorSession, handle: str) -> console.Found:
    entry = session.dossiers.get(handle)
    if entry is None or not entry.get("nir_enc"):
        raise BadRequest("Ce dossier n'est plus ouvert : recherchez de nouveau le numéro de sécurité sociale.",
                         detail="unknown dossier handle")
    return console.Found(nir_enc=str(entry["nir_enc"]), account_id=entry.get("account_id"))


@bp.get("/dossier/<handle>")
@signed_in
def dossier(session: AdvisorSession, advisor: Advisor, handle: str) -> ResponseReturnValue:
    """The account's state and the actions."""
    state = console.account_state(_found(session, handle))
    done = request.args.get("fait", "")
    return _page("dossier.html", state=state, handle=handle, actions=console.ACTIONS,
                 done=console.ACTIONS[done][0] if done in console.ACTIONS else None,
                 sms_to=request.args.get("sms", "")[:40], errors={})


@bp.post("/dossier/<handle>/<action>")
@signed_in
def act(session: AdvisorSession, advisor: Advisor, handle: str, action: str) -> ResponseReturnValue:
    """One action on the account, with its reason (CSRF-protected like every POST)."""
    found = _found(session, handle)
    if action not in console.ACTIONS:
        raise BadRequest(detail="unknown advisor action")
    try:
        result = console.perform(advisor, found, action, request.form.get("reason", ""))
    except (console.ReasonRequired, AccountDisabled) as exc:
        state = console.account_state(found)
        return _page("dossier.html", 200, state=state, handle=handle, actions=console.ACTIONS, done=None,
                     sms_to="", errors={action: exc.description})
    if action == "reset":  # the account is gone: the dossier now shows the identity without account
        session.dossiers[handle]["account_id"] = None
        advisor_sessions.save(session)
    return redirect(url_for("advisors.dossier", handle=handle, fait=action, sms=result.get("phone", "")), 303)


@bp.get("/journal")
@signed_in
def journal(session: AdvisorSession, advisor: Advisor) -> ResponseReturnValue:
    """The advisors' actions: supervisors only."""
    if not advisor.is_supervisor:
        raise Forbidden("Seuls les superviseurs peuvent consulter le journal des actions des conseillers.",
                        detail="advisor is not a supervisor")
    return _page("journal.html", rows=console.action_log())


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response
