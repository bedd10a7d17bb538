"""``idp clients``, ``idp keys`` (DESIGN.md §6) and ``idp tokens purge``."""

from __future__ import annotations

import json
from typing import Any

import click

from idp.cli import emit, json_option, with_app
from idp.oidc.models import AUTH_METHODS, KINDS


@click.group("clients")
def clients_group() -> None:
    """Relying-party clients (options and --metadata-file keys are RFC 7591 / OIDC Registration names)."""


def _json_value(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        raise click.BadParameter("must be JSON", param=param) from None


# (option flags, metadata name, click keyword arguments); multiple=True options give lists.
_METADATA_OPTIONS: list[tuple[tuple[str, ...], str, dict[str, Any]]] = [
    (("--client-name", "--name"), "client_name", {"help": "Name shown to people."}),
    (("--kind",), "kind", {"type": click.Choice(KINDS), "help": "web | mobile | federation (new clients: web)."}),
    (("--redirect-uri", "--redirect-uris"), "redirect_uris", {"multiple": True, "help": "Exact redirect URI (repeat)."}),
    (("--post-logout-redirect-uri", "--post-logout-redirect-uris"), "post_logout_redirect_uris",
     {"multiple": True, "help": "Exact post-logout URI (repeat)."}),
    (("--token-endpoint-auth-method", "--auth-method"), "token_endpoint_auth_method",
     {"type": click.Choice(AUTH_METHODS), "help": "Default: basic for web, none for mobile, post for federation."}),
    (("--grant-type", "--grant-types"), "grant_types",
     {"multiple": True, "help": "authorization_code, refresh_token (repeat; refresh tokens only when registered)."}),
    (("--scope",), "scope", {"help": "Space-separated scopes the client may ask for."}),
    (("--subject-type",), "subject_type", {"help": "pairwise (default) | public."}),
    (("--sector-identifier-uri", "--sector-identifier"), "sector_identifier_uri",
     {"help": "Pairwise sector shared by several clients."}),
    (("--id-token-signed-response-alg", "--id-token-alg"), "id_token_signed_response_alg", {"help": "RS256 | ES256."}),
    (("--id-token-encrypted-response-alg",), "id_token_encrypted_response_alg", {"help": "RSA-OAEP-256 | ECDH-ES."}),
    (("--id-token-encrypted-response-enc",), "id_token_encrypted_response_enc", {"help": "A256GCM | A128CBC-HS256."}),
    (("--userinfo-signed-response-alg",), "userinfo_signed_response_alg", {"help": "RS256 | ES256 (a signed JWT)."}),
    (("--userinfo-encrypted-response-alg",), "userinfo_encrypted_response_alg", {"help": "RSA-OAEP-256 | ECDH-ES."}),
    (("--userinfo-encrypted-response-enc",), "userinfo_encrypted_response_enc", {"help": "A256GCM | A128CBC-HS256."}),
    (("--jwks",), "jwks", {"callback": _json_value, "help": "Client public JWK Set, as JSON."}),
    (("--jwks-file",), "jwks", {"type": click.File(), "help": "Client public JWK Set, from a file."}),
    (("--jwks-uri",), "jwks_uri", {"help": "Where the client publishes its keys (cached, size-limited)."}),
    (("--backchannel-logout-uri",), "backchannel_logout_uri", {}),
    (("--pkce-required/--pkce-optional",), "pkce_required",
     {"default": None, "help": "Confidential clients only: public clients always need PKCE."}),
    (("--require-email-code/--no-email-code",), "require_email_code",
     {"default": None, "help": "Federation clients: security-code step-up."}),
    (("--code-ttl",), "code_ttl", {"type": int, "help": "Authorization code lifetime (s)."}),
    (("--access-token-ttl",), "access_token_ttl", {"type": int, "help": "Access token lifetime (s)."}),
    (("--refresh-token-ttl",), "refresh_token_ttl", {"type": int, "help": "Refresh-token family lifetime (s)."}),
]


def _metadata_options(func: Any) -> Any:
    """Add the metadata options (their values arrive as ``meta_<n>``), ``--metadata-file`` and ``--json``."""
    for index, (flags, _name, extra) in reversed(list(enumerate(_METADATA_OPTIONS))):
        func = click.option(*flags, f"meta_{index}", **extra)(func)
    func = click.option("--metadata-file", type=click.File(), default=None,
                        help="JSON object of client metadata (the options override it).")(func)
    return json_option(func)


def _given_metadata(options: dict[str, Any]) -> dict[str, Any]:
    """The metadata the command line gave: the file's first, then each option actually used."""
    source = options.pop("metadata_file")
    metadata: dict[str, Any] = {}
    if source is not None:
        try:
            loaded = json.load(source)
        except ValueError:
            raise click.BadParameter("must be a JSON object", param_hint="--metadata-file") from None
        if not isinstance(loaded, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--metadata-file")
        metadata.update(loaded)
    for index, (_flags, name, _extra) in enumerate(_METADATA_OPTIONS):
        value = options.pop(f"meta_{index}")
        if value is None or value == ():
            continue
        if hasattr(value, "read"):
            value = _json_value(click.get_current_context(), click.Option(["--jwks-file"]), value.read())
        metadata[name] = list(value) if isinstance(value, tuple) else value
    return metadata


def _client_text(data: dict[str, Any]) -> str:
    return "\n".join(f"{key}: {json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value}"
                     for key, value in data.items())


@clients_group.command("create")
@click.option("--profile", type=click.Choice(["franceconnect", "franceconnect-plus"]), default=None,
              help="A federation client set up the way FranceConnect (v2) or FranceConnect+ registers an IdP.")
@click.option("--client-id", default=None, help="Choose the client_id (default: random).")
@_metadata_options
@with_app
def clients_create(profile: str | None, client_id: str | None, as_json: bool, **options: Any) -> None:
    """Register a client; prints its client_id and (once) its secret."""
    from idp.oidc.clients import ClientRegistrationError, create_client, describe

    try:
        registered = create_client(profile=profile, client_id=client_id, **_given_metadata(options))
    except ClientRegistrationError as exc:
        raise click.UsageError(str(exc)) from None
    data = {**describe(registered.client), "client_secret": registered.client_secret}
    text = f"client_id: {data['client_id']}\nclient_secret: {data['client_secret'] or '(public client)'}"
    emit(data, as_json, text)


@clients_group.command("update")
@click.argument("client_id")
@_metadata_options
@with_app
def clients_update(client_id: str, as_json: bool, **options: Any) -> None:
    """Change a client's metadata (an empty value, e.g. --jwks-uri '', removes an optional setting)."""
    from idp.oidc.clients import ClientRegistrationError, describe, update_client

    metadata = _given_metadata(options)
    if not metadata:
        raise click.UsageError("nothing to change: give at least one metadata option or --metadata-file")
    try:
        client = update_client(client_id, metadata)
    except ClientRegistrationError as exc:
        raise click.UsageError(str(exc)) from None
    data = describe(client)
    emit(data, as_json, _client_text(data))


@clients_group.command("show")
@click.argument("client_id")
@json_option
@with_app
def clients_show(client_id: str, as_json: bool) -> None:
    """A client's registered metadata (never its secret)."""
    from idp.extensions import db
    from idp.oidc.clients import describe
    from idp.oidc.models import Client

    client = db.session.get(Client, client_id)
    if client is None:
        raise click.UsageError(f"no client {client_id!r}")
    data = describe(client)
    emit(data, as_json, _client_text(data))


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


@click.group("tokens")
def tokens_group() -> None:
    """Refresh tokens kept in the database."""


@tokens_group.command("purge")
@json_option
@with_app
def tokens_purge(as_json: bool) -> None:
    """Delete the refresh tokens of the families that expired more than a day ago (run it daily)."""
    from idp import retention

    removed = retention.purge_refresh_tokens()
    emit({"deleted": removed}, as_json, f"{removed} expired refresh token(s) deleted.")
