"""Pages of "Sécurité de mon compte" (blueprint ``security`` under ``/compte/securite``): thin views over
:mod:`idp.accounts.security`. Reading needs a live browser session; every change also needs a fresh
re-authentication code (``/compte/securite/verification``), whatever the session's age. POSTs answer 303.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from idp.accounts import security, service
from idp.accounts.security import Reauth
from idp.clock import paris_display
from idp.errors import IdpError
from idp.extensions import hashtag, redis_client, rkey, settings
from idp.notify.mail import MailNotSent

if TYPE_CHECKING:
    from idp.accounts.models import Account
    from idp.login.sessions import BrowserSession

bp = Blueprint("security", __name__, url_prefix="/compte/securite")

NEXT_PAGES = {"securite": "security.index", "email": "security.email", "mot-de-passe": "security.password",
              "biometrie": "biometric.manage"}
DONE = {"email": "Votre adresse e-mail a été modifiée. Votre ancienne adresse en a été informée.",
        "password": "Votre mot de passe a été modifié. Vos autres sessions ont été fermées.",
        "browser": "Le navigateur a été révoqué : le code de sécurité y sera de nouveau demandé.",
        "browsers": "Tous vos navigateurs de confiance ont été révoqués.",
        "session": "La session a été fermée.", "sessions": "Vos autres sessions ont été fermées."}


class SignInRequired(IdpError):
    """The security page needs a signed-in browser."""

    code = "login_required"
    status = 401
    title = "Authentification requise"
    description = ("Vous devez être connecté à votre compte ameli pour gérer sa sécurité. Connectez-vous depuis "
                   "le site ou l'application de l'Assurance Maladie, puis revenez sur cette page.")


def _signed_in() -> tuple[BrowserSession, Account]:
    from idp.login import cookies
    from idp.login.sessions import sessions

    session = sessions.get(cookies.read(cookies.SESSION))
    account = service.get_account(session.account_id) if session is not None else None
    if session is None or account is None or not account.is_active:
        raise SignInRequired(detail="no browser session")
    return session, account


def page(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """The view gets the signed-in person's session and account."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        return view(*_signed_in(), *args, **kwargs)

    return wrapper


def change(next_page: str) -> Callable[[Callable[..., ResponseReturnValue]], Callable[..., ResponseReturnValue]]:
    """Like :func:`page`, and without a fresh re-authentication the browser goes to the code page first."""

    def decorate(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            session, account = _signed_in()
            if not security.reauthenticated(session):
                if request.method == "POST":
                    security.change_refused(session, view.__name__)
                return redirect(url_for("security.verify", suite=next_page), 303)
            return view(session, account, *args, **kwargs)

        return wrapper

    return decorate


def _render(template: str, status: int = 200, **context: Any) -> ResponseReturnValue:
    return render_template(f"security/{template}", **context), status, {"Cache-Control": "no-store"}


def _done(what: str) -> ResponseReturnValue:
    return redirect(url_for("security.index", fait=what), 303)


# --- the page -------------------------------------------------------------------------------------
@bp.get("")
@page
def index(session: BrowserSession, account: Account) -> ResponseReturnValue:
    """Everything at a glance; every button is a change and asks for the code first."""
    from idp.login import cookies
    from idp.webauthn import service as webauthn

    return _render("index.html", account=account, done=DONE.get(request.args.get("fait", "")),
                   browsers=security.browsers(account.id, cookies.read(cookies.TRUSTED)),
                   sessions=security.open_sessions(account.id, session),
                   biometrics=len(webauthn.list_credentials(account.id)),
                   events=_named_clients(security.security_events(account.id)),
                   fresh=security.reauthenticated(session))


def _named_clients(events: list[dict[str, str]]) -> list[dict[str, str]]:
    """The service's name instead of its client_id (the person knows the name)."""
    from idp.oidc.clients import get_client

    names: dict[str, str] = {}
    for event in events:
        client_id = event["client"]
        if client_id and client_id not in names:
            client = get_client(client_id)
            names[client_id] = client.name if client is not None else ""
        event["client"] = names.get(client_id, "")
    return events


# --- re-authentication ----------------------------------------------------------------------------
def _reauth_alert(result: security.ReauthResult) -> str:
    until = paris_display(result.until) if result.until else ""
    n = settings().max_failed_attempts
    return {
        Reauth.WRONG: f"Le code de sécurité est erroné. Attention : {n} essais infructueux bloquent l'accès au service.",
        Reauth.LOCKED: f"Suite à {n} essais infructueux, l'accès au service est bloqué jusqu'au {until} (heure de Paris).",
        Reauth.QUOTA: ("Le nombre maximum de demandes de code a été atteint. L'accès au service est bloqué jusqu'au "
                       f"{until} (heure de Paris)."),
        Reauth.EXPIRED: "Le code de sécurité a expiré. Demandez un nouveau code de sécurité.",
        Reauth.MISSING: "Aucun code de sécurité n'est en attente. Demandez un nouveau code de sécurité.",
        Reauth.MAIL_FAILED: ("Le code n'a pas pu être envoyé par e-mail. Le service de messagerie est momentanément "
                             "indisponible : merci de réessayer dans quelques minutes."),
        Reauth.NO_EMAIL: ("Votre compte n'a pas d'adresse e-mail validée : appelez le 3646 pour qu'un conseiller "
                          "vous aide."),
    }.get(result.outcome, "")


def _suite() -> str:
    value = request.values.get("suite", "securite")
    return value if value in NEXT_PAGES else "securite"


@bp.get("/verification")
@page
def verify(session: BrowserSession, account: Account) -> ResponseReturnValue:
    """"Confirmez votre identité": the code form (and the button that sends it)."""
    return _render("reauth.html", suite=_suite(), sent=bool(request.args.get("envoye")), alert=None, code_error=None,
                   email=service.masked_email(account.email))


@bp.post("/verification/envoi")
@page
def send_code(session: BrowserSession, account: Account) -> ResponseReturnValue:
    """Send the re-authentication code."""
    result = security.send_reauth_code(session, account)
    if result.outcome is Reauth.SENT:
        return redirect(url_for("security.verify", suite=_suite(), envoye=1), 303)
    return _render("reauth.html", suite=_suite(), sent=False, alert=_reauth_alert(result), code_error=None,
                   email=service.masked_email(account.email))


@bp.post("/verification")
@page
def check_code(session: BrowserSession, account: Account) -> ResponseReturnValue:
    """Check the code; then the page the person was going to."""
    result = security.check_reauth_code(session, account, request.form.get("code", "")[:32])
    if result.outcome is Reauth.OK:
        return redirect(url_for(NEXT_PAGES[_suite()]), 303)
    code_error = "Le code de sécurité comporte 6 chiffres." if result.outcome is Reauth.INVALID else None
    return _render("reauth.html", suite=_suite(), sent=True, alert=_reauth_alert(result), code_error=code_error,
                   email=service.masked_email(account.email))


# --- e-mail -----------------------------------------------------------------------------------------
def _pending_key(session: BrowserSession) -> str:
    return rkey("email-change", hashtag(security.session_handle(session)))


@bp.route("/email", methods=["GET", "POST"])
@change("email")
def email(session: BrowserSession, account: Account) -> ResponseReturnValue:
    """Step 1 of an e-mail change: the new address; a code is sent to it."""
    errors: dict[str, str] = {}
    value = request.form.get("email", "").strip()[:254]
    if request.method == "POST":
        message = service.email_error(value)
        errors = {"email": message} if message else {}
        if not errors:
            try:
                security.start_email_change(account, value)
            except (service.EmailCodeQuotaExceeded, MailNotSent) as exc:
                errors["email"] = exc.description
            else:
                redis_client().set(_pending_key(session), json.dumps({"email": service.normalise_email(value)}),
                                   ex=settings().email_code_ttl)
                return redirect(url_for("security.email_code"), 303)
    return _render("email.html", step="address", account=account, errors=errors, value=value)


@bp.route("/email/code", methods=["GET", "POST"])
@change("email")
def email_code(session: BrowserSession, account: Account) -> ResponseReturnValue:
    """Step 2: the code received at the new address."""
    raw = redis_client().get(_pending_key(session))
    new = json.loads(raw)["email"] if raw else None
    if new is None:
        return redirect(url_for("security.email"), 303)
    errors: dict[str, str] = {}
    if request.method == "POST":
        if security.confirm_email_change(account, new, request.form.get("code", "").strip()[:32]):
            redis_client().delete(_pending_key(session))
            return _done("email")
        errors["code"] = "Le code saisi est erroné ou a expiré."
    return _render("email.html", step="code", account=account, errors=errors, value=new)


# --- password ---------------------------------------------------------------------------------------
@bp.route("/mot-de-passe", methods=["GET", "POST"])
@change("mot-de-passe")
def password(session: BrowserSession, account: Account) -> ResponseReturnValue:
    """A new password; the other sessions end (this one stays)."""
    errors: dict[str, str] = {}
    if request.method == "POST":
        new = request.form.get("password", "")
        if new != request.form.get("confirm", ""):
            errors["confirm"] = "Les deux mots de passe saisis sont différents."
        else:
            try:
                service.set_password(account, new, keep_session=session.id)
            except service.PasswordRejected as exc:
                errors["password"] = " ".join(exc.reasons)
            else:
                return _done("password")
    return _render("password.html", errors=errors, min_length=settings().password_min_length)


# --- trusted browsers and sessions -------------------------------------------------------------------
@bp.post("/navigateurs/<int:browser_id>/revoquer")
@change("securite")
def revoke_browser(session: BrowserSession, account: Account, browser_id: int) -> ResponseReturnValue:
    """Revoke one trusted browser."""
    security.revoke_browser(account, browser_id)
    return _done("browser")


@bp.post("/navigateurs/revoquer")
@change("securite")
def revoke_browsers(session: BrowserSession, account: Account) -> ResponseReturnValue:
    """Revoke every trusted browser."""
    security.revoke_all_browsers(account)
    return _done("browsers")


@bp.post("/sessions/<handle>/fermer")
@change("securite")
def end_session(session: BrowserSession, account: Account, handle: str) -> ResponseReturnValue:
    """End one other session."""
    security.end_session(account, session, handle[:64])
    return _done("session")


@bp.post("/sessions/fermer")
@change("securite")
def end_sessions(session: BrowserSession, account: Account) -> ResponseReturnValue:
    """End every other session."""
    security.end_other_sessions(account, session)
    return _done("sessions")
