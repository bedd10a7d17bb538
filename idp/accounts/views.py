"""French pages of the account lifecycle (blueprint ``accounts``): thin views over the services.

- ``/compte/creation``: identity check, then ``/compte/creation/email``, ``/compte/creation/code``,
  ``/compte/creation/mot-de-passe``, ``/compte/creation/terminee``;
- ``/compte/recreation``: NIR + SMS provisional code, then the same e-mail and password steps;
- ``/mot-de-passe-oublie`` and ``/mot-de-passe/nouveau/<token>``;
- ``/aide``.

The flow id lives in the signed Flask session (no secret in it); POSTs answer 303.
"""

from __future__ import annotations

import functools
from typing import Any

from flask import Blueprint, Flask, current_app, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from idp.accounts import creation, recovery, service
from idp.nir import InvalidNir, Nir
from idp.notify import outbox
from idp.notify.mail import MailNotSent

accounts_bp = Blueprint("accounts", __name__)
FLOW = "account_flow"


def _page(template: str, status: int = 200, **context: Any) -> ResponseReturnValue:
    response = render_template(f"accounts/{template}", **context)
    return response, status, {"Cache-Control": "no-store"}


def _see_other(endpoint: str, **values: Any) -> ResponseReturnValue:
    return redirect(url_for(endpoint, **values), code=303)


def _nir_or_error(text: str, errors: dict[str, str]) -> Nir | None:
    try:
        return Nir.parse(text)
    except InvalidNir as exc:
        errors["nir"] = exc.reason
        return None


def _flow(step: str) -> creation.Flow | None:
    flow = creation.load(session.get(FLOW))
    return flow if flow is not None and flow.step == step else None


# --- creation -----------------------------------------------------------------------------------
@accounts_bp.route("/compte/creation", methods=["GET", "POST"])
def create() -> ResponseReturnValue:
    """Step 1: NIR, date of birth, Carte Vitale serial and last 7 characters of the IBAN."""
    errors: dict[str, str] = {}
    form = request.form
    if request.method == "POST":
        nir = _nir_or_error(form.get("nir", ""), errors)
        birthdate = creation.parse_birthdate(form.get("birthdate", ""))
        if birthdate is None:
            errors["birthdate"] = "Saisissez votre date de naissance au format JJ/MM/AAAA (00 si inconnu)."
        if not form.get("vitale", "").strip():
            errors["vitale"] = "Saisissez le numéro de série de votre carte Vitale."
        if len(creation._compact(form.get("iban_end", ""))) != 7:
            errors["iban_end"] = "Saisissez les 7 derniers caractères de votre IBAN."
        if not errors and nir is not None and birthdate is not None:
            try:
                flow = creation.check_identity(nir, birthdate, form["vitale"], form["iban_end"],
                                               address=request.remote_addr or "")
            except (creation.IdentityMismatch, creation.TooManyAttempts) as exc:
                return _page("create.html", 429 if isinstance(exc, creation.TooManyAttempts) else 200,
                             alert_message=exc.description, errors={}, form=form)
            session[FLOW] = flow.id
            return _see_other("accounts.email")
    return _page("create.html", 200, errors=errors, form=form, alert_message=None)


@accounts_bp.route("/compte/recreation", methods=["GET", "POST"])
def recreate() -> ResponseReturnValue:
    """Re-creation after an advisor reset: NIR and the provisional code received by SMS."""
    errors: dict[str, str] = {}
    if request.method == "POST":
        nir = _nir_or_error(request.form.get("nir", ""), errors)
        code = request.form.get("code", "").strip()
        if not code:
            errors["code"] = "Saisissez le code provisoire reçu par SMS."
        if not errors and nir is not None:
            try:
                flow = creation.check_provisional_code(nir, code, address=request.remote_addr or "")
            except (creation.IdentityMismatch, creation.TooManyAttempts) as exc:
                return _page("recreate.html", 429 if isinstance(exc, creation.TooManyAttempts) else 200,
                             alert_message=exc.description, errors={}, form=request.form)
            session[FLOW] = flow.id
            return _see_other("accounts.email")
    return _page("recreate.html", 200, errors=errors, form=request.form, alert_message=None)


@accounts_bp.route("/compte/creation/email", methods=["GET", "POST"])
def email() -> ResponseReturnValue:
    """Step 2: the e-mail address that will receive the security codes."""
    flow = _flow("email") or _flow("code")
    if flow is None:
        return _see_other("accounts.create")
    errors: dict[str, str] = {}
    if request.method == "POST":
        address = request.form.get("email", "").strip()
        message = service.email_error(address)
        if message:
            errors["email"] = message
        else:
            try:
                creation.send_email(flow, address)
            except MailNotSent as exc:
                return _page("email.html", 503, errors={}, alert_message=exc.description, form=request.form)
            return _see_other("accounts.email_code")
    return _page("email.html", 200, errors=errors, alert_message=None, form=request.form)


@accounts_bp.route("/compte/creation/code", methods=["GET", "POST"])
def email_code() -> ResponseReturnValue:
    """Step 3: the 6-digit code sent to the e-mail address."""
    flow = _flow("code")
    if flow is None:
        return _see_other("accounts.create")
    masked = service.masked_email(flow.email)
    if request.method == "POST":
        if creation.confirm_email(flow, request.form.get("code", "")):
            return _see_other("accounts.password")
        return _page("code.html", 200, masked=masked, error=creation.WRONG)
    return _page("code.html", 200, masked=masked, error=None)


@accounts_bp.post("/compte/creation/code/nouveau")
def email_code_again() -> ResponseReturnValue:
    """Send a new code to the same address (the quota applies)."""
    flow = _flow("code")
    if flow is None or flow.email is None:
        return _see_other("accounts.create")
    creation.send_email(flow, flow.email)
    return _see_other("accounts.email_code")


@accounts_bp.route("/compte/creation/mot-de-passe", methods=["GET", "POST"])
def password() -> ResponseReturnValue:
    """Step 4: the password (rules explained, reasons in French)."""
    flow = _flow("password")
    if flow is None:
        return _see_other("accounts.create")
    reasons: list[str] = []
    if request.method == "POST":
        try:
            creation.finish(flow, request.form.get("password", ""))
        except service.PasswordRejected as exc:
            reasons = exc.reasons
        else:
            session.pop(FLOW, None)
            return _see_other("accounts.created")
    return _page("password.html", 200, reasons=reasons, action=url_for("accounts.password"),
                 min_length=_min_length())


@accounts_bp.get("/compte/creation/terminee")
def created() -> ResponseReturnValue:
    """The account exists: what to do next."""
    return _page("created.html")


# --- forgotten password -------------------------------------------------------------------------
@accounts_bp.route("/mot-de-passe-oublie", methods=["GET", "POST"])
def forgot() -> ResponseReturnValue:
    """Ask for a reset link; the answer is the same whether or not the NIR has an account."""
    errors: dict[str, str] = {}
    if request.method == "POST":
        recovery.throttle_address(request.remote_addr or "-")
        nir = _nir_or_error(request.form.get("nir", ""), errors)
        if nir is not None:
            pending = recovery.request_reset(nir.value)
            response = redirect(url_for("accounts.forgot_sent"), code=303)
            if pending is not None:
                # Sent by a sender thread, not by the request (same timing whether or not the NIR has an
                # account, even on a kept-alive connection); a failure withdraws the link and is audited,
                # never shown (that would reveal the account).
                outbox.send_later(current_app._get_current_object(),  # type: ignore[attr-defined]
                                  functools.partial(recovery.deliver, pending))
            return response
    return _page("forgot.html", 200, errors=errors, form=request.form)


@accounts_bp.get("/mot-de-passe-oublie/envoye")
def forgot_sent() -> ResponseReturnValue:
    """The one answer to every request."""
    return _page("forgot_sent.html")


@accounts_bp.route("/mot-de-passe/nouveau/<token>", methods=["GET", "POST"])
def new_password(token: str) -> ResponseReturnValue:
    """Choose a new password through an e-mailed link (single use, 30 minutes)."""
    if recovery.peek(token) is None:
        raise recovery.InvalidResetLink()
    reasons: list[str] = []
    if request.method == "POST":
        try:
            recovery.redeem(token, request.form.get("password", ""))
        except service.PasswordRejected as exc:
            reasons = exc.reasons
        else:
            return _see_other("accounts.password_changed")
    return _page("password.html", 200, reasons=reasons, action=url_for("accounts.new_password", token=token),
                 min_length=_min_length(), reset=True)


@accounts_bp.get("/mot-de-passe/modifie")
def password_changed() -> ResponseReturnValue:
    """The password was changed; every session ended."""
    return _page("password_changed.html")


@accounts_bp.get("/aide")
def help_page() -> ResponseReturnValue:
    """Answers to the support questions of the seed."""
    return _page("help.html")


def _min_length() -> int:
    from idp.extensions import settings

    return settings().password_min_length


def init_views(app: Flask) -> None:
    """Register the blueprint (the access log records route patterns, so reset tokens never reach it)."""
    app.register_blueprint(accounts_bp)
