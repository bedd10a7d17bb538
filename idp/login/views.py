"""The hosted login pages (blueprint ``login``): thin views over :mod:`idp.login.service` and the policy.

Every POST that succeeds answers 303 to the next page; a refused POST shows the same page again
with its errors. Which page comes next is always :func:`idp.login.policy.next_step`'s decision.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError

from idp import audit
from idp.accounts import service as accounts
from idp.clock import paris_display
from idp.errors import BadRequest, IdpError, TooManyRequests
from idp.extensions import db, settings
from idp.login import assurance, cookies, policy, service
from idp.login.interaction import Consent, Interaction, InteractionExpired, Offer, Step, interactions
from idp.login.service import Outcome, StepResult
from idp.mfa import codes, limits, trusted_browser
from idp.nir import Nir
from idp.rfi_adapter import RegistryUnavailable

if TYPE_CHECKING:
    from datetime import datetime

    from werkzeug.wrappers import Response

    from idp.accounts.models import Account

bp = Blueprint("login", __name__, url_prefix="/connexion")

STEP_ENDPOINTS = {Step.IDENTIFY: "login.start", Step.EMAIL: "login.email", Step.CODE: "login.code",
                  Step.BIOMETRIC: "login.biometric", Step.TERMS: "login.terms", Step.CONSENT: "login.consent",
                  Step.OFFER: "biometric.offer"}
# What each scope gives, in plain French, for the consent page (idp.oidc.claims.SCOPE_CLAIMS).
SCOPE_LABELS = {"profile": "Votre identité : nom, prénoms, nom d'usage, sexe et date de naissance",
                "email": "Votre adresse e-mail",
                "birth": "Votre date et votre lieu de naissance",
                "identite_pivot": "Votre identité pivot : nom, prénoms, sexe, date et lieu de naissance"}
# The POST-only routes whose page is another (GET) endpoint, for the CSRF-failure redirect.
PAGE_OF = {"login.forget_nir": "login.start", "login.identify": "login.start", "login.check_code": "login.code",
           "login.resend_code": "login.code"}


def _wrong() -> list[str]:
    return ["Les informations saisies sont erronées. Merci de vérifier votre saisie.",
            f"Attention : {settings().max_failed_attempts} essais infructueux bloquent l'accès au service."]


class IdentityUnknown(IdpError):
    """The password is right but the registry of individuals (RFI) no longer knows the person."""

    code = "identity_unknown"
    status = 403
    title = "Connexion impossible"
    description = ("La connexion à votre compte ameli n'est pas possible : nous ne parvenons pas à vérifier votre "
                   "identité. Pour régulariser votre situation, appelez le 3646 (service gratuit + prix d'un appel).")


def refuse_for_registry(result: StepResult) -> None:
    """The French page of a login the registry refused (403, call the 3646) or could not answer (503)."""
    if result.outcome is Outcome.IDENTITY_UNKNOWN:
        raise IdentityUnknown(detail="rfi: identity not found at login")
    if result.outcome is Outcome.REGISTRY_UNAVAILABLE:
        raise RegistryUnavailable(detail="rfi unavailable at login")


def expired_page(exc: InteractionExpired) -> Response:
    """The one "interaction expired" page (JSON for the biometric endpoints); clears the stale cookie."""
    from idp.errors import render_error

    response = render_error(exc.status, exc.code, exc.title, exc.description)
    cookies.clear_interaction(response)  # a stale cookie must not stick around
    return response


@bp.errorhandler(CSRFError)
def _csrf_failed(_exc: CSRFError) -> ResponseReturnValue:
    # A lost or stale CSRF cookie never blocks: show the form again with a fresh token.
    endpoint = request.endpoint or "login.start"
    return redirect(url_for(PAGE_OF.get(endpoint, endpoint), renouvele=1), 303)


# --- helpers -----------------------------------------------------------------------------------
def _held_account(interaction: Interaction) -> Account | None:
    """The interaction's account, held for the rest of the request: the session's identity map keeps only
    weak references, so without it every look-up (views, policy) would load the row again."""
    from idp.accounts.models import Account

    account = db.session.get(Account, interaction.account_id) if interaction.account_id else None
    g.login_account = account
    return account


def _account(interaction: Interaction) -> Account:
    account = _held_account(interaction)
    if account is None:
        raise InteractionExpired(detail="interaction without account")
    return account


def _answer_rp(interaction: Interaction) -> Response:
    """The login is over: the RP's answer now, as /authorize/resume gives it (one redirect fewer for the
    browser, one request fewer for the server). The interaction must be saved: the answer consumes it.

    Answering a POST that may carry the password, the redirect is a 303 (RFC 9700 §4.12: the browser
    follows it with a GET, never re-posting the form to the RP)."""
    from idp.oidc.views import answer_login

    response = current_app.make_response(answer_login(interaction))
    if response.status_code in (301, 302, 307, 308):
        response.status_code = 303
    return response


def _advance(interaction: Interaction, *, send_code: bool) -> Response:
    """Redirect (303) to the page of the next step; when the login is done, answer the RP at once.

    ``send_code`` is True only from POST handlers: a GET never sends an e-mail."""
    account = _account(interaction) if interaction.account_id else None
    step = policy.next_step(interaction, account)
    if step is Step.DONE and account is not None:
        service.finish(interaction, account)
        return _answer_rp(interaction)
    if step is Step.OFFER:
        interaction.offer = Offer.SHOWN  # shown once per login; activation is open while it is shown
    if step is Step.CODE and send_code and account is not None and not interaction.code_sent_at:
        result = service.request_code(interaction, account)  # a failure (quota, SMTP) is shown by the code page
        # Locks and quota blocks are read back from Redis by the code page; an SMTP failure leaves no trace
        # there, so it is remembered here lest the page claim that a code "va vous être envoyé".
        interaction.code_not_sent = result.outcome is Outcome.MAIL_FAILED
    interactions.save(interaction)
    audit.commit_recorded()  # the step's audit events, in one transaction
    return redirect(url_for(STEP_ENDPOINTS[step]), 303)


def _on_step(interaction: Interaction, step: Step) -> Response | None:
    """A redirect to the right page when the policy says another step comes now."""
    expected = policy.next_step(interaction, _held_account(interaction))
    return None if expected == step else _advance(interaction, send_code=False)


def step_view(step: Step) -> Callable[[Callable[..., ResponseReturnValue]], Callable[..., ResponseReturnValue]]:
    """Decorate the view of one step: it receives the live interaction, and the browser is sent to the
    policy's page instead whenever another step comes now (no step can be skipped or replayed)."""

    def decorate(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            interaction = cookies.live_interaction()
            elsewhere = _on_step(interaction, step)
            if elsewhere is not None:
                return elsewhere
            return view(interaction, *args, **kwargs)

        return wrapper

    return decorate


def _lock_message(until: datetime | None) -> str:
    when = paris_display(until) if until else ""
    return (f"Suite à {settings().max_failed_attempts} essais infructueux, l'accès au service est bloqué "
            f"jusqu'au {when} (heure de Paris). Vous pourrez de nouveau essayer de vous connecter après cette date.")


def _quota_message(until: datetime | None) -> str:
    when = paris_display(until) if until else ""
    return ("Le nombre maximum de demandes de code a été atteint. "
            f"L'accès au service est bloqué jusqu'au {when} (heure de Paris).")


def _alert_for(result: StepResult) -> list[str]:
    if result.outcome is Outcome.WRONG:
        return _wrong()
    if result.outcome is Outcome.LOCKED:
        return [_lock_message(result.until)]
    if result.outcome is Outcome.QUOTA:
        return [_quota_message(result.until)]
    if result.outcome is Outcome.EXPIRED:
        return [f"Le code de sécurité a expiré : il doit être saisi dans les {settings().email_code_ttl // 60} "
                "minutes suivant son envoi. Demandez un nouveau code de sécurité."]
    if result.outcome is Outcome.MISSING:
        return ["Aucun code de sécurité n'est en attente pour cette connexion. Demandez un nouveau code de sécurité."]
    if result.outcome is Outcome.MAIL_FAILED:
        return ["Le code n'a pas pu être envoyé par e-mail. Le service de messagerie est momentanément "
                "indisponible : merci de réessayer dans quelques minutes."]
    return []


def _throttled(result: StepResult) -> None:
    if result.outcome is Outcome.THROTTLED:
        raise TooManyRequests(detail="address failure limit")


# --- step 0: identify --------------------------------------------------------------------------
def _identify_page(interaction: Interaction, **context: Any) -> Response:
    remembered = cookies.remembered_nir()
    response = current_app.make_response((render_template(
        "login/identify.html", interaction=interaction, remembered=remembered,
        web=interaction.client_kind == "web", mobile=interaction.client_kind == "mobile", links=_links(),
        renewed=bool(request.args.get("renouvele")),
        **context), 200))
    if cookies.read(cookies.NIR) and remembered is None:
        cookies.forget_nir(response)  # corrupt, foreign or oversized: clear silently
    return response


def _links() -> dict[str, str]:
    """Links to the accounts area's pages."""
    return {"password": url_for("accounts.forgot"), "create": url_for("accounts.create"),
            "help": url_for("accounts.help_page")}


@bp.get("")
def start() -> ResponseReturnValue:
    """Step 0, the identify page: NIR (or the remembered one) and password."""
    interaction = cookies.live_interaction()
    if interaction.account_id and policy.next_step(interaction) is not Step.IDENTIFY:
        return _advance(interaction, send_code=False)
    return _identify_page(interaction)


@bp.post("")
def identify() -> ResponseReturnValue:
    """Step 0 submitted: cases 4 and 7 (wrong password, lock), unknown NIR answered the same way."""
    interaction = cookies.live_interaction()
    remembered = cookies.remembered_nir()
    nir_text = request.form.get("nir", "")[:64] or (remembered.value if remembered else "")
    password = request.form.get("password", "")[:settings().password_max_length + 1]
    result = service.identify(interaction, nir_text, password, address=request.remote_addr)
    _throttled(result)
    refuse_for_registry(result)
    if result.outcome is Outcome.INVALID_INPUT:
        return _identify_page(interaction, **{f"{result.field}_error": result.reason})
    if not result.ok:
        return _identify_page(interaction, alert=_alert_for(result))
    assert result.account is not None
    interaction.trusted_browser_wanted = interaction.client_kind == "web" and bool(request.form.get("trusted_browser"))
    token = cookies.read(cookies.TRUSTED)
    trusted = trusted_browser.is_trusted(token, result.account.id)
    service.trust_browser(interaction, trusted=trusted)
    response = _advance(interactions.rotate(interaction, save=False), send_code=True)  # _advance saves it
    if interaction.step is not Step.DONE:  # done: the RP was answered and the interaction cookie cleared
        cookies.set_interaction(response, interaction)
    if token and not trusted:
        cookies.clear_trusted(response)
    if request.form.get("remember_nir") or remembered:
        cookies.remember_nir(response, _parsed(nir_text))
    else:
        cookies.forget_nir(response)
    return response


def _parsed(nir_text: str) -> Nir:
    return Nir.parse(nir_text)


@bp.post("/oublier-numero")
def forget_nir() -> ResponseReturnValue:
    """"Ce n'est pas moi / oublier ce numéro": forget the remembered NIR."""
    response = redirect(url_for("login.start"), 303)
    cookies.forget_nir(response)
    return response


@bp.get("/suite")
def next() -> ResponseReturnValue:
    """Redirect to the page of the step the policy decides (used after the WebAuthn steps)."""
    return _advance(cookies.live_interaction(), send_code=False)


# --- case 1: e-mail to enter and validate ------------------------------------------------------
@bp.route("/email", methods=["GET", "POST"])
@step_view(Step.EMAIL)
def email(interaction: Interaction) -> ResponseReturnValue:
    """Case 1: no validated e-mail: enter an address, receive a code there, type it.

    The address is validated for the account, but it proves nothing for this login (whoever has only the
    password could bind their own mailbox): the login goes on single-factor (``idp.login.assurance``)."""
    account = _account(interaction)
    errors: dict[str, str] = {}
    pending = interaction.email_pending
    if request.method == "POST":
        action = request.form.get("action", "send")
        if action == "send":
            address = request.form.get("email", "").strip()[:254]
            if "@" not in address or "." not in address.rsplit("@", 1)[-1] or " " in address:
                errors["email"] = "Saisissez une adresse e-mail valide, par exemple nom@exemple.fr."
            else:
                accounts.start_email_verification(account, address)
                interaction.email_pending = address
                interactions.save(interaction)
                return redirect(url_for("login.email"), 303)
        elif action == "change":
            interaction.email_pending = None
            interactions.save(interaction)
            return redirect(url_for("login.email"), 303)
        elif pending and accounts.confirm_email(account, pending, request.form.get("code", "").strip()[:16]):
            interaction.email_pending = None
            db.session.refresh(account)
            return _advance(interaction, send_code=True)
        else:
            errors["code"] = "Le code saisi est erroné ou a expiré. Vérifiez votre saisie ou demandez un nouveau code."
    return render_template("login/email.html", account=account, pending=pending,
                           masked=accounts.masked_email(pending) if pending else "", errors=errors,
                           renewed=bool(request.args.get("renouvele")))


# --- steps 1 to 3: the security code ----------------------------------------------------------
def _code_page(interaction: Interaction, account: Account, *, alert: list[str] | None = None,
               code_error: str = "", notice: str = "") -> Response:
    lock, blocked = limits.lock_and_block(account.id, codes.QUOTA_NAME)
    sent = bool(interaction.code_sent_at)
    not_sent = not sent and interaction.code_not_sent
    if alert is None:
        alert = [_lock_message(lock.until)] if lock.locked else [_quota_message(blocked)] if blocked else \
            _alert_for(StepResult(Outcome.MAIL_FAILED)) if not_sent else []
    expiry = codes.code_expiry(interaction.id)
    return current_app.make_response(render_template(
        "login/code.html", masked=accounts.masked_email(account.email or ""), alert=alert, code_error=code_error,
        notice=notice, sent=sent, not_sent=not_sent,
        expires=paris_display(expiry) if expiry else "", minutes=settings().email_code_ttl // 60,
        renewed=bool(request.args.get("renouvele"))))


@bp.get("/code")
@step_view(Step.CODE)
def code(interaction: Interaction) -> ResponseReturnValue:
    """Steps 1-3: the page that says where the code went, and the form to type it."""
    notice = "Un nouveau code de sécurité vous a été envoyé." if request.args.get("nouveau") else ""
    return _code_page(interaction, _account(interaction), notice=notice)


@bp.post("/code")
@step_view(Step.CODE)
def check_code(interaction: Interaction) -> ResponseReturnValue:
    """Step 3 submitted: cases 2 (expired), 5 (wrong) and 6 (three wrong codes lock)."""
    account = _account(interaction)
    result = service.check_code(interaction, account, request.form.get("code", "")[:32], address=request.remote_addr)
    _throttled(result)
    if result.outcome is Outcome.INVALID_INPUT:
        return _code_page(interaction, account, code_error=result.reason)
    if not result.ok:
        return _code_page(interaction, account, alert=_alert_for(result))
    response = _advance(interaction, send_code=True)
    if interaction.trusted_browser_wanted and assurance.factor_count(interaction.proof) >= 2:
        # Only a login that proved two factors may make this browser stand in for the code.
        from idp.webauthn.service import describe_device

        label = describe_device(request.user_agent.string or "")
        cookies.set_trusted(response, trusted_browser.trust(account.id, label=label))
    return response


@bp.post("/code/nouveau")
@step_view(Step.CODE)
def resend_code(interaction: Interaction) -> ResponseReturnValue:
    """"Recevoir un nouveau code de sécurité" (case 3: 5 per sliding hour, then blocked 1 hour)."""
    account = _account(interaction)
    result = service.request_code(interaction, account)
    if not result.ok:
        return _code_page(interaction, account, alert=_alert_for(result))
    interactions.save(interaction)
    return redirect(url_for("login.code", nouveau=1), 303)


# --- biometric second factor -------------------------------------------------------------------
@bp.route("/biometrie", methods=["GET", "POST"])
@step_view(Step.BIOMETRIC)
def biometric(interaction: Interaction) -> ResponseReturnValue:
    """The account has a platform credential: sign in with it, or choose the e-mail code instead."""
    if request.method == "POST":
        interaction.prefer_code = True
        return _advance(interaction, send_code=True)
    return render_template("login/biometric.html")


# --- notifications: terms ----------------------------------------------------------------------
@bp.route("/conditions", methods=["GET", "POST"])
@step_view(Step.TERMS)
def terms(interaction: Interaction) -> ResponseReturnValue:
    """New terms of use to accept before going on."""
    account = _account(interaction)
    pending = accounts.pending_terms(account)
    error = ""
    if request.method == "POST":
        if pending is not None and request.form.get("accept") and request.form.get("terms_id") == str(pending.id):
            accounts.accept_terms(account, pending)
            interaction.terms_shown = True  # seed: no biometric offer when another notification was shown
            return _advance(interaction, send_code=True)
        error = "Cochez la case pour accepter les conditions générales d'utilisation."
    return render_template("login/terms.html", terms=pending, error=error)


# --- consent (prompt=consent) ------------------------------------------------------------------
@bp.route("/autorisation", methods=["GET", "POST"])
@step_view(Step.CONSENT)
def consent(interaction: Interaction) -> ResponseReturnValue:
    """OIDC Core §3.1.2.4: the service asked for consent; "Autoriser" goes on to its answer, "Refuser"
    ends the interaction with access_denied (sent to the RP at once)."""
    from idp.oidc.clients import get_client

    client = get_client(interaction.client_id)
    if client is None:
        raise InteractionExpired(detail="client gone")
    if request.method == "POST":
        choice = request.form.get("choice")
        if choice == "allow":
            interaction.consent = Consent.GIVEN
            return _advance(interaction, send_code=False)
        if choice == "deny":
            interaction.consent = Consent.REFUSED
            interactions.save(interaction)
            return _answer_rp(interaction)
        raise BadRequest(detail="unknown consent choice")
    granted = client.get_allowed_scope(interaction.request.get("scope")).split()
    items = [label for scope, label in SCOPE_LABELS.items() if scope in granted]
    return render_template("login/consent.html", client_name=client.name, items=items)
