"""``idp clients`` and ``idp keys`` (DESIGN.md §6)."""

from __future__ import annotations

import json
from typing import Any

import click

from idp.cli import emit, json_option, with_app
from idp.oidc.models import AUTH_METHODS, KINDS


@click.group("clients")
def clients_group() -> None:
    """Relying-party clients."""


@clients_group.command("create")
@click.option("--name", required=True, help="Name shown to people.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True, help="Exact redirect URI (repeat).")
@click.option("--post-logout-redirect-uri", "post_logout_uris", multiple=True, help="Exact post-logout URI (repeat).")
@click.option("--kind", type=click.Choice(KINDS), default="web", show_default=True)
@click.option("--auth-method", type=click.Choice(AUTH_METHODS), default=None,
              help="Token endpoint auth (default: basic for web, none for mobile, post for federation).")
@click.option("--subject-type", type=click.Choice(["pairwise", "public"]), default="pairwise", show_default=True)
@click.option("--sector-identifier", default=None, help="Pairwise sector shared by several clients.")
@click.option("--id-token-alg", type=click.Choice(["RS256", "ES256"]), default=None)
@click.option("--pkce-required/--pkce-optional", default=True, show_default=True,
              help="Confidential clients only: public clients always need PKCE.")
@click.option("--require-email-code/--no-email-code", default=None,
              help="Federation clients: security-code step-up (default on).")
@click.option("--jwks-file", type=click.File(), default=None, help="Client public JWKS (private_key_jwt, encryption).")
@click.option("--jwks-uri", default=None)
@click.option("--backchannel-logout-uri", default=None)
@json_option
@with_app
def clients_create(name: str, redirect_uris: tuple[str, ...], post_logout_uris: tuple[str, ...], kind: str,
                   auth_method: str | None, subject_type: str, sector_identifier: str | None,
                   id_token_alg: str | None, pkce_required: bool, require_email_code: bool | None,
                   jwks_file: Any, jwks_uri: str | None, backchannel_logout_uri: str | None,
                   as_json: bool) -> None:
    """Register a client; prints its client_id and (once) its secret."""
    from idp.oidc.clients import ClientRegistrationError, create_client, describe

    try:
        registered = create_client(
            name=name, kind=kind, redirect_uris=list(redirect_uris), post_logout_redirect_uris=list(post_logout_uris),
            auth_method=auth_method, subject_type=subject_type, sector_identifier=sector_identifier,
            id_token_signed_response_alg=id_token_alg, pkce_required=pkce_required,
            require_email_code=require_email_code, jwks=json.load(jwks_file) if jwks_file else None,
            jwks_uri=jwks_uri, backchannel_logout_uri=backchannel_logout_uri)
    except ClientRegistrationError as exc:
        raise click.UsageError(str(exc)) from None
    data = {**describe(registered.client), "client_secret": registered.client_secret}
    text = f"client_id: {data['client_id']}\nclient_secret: {data['client_secret'] or '(public client)'}"
    emit(data, as_json, text)


@click.group("keys")
def keys_group() -> None:
    """Signing keys: rotate, list."""


def _key_rows() -> list[dict[str, object]]:
    from idp.oidc.keys import describe, list_keys

    return [describe(k) for k in list_keys()]


@keys_group.command("list")
@json_option
@with_app
def keys_list(as_json: bool) -> None:
    """Every signing key with its state (next, current, retired) and whether it is published."""
    rows = _key_rows()
    emit(rows, as_json, "\n".join(f"{r['kid']}  {r['alg']}  {r['state']}  published={r['published']}"
                                  for r in rows) or "no keys")


@keys_group.command("rotate")
@click.option("--alg", type=click.Choice(["RS256", "ES256"]), default=None, help="Only this algorithm.")
@json_option
@with_app
def keys_rotate(alg: str | None, as_json: bool) -> None:
    """The next key starts signing, the current one retires (still published), a new next key is published."""
    from idp.oidc.keys import ensure_keys, list_keys, rotate

    for name in [alg] if alg else ["RS256", "ES256"]:
        if any(k.alg == name for k in list_keys()):
            rotate(name)
        else:  # first run: a current key and a published next key, nothing to retire
            ensure_keys(name)
    rows = _key_rows()
    emit(rows, as_json, "\n".join(f"{r['kid']}  {r['alg']}  {r['state']}  published={r['published']}" for r in rows))
