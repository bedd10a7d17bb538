"""Pages and JSON endpoints of the biometric (WebAuthn platform credential) journey.

- ``/biometrie/proposition``: the offer at the end of a login ("Activer la biométrie", "Plus tard",
  "Ne plus me rappeler"), with help on enabling fingerprint or face in the phone's settings;
- ``/biometrie/activation/options`` and ``/verifier``: the registration ceremony (JSON);
- ``/connexion/biometrie/options`` and ``/verifier``: the sign-in ceremony used by the
  "Se connecter avec la biométrie" button of the login page (JSON);
- ``/compte/biometrie``: the account's credentials, with revocation (needs a live browser session).

Views stay thin: they find the interaction or session, call :mod:`idp.webauthn.service` and
answer. JSON endpoints are protected by the CSRF token sent in the ``X-CSRFToken`` header.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from idp.clock import paris_display
from idp.errors import BadRequest, IdpError
from idp.extensions import clock, db
from idp.webauthn import service
from idp.webauthn.models import as_utc

if TYPE_CHECKING:
    from idp.accounts.models import Account
    from idp.login.interaction import Interaction
    from idp.login.sessions import BrowserSession

bp = Blueprint("webauthn", __name__)


class LoginExpired(IdpError):
    """No live login interaction (cookie missing, stale, or the login already finished)."""

    code = "interaction_expired"
    status = 400
    title = "Connexion expirée"
    description = ("Votre demande de connexion a expiré ou est déjà terminée. Merci de recommencer depuis le site "
                   "ou l'application du service qui vous a dirigé ici.")


class SessionRequired(IdpError):
    """The management page needs a signed-in browser."""

    code = "login_required"
    status = 401
    title = "Authentification requise"
    description = "Vous devez être connecté à votre compte ameli pour gérer votre biométrie."


# --- helpers ---------------------------------------------------------------------------------
def _interaction() -> Interaction:
    from idp.login.interaction import current

    interaction = current()
    if interaction is None or interaction.step == "done":
        raise LoginExpired(detail="no live interaction")
    return interaction


def _authenticated() -> tuple[Interaction, Account]:
    """The interaction of a person who finished every authentication step (the offer comes last)."""
    from idp.accounts.models import Account
    from idp.login.policy import next_step

    interaction = _interaction()
    account = db.session.get(Account, interaction.account_id) if interaction.account_id else None
    if account is None or next_step(interaction, account) not in ("offer", "consent", "done"):
        raise LoginExpired(detail="interaction not authenticated yet")
    return interaction, account


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest(detail="JSON object expected")
    return body


def _continue_url() -> str:
    return url_for("login.next")


def _browser_session() -> BrowserSession:
    from idp.login.sessions import cookie_name, sessions

    session = sessions.get(request.cookies.get(cookie_name()))
    if session is None:
        raise SessionRequired(detail="no browser session")
    return session


# --- the offer -------------------------------------------------------------------------------
@bp.route("/biometrie/proposition", methods=["GET", "POST"])
def offer() -> ResponseReturnValue:
    """The biometric offer; POST records "Plus tard" or "Ne plus me rappeler" and continues."""
    from idp.login.interaction import interactions

    interaction, account = _authenticated()
    if request.method == "POST":
        choice = request.form.get("choice", "")
        if choice not in ("later", "never"):
            raise BadRequest(detail="unknown offer choice")
        service.record_offer_choice(interaction, account, "never" if choice == "never" else "later")
        return redirect(_continue_url(), 303)
    # Shown once per login: the policy does not send the person back here after this page.
    interaction.data["offer_shown"] = True
    interactions.save(interaction)
    months = service.expiry_months()
    return render_template("webauthn/offer.html", title="Activer la biométrie", months=months)


@bp.post("/biometrie/activation/options")
def activation_options() -> ResponseReturnValue:
    """Registration options for ``navigator.credentials.create()`` (JSON)."""
    interaction, account = _authenticated()
    return _no_store(jsonify(publicKey=service.start_registration(interaction=interaction, account=account)))


@bp.post("/biometrie/activation/verifier")
def activation_verify() -> ResponseReturnValue:
    """Verify the new credential, store it, and continue the login (JSON ``{"redirect": ...}``)."""
    interaction, account = _authenticated()
    service.finish_registration(interaction=interaction, account=account, response=_json_body(),
                                device_label=service.describe_device(request.user_agent.string or ""))
    service.record_offer_choice(interaction, account, "activated")
    return _no_store(jsonify(redirect=_continue_url()))


# --- sign-in ---------------------------------------------------------------------------------
@bp.post("/connexion/biometrie/options")
def sign_in_options() -> ResponseReturnValue:
    """Authentication options for ``navigator.credentials.get()`` (JSON).

    The account's credentials are listed when it is known (password already given, or a
    remembered NIR); otherwise the browser offers the discoverable credentials of this site."""
    interaction = _interaction()
    account_id = interaction.account_id or _remembered_account_id()
    return _no_store(jsonify(publicKey=service.start_authentication(interaction=interaction, account_id=account_id)))


@bp.post("/connexion/biometrie/verifier")
def sign_in_verify() -> ResponseReturnValue:
    """Verify the assertion; on success the interaction knows the account (amr hwk + user)."""
    from idp.login.interaction import interactions, set_cookie

    interaction = _interaction()
    service.sign_in(interaction=interaction, response=_json_body())
    # As after the password: a new interaction id, so that an id planted or seen before is worthless.
    interactions.rotate(interaction)
    response = _no_store(jsonify(redirect=_continue_url()))
    set_cookie(response, interaction)
    return response


def _remembered_account_id() -> str | None:
    """The account of the NIR remembered by "Mémoriser mon numéro" (login area's sealed cookie)."""
    from idp.accounts.service import find_account
    from idp.login import remember

    nir = remember.read_nir(request.cookies.get(remember.cookie_name()))
    account = find_account(nir) if nir is not None else None
    return account.id if account is not None and account.is_active else None


# --- management ------------------------------------------------------------------------------
@bp.get("/compte/biometrie")
def manage() -> ResponseReturnValue:
    """The account's credentials: device, activation, last use, expiry; each can be revoked."""
    session = _browser_session()
    now = clock().now()
    rows = [{"id": c.id, "device": c.device_label, "created": paris_display(as_utc(c.created_at)),
             "last_used": paris_display(as_utc(c.last_used_at)) if c.last_used_at else "jamais",
             "expires": paris_display(as_utc(c.expires_at)), "expired": not c.usable_at(now)}
            for c in service.list_credentials(session.account_id)]
    revoked = request.args.get("revoquee") == "1"
    return render_template("webauthn/manage.html", title="Ma biométrie", credentials=rows, revoked=revoked)


@bp.post("/compte/biometrie/<int:credential>/revoquer")
def revoke(credential: int) -> ResponseReturnValue:
    """Revoke one credential of the signed-in account, then show the list again (303)."""
    session = _browser_session()
    if not service.revoke(session.account_id, credential):
        raise BadRequest("Cet appareil n'est pas ou plus enregistré pour la biométrie.", detail="not revocable")
    return redirect(url_for("webauthn.manage", revoquee="1"), 303)


def _no_store(response: Any) -> Any:
    response.headers["Cache-Control"] = "no-store"
    return response
