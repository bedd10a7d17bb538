"""``idp accounts create|show|unlock|reset|disable|enable`` and ``idp terms publish`` (DESIGN.md §6), all with ``--json``.

Operators type NIRs here; the commands print them masked and never log them.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from idp.cli import emit, json_option, with_app


def _fail(message: str, as_json: bool, code: str) -> None:
    emit({"error": code, "message": message}, as_json, f"Error: {message}")
    sys.exit(1)


def _parse_nir(text: str, as_json: bool) -> Any:
    from idp.nir import InvalidNir, Nir

    try:
        return Nir.parse(text)
    except InvalidNir as exc:
        _fail(exc.reason, as_json, "invalid_nir")


def _describe(account: Any) -> dict[str, Any]:
    from idp.accounts import service
    from idp.mfa import limits, trusted_browser

    lock = limits.account_lock(account.id)
    terms = service.pending_terms(account)
    return {"id": account.id, "nir": service.account_nir(account).masked(), "status": account.status,
            "email": account.email, "email_validated": account.email_validated, "phone": account.phone,
            "created_at": account.created_at, "password_changed_at": account.password_changed_at,
            "last_login_at": account.last_login_at, "login_count": account.login_count,
            "locked_until": lock.until if lock.locked else None,
            "pending_terms": terms.version if terms else None,
            "trusted_browsers": len(trusted_browser.list_for(account.id))}


def _text(data: dict[str, Any]) -> str:
    return "\n".join(f"{key}: {'' if value is None else value}" for key, value in data.items())


@click.group("accounts")
def accounts_group() -> None:
    """Accounts: create, show, unlock, reset, disable, enable."""


@accounts_group.command("create")
@click.option("--nir", required=True, help="Numéro de sécurité sociale (13 or 15 characters).")
@click.option("--password", required=True, help="Initial password (the password rules apply).")
@click.option("--email", required=True, help="E-mail address.")
@click.option("--email-validated", is_flag=True, help="Mark the e-mail as already validated.")
@json_option
@with_app
def create(nir: str, password: str, email: str, email_validated: bool, as_json: bool) -> None:
    """Create the account of an identity the registry (RFI) holds; its phone number is copied. A NIR the
    registry does not hold is refused (exit 1): its data decide who can sign in."""
    from idp.accounts import service
    from idp.rfi_adapter import IdentityNotFound, RegistryUnavailable, get_rfi

    parsed = _parse_nir(nir, as_json)
    try:
        phone = get_rfi().lookup(parsed).phone
    except IdentityNotFound:
        _fail("this NIR is not in the identity registry (RFI): no account can be created for it", as_json,
              "identity_not_found")
    except RegistryUnavailable:
        _fail("the identity registry (RFI) is unavailable: try again later", as_json, "registry_unavailable")
    try:
        account = service.create_account(parsed, password, email=email, email_validated=email_validated, phone=phone)
    except service.PasswordRejected as exc:
        _fail(" ".join(exc.reasons), as_json, exc.code)
    except service.AccountExists:
        _fail("an account already exists for this NIR", as_json, "account_exists")
    data = _describe(account)
    emit(data, as_json, f"Account created.\n{_text(data)}")


def _load(nir: str, as_json: bool) -> Any:
    from idp.accounts import service

    account = service.find_account(_parse_nir(nir, as_json))
    if account is None:
        _fail("no account for this NIR", as_json, "not_found")
    return account


@accounts_group.command("show")
@click.argument("nir")
@json_option
@with_app
def show(nir: str, as_json: bool) -> None:
    """Show an account (NIR masked, lock, pending terms)."""
    emit(_describe(_load(nir, as_json)), as_json, _text(_describe(_load(nir, as_json))))


@accounts_group.command("unlock")
@click.argument("nir")
@json_option
@with_app
def unlock(nir: str, as_json: bool) -> None:
    """Clear the password and code locks and the code quota of an account."""
    from idp import audit
    from idp.mfa import limits

    account = _load(nir, as_json)
    limits.unlock_account(account.id)
    audit.record("account.unlocked", account_id=account.id, actor="advisor")
    emit({"id": account.id, "unlocked": True}, as_json, "Account unlocked.")


def _set_status(nir: str, status: str, as_json: bool, done: str) -> None:
    from idp.accounts import service

    account = _load(nir, as_json)
    changed = service.set_status(account, status)
    emit({"id": account.id, "status": account.status, "changed": changed}, as_json,
         done if changed else f"Nothing to do: the account is already {account.status}.")


@accounts_group.command("disable")
@click.argument("nir")
@json_option
@with_app
def disable(nir: str, as_json: bool) -> None:
    """Disable an account at once: it can no longer sign in; its browser sessions, logins in flight, access
    and refresh tokens end now, its biometric credentials and trusted browsers are revoked (``enable`` gives
    nothing back)."""
    _set_status(nir, "disabled", as_json, "Account disabled: its sessions and tokens are revoked.")


@accounts_group.command("enable")
@click.argument("nir")
@json_option
@with_app
def enable(nir: str, as_json: bool) -> None:
    """Enable a disabled account again; the person signs in again (nothing revoked comes back)."""
    _set_status(nir, "active", as_json, "Account enabled.")


@accounts_group.command("reset")
@click.argument("nir")
@click.option("--sms", is_flag=True, help="Then send a provisional code by SMS for the re-creation.")
@json_option
@with_app
def reset(nir: str, sms: bool, as_json: bool) -> None:
    """Advisor reset: delete the account, its credentials, sessions and trusted browsers (audit kept)."""
    from idp.accounts import creation, service

    account = _load(nir, as_json)
    account_id = account.id
    try:
        service.reset_account(account)
    except service.AccountDisabled:
        _fail("this account is disabled: enable it first (idp accounts enable NIR), then reset it", as_json,
              "account_disabled")
    data: dict[str, Any] = {"id": account_id, "reset": True, "sms_sent_to": None}
    if sms:
        try:
            data["sms_sent_to"] = creation.send_provisional_code(_parse_nir(nir, as_json))
        except creation.NoPhone:
            _fail("account reset, but the registry has no mobile number for this person", as_json, "no_phone")
        except creation.PersonSmsLimit as exc:
            until = exc.until.isoformat(timespec="seconds") if exc.until else "later"
            whom = "this person's mobile number (shared with other identities)" if exc.by == "phone" else "this person"
            _fail(f"account reset, but {whom} already received the maximum of provisional codes by SMS "
                  f"(next possible at {until})", as_json, "sms_limit")
    emit(data, as_json, "Account reset." + (f" Provisional code sent by SMS to {data['sms_sent_to']}." if sms else ""))


@click.group("terms")
def terms_group() -> None:
    """Terms of use."""


@terms_group.command("publish")
@click.option("--version", "version", default=None, help="Version label (default: the date and time, UTC).")
@click.option("--title", default="Conditions générales d'utilisation", show_default=True)
@click.option("--body", default=None, help="Text of the terms (or --body-file).")
@click.option("--body-file", type=click.File(encoding="utf-8"), default=None)
@json_option
@with_app
def publish(version: str | None, title: str, body: str | None, body_file: Any, as_json: bool) -> None:
    """Publish a terms version that every account accepts at its next login."""
    from idp.accounts import service
    from idp.errors import BadRequest
    from idp.extensions import clock

    text = body_file.read() if body_file is not None else (body or "Conditions générales d'utilisation du compte ameli.")
    label = version or clock().now().strftime("%Y%m%d-%H%M%S")
    try:
        terms = service.publish_terms(label, title, text)
    except BadRequest as exc:
        _fail(exc.description, as_json, "duplicate_version")
    data = {"id": terms.id, "version": terms.version, "title": terms.title, "published_at": terms.published_at}
    emit(data, as_json, f"Terms {terms.version} published.")
