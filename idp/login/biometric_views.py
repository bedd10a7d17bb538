"""Pages and JSON endpoints of the biometric (WebAuthn platform credential) journey, in the login area.

- ``/biometrie/proposition``: the offer at the end of a login ("Activer la biométrie", "Plus tard",
  "Ne plus me rappeler"), with help on enabling fingerprint or face in the phone's settings;
- ``/biometrie/activation/options`` and ``/verifier``: the registration ceremony (JSON), open only while
  the offer page of a real login is shown (:func:`idp.login.policy.activation_open`);
- ``/connexion/biometrie/options`` and ``/verifier``: the sign-in ceremony used by the "Se connecter avec la
  biométrie" button of the login page (JSON); the factor is recorded by :mod:`idp.login.assurance`;
- ``/compte/biometrie``: the account's credentials (needs a live browser session), with revocation and
  activation on this device (``/compte/biometrie/activation/options`` and ``/verifier``), which also need the
  security page's fresh re-authentication (:func:`idp.accounts.security.reauthenticated`): like every change
  reachable from a person's pages, whatever the session's age (a stolen session cookie alone enrols no
  authenticator). A credential activated there carries the level the session's login proved, and only a
  login that proved the password activates one (a credential never renews itself).

Views stay thin: they find the interaction or session, call :mod:`idp.webauthn.service` (domain code, which
knows nothing of logins) and answer. JSON endpoints are protected by the CSRF token in ``X-CSRFToken``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Blueprint, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from idp.accounts import service as accounts
from idp.clock import paris_display, timestamp
from idp.errors import BadRequest, IdpError, wants_json
from idp.extensions import clock, db
from idp.login import assurance, cookies, policy
from idp.login import service as login_service
from idp.login.interaction import Interaction, InteractionExpired, Offer, interactions
from idp.login.sessions import BrowserSession, sessions
from idp.login.views import refuse_for_registry
from idp.webauthn import service
from idp.webauthn.models import as_utc

if TYPE_CHECKING:
    from idp.accounts.models import Account

bp = Blueprint("biometric", __name__)


class ReauthenticationRequired(IdpError):
    """Activating biometrics from the account page needs the e-mail code of the security page first."""

    code = "reauthentication_required"
    status = 403
    title = "Confirmation requise"
    description = ("Pour votre sécurité, confirmez d'abord votre identité avec le code de sécurité envoyé par "
                   "e-mail, puis activez la biométrie.")


class PasswordRequired(IdpError):
    """The session's login did not prove the password (a biometric sign-in): it activates no new credential,
    or biometrics would renew themselves without the password ever being asked again."""

    code = "password_required"
    status = 403
    title = "Connexion avec le mot de passe requise"
    description = ("Pour activer la biométrie sur cet appareil, connectez-vous avec votre numéro de sécurité "
                   "sociale et votre mot de passe, puis revenez sur cette page.")


class SessionRequired(IdpError):
    """The management page needs a signed-in browser."""

    code = "login_required"
    status = 401
    title = "Authentification requise"
    description = "Vous devez être connecté à votre compte ameli pour gérer votre biométrie."


# --- helpers ---------------------------------------------------------------------------------
def _account_of(interaction: Interaction) -> Account | None:
    from idp.accounts.models import Account

    return db.session.get(Account, interaction.account_id) if interaction.account_id else None


def _activation() -> tuple[Interaction, Account]:
    """The interaction whose offer page is open, with its account; anything else is refused."""
    interaction = cookies.live_interaction()
    account = _account_of(interaction)
    if account is None or not policy.activation_open(interaction, account):
        raise InteractionExpired(detail="activation outside the offer step of an authenticated login")
    return interaction, account


def ceremony_of(interaction: Interaction, account_id: str | None = None) -> service.Ceremony:
    """The WebAuthn ceremony context of a login."""
    return service.Ceremony(binding=interaction.id, client_id=interaction.client_id,
                            for_web=interaction.client_kind != "mobile",
                            account_id=account_id or interaction.account_id)


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest(detail="JSON object expected")
    return body


def _continue_url() -> str:
    return url_for("login.next")


def _browser_session() -> BrowserSession:
    session = sessions.get(cookies.read(cookies.SESSION))
    if session is None:
        raise SessionRequired(detail="no browser session")
    return session


def _account_session() -> tuple[BrowserSession, Account]:
    """The browser session of an account that may still sign in (the management pages), with the account: a
    session a disabling missed (a login finishing while it ran) opens nothing."""
    session = _browser_session()
    account = _account_of_id(session.account_id)
    if account is None:
        raise SessionRequired(detail="account missing or disabled")
    return session, account


def _no_store(response: Any) -> Any:
    response.headers["Cache-Control"] = "no-store"
    return response


# --- the offer -------------------------------------------------------------------------------
@bp.route("/biometrie/proposition", methods=["GET", "POST"])
def offer() -> ResponseReturnValue:
    """The biometric offer; POST records "Plus tard" or "Ne plus me rappeler" and continues. Outside the
    offer step (a login reset by a password change, one filled from a session...) the policy's page instead."""
    interaction = cookies.live_interaction()
    account = _account_of(interaction)
    if account is None or not policy.activation_open(interaction, account):
        return redirect(_continue_url(), 303)
    if request.method == "POST":
        choice = request.form.get("choice", "")
        if choice not in ("later", "never"):
            raise BadRequest(detail="unknown offer choice")
        if choice == "never":
            service.opt_out(account, client_id=interaction.client_id)
        interaction.offer = Offer.NEVER if choice == "never" else Offer.LATER
        interactions.save(interaction)
        return redirect(_continue_url(), 303)
    return render_template("webauthn/offer.html", title="Activer la biométrie", months=service.expiry_months())


@bp.post("/biometrie/activation/options")
def activation_options() -> ResponseReturnValue:
    """Registration options for ``navigator.credentials.create()`` (JSON)."""
    interaction, account = _activation()
    two_factor = assurance.may_activate_two_factor_credential(interaction.proof)
    options = service.start_registration(ceremony=ceremony_of(interaction), account=account, two_factor=two_factor)
    return _no_store(jsonify(publicKey=options))


@bp.post("/biometrie/activation/verifier")
def activation_verify() -> ResponseReturnValue:
    """Verify the new credential, store it with this login's level, and continue (JSON ``{"redirect": ...}``)."""
    interaction, account = _activation()
    factors, acr = assurance.activation_level(interaction.proof)
    service.finish_registration(ceremony=ceremony_of(interaction), account=account, response=_json_body(),
                                device_label=service.describe_device(request.user_agent.string or ""),
                                activation_factors=factors, activation_acr=acr)
    interaction.offer = Offer.ACTIVATED
    interactions.save(interaction)
    return _no_store(jsonify(redirect=_continue_url()))


# --- sign-in ---------------------------------------------------------------------------------
@bp.post("/connexion/biometrie/options")
def sign_in_options() -> ResponseReturnValue:
    """Authentication options for ``navigator.credentials.get()`` (JSON).

    The account's credentials are listed when it is known (password already given, or a
    remembered NIR); otherwise the browser offers the discoverable credentials of this site."""
    interaction = cookies.live_interaction()
    account_id = interaction.account_id or _remembered_account_id()
    options = service.start_authentication(ceremony=ceremony_of(interaction), account_id=account_id)
    return _no_store(jsonify(publicKey=options))


@bp.post("/connexion/biometrie/verifier")
def sign_in_verify() -> ResponseReturnValue:
    """Verify the assertion; on success the login records a platform-credential factor worth what the
    credential's activation login proved."""
    interaction = cookies.live_interaction()
    credential = service.verify_sign_in(ceremony=ceremony_of(interaction), response=_json_body())
    factor = assurance.platform_factor(timestamp(clock().now()), activation_factors=credential.activation_factors,
                                       activation_acr=credential.activation_acr)
    if interaction.account_id == credential.account_id and interaction.proof.factors:
        interaction.proof.add(factor)  # the second factor after the password (web, federation)
    else:
        account = _account_of_id(credential.account_id)
        if account is None:
            raise service.BiometricRefused(detail="account missing or disabled")
        # As after the password: the registry decides whether this person may still sign in.
        registry = login_service.ask_registry(accounts.account_nir(account))
        if registry is not login_service.Registry.FOUND:
            refuse_for_registry(login_service.registry_refusal(interaction, account, registry))
        login_service.start_for(interaction, account, factor)  # the app: the credential replaces the password
    # As after the password: a new interaction id, so that an id planted or seen before is worthless.
    interactions.rotate(interaction)
    response = _no_store(jsonify(redirect=_continue_url()))
    cookies.set_interaction(response, interaction)
    return response


def _account_of_id(account_id: str) -> Account | None:
    from idp.accounts.models import Account

    account = db.session.get(Account, account_id)
    return account if account is not None and account.is_active else None


def _remembered_account_id() -> str | None:
    """The account of the NIR remembered by "Mémoriser mon numéro"."""
    from idp.accounts.service import find_account

    nir = cookies.remembered_nir()
    account = find_account(nir) if nir is not None else None
    return account.id if account is not None and account.is_active else None


# --- management ------------------------------------------------------------------------------
@bp.get("/compte/biometrie")
def manage() -> ResponseReturnValue:
    """The account's credentials: device, activation, last use, expiry; each can be revoked."""
    session, _ = _account_session()
    now = clock().now()
    rows = [{"id": c.id, "device": c.device_label, "created": paris_display(as_utc(c.created_at)),
             "last_used": paris_display(as_utc(c.last_used_at)) if c.last_used_at else "jamais",
             "expires": paris_display(as_utc(c.expires_at)), "expired": not c.usable_at(now)}
            for c in service.list_credentials(session.account_id)]
    revoked, activated = request.args.get("revoquee") == "1", request.args.get("activee") == "1"
    from idp.accounts import security

    return render_template("webauthn/manage.html", title="Ma biométrie", credentials=rows, revoked=revoked,
                           activated=activated, fresh=security.reauthenticated(session),
                           months=service.expiry_months(), with_password=session.proof.has(assurance.Method.PASSWORD))


ACCOUNT_PAGE = "compte"  # the ceremony's client in audit events: the person's own page, no relying party


def _account_activation() -> tuple[BrowserSession, Account, service.Ceremony]:
    """The signed-in account, re-authenticated in this very session, and its ceremony (bound to the session)."""
    from idp.accounts import security

    session, account = _account_session()
    if not session.proof.has(assurance.Method.PASSWORD):
        raise PasswordRequired(detail="activation from a session whose login did not prove the password")
    if not security.reauthenticated(session):
        security.change_refused(session, "webauthn.activate")
        raise ReauthenticationRequired(detail="activation from the account page without a fresh code")
    ceremony = service.Ceremony(binding="account:" + security.session_handle(session), client_id=ACCOUNT_PAGE,
                                for_web=True, account_id=account.id)
    return session, account, ceremony


def _reauth_first(view: Callable[[], ResponseReturnValue]) -> Callable[[], ResponseReturnValue]:
    """Without the fresh code, a page request (not webauthn.js's JSON) goes to the code page like every other
    change of the person's pages; webauthn.js gets the JSON error and shows its French description."""

    @functools.wraps(view)
    def wrapper() -> ResponseReturnValue:
        try:
            return view()
        except ReauthenticationRequired:
            if wants_json():
                raise
            return redirect(url_for("security.verify", suite="biometrie"), 303)

    return wrapper


@bp.post("/compte/biometrie/activation/options")
@_reauth_first
def account_activation_options() -> ResponseReturnValue:
    """Registration options for ``navigator.credentials.create()`` on the account page (JSON)."""
    session, account, ceremony = _account_activation()
    two_factor = assurance.may_activate_two_factor_credential(session.proof)
    return _no_store(jsonify(publicKey=service.start_registration(ceremony=ceremony, account=account,
                                                                  two_factor=two_factor)))


@bp.post("/compte/biometrie/activation/verifier")
@_reauth_first
def account_activation_verify() -> ResponseReturnValue:
    """Verify and store the credential with the level of the session's login, then show the list again."""
    session, account, ceremony = _account_activation()
    factors, acr = assurance.activation_level(session.proof)
    service.finish_registration(ceremony=ceremony, account=account, response=_json_body(),
                                device_label=service.describe_device(request.user_agent.string or ""),
                                activation_factors=factors, activation_acr=acr)
    return _no_store(jsonify(redirect=url_for("biometric.manage", activee="1")))


@bp.post("/compte/biometrie/<int:credential>/revoquer")
def revoke(credential: int) -> ResponseReturnValue:
    """Revoke one credential of the signed-in account, then show the list again (303). Without a fresh
    re-authentication code in this session, the browser goes to the code page first (nothing changes)."""
    from idp.accounts import security

    session, _ = _account_session()
    if not security.reauthenticated(session):
        security.change_refused(session, "webauthn.revoke")
        return redirect(url_for("security.verify", suite="biometrie"), 303)
    if not service.revoke(session.account_id, credential):
        raise BadRequest("Cet appareil n'est pas ou plus enregistré pour la biométrie.", detail="not revocable")
    return redirect(url_for("biometric.manage", revoquee="1"), 303)
