"""Client metadata (RFC 7591 §2, OpenID Connect Dynamic Client Registration 1.0 §2) and client profiles.

Operators give every per-client setting under its registration metadata name (``idp clients
create|update`` options, or a JSON file of metadata); :func:`normalize` checks the values one by one,
then the whole set for consistency, and returns the column values of :class:`~idp.oidc.models.Client`.

Names this provider adds, for what the specifications leave to the provider: ``kind`` (web, mobile,
federation), ``pkce_required`` (confidential clients only: public clients always need PKCE),
``require_email_code`` (federation step-up), ``code_ttl``, ``access_token_ttl``, ``refresh_token_ttl``
(seconds; unset: the settings' default for the kind).

Profiles (:data:`PROFILES`) are metadata presets: ``franceconnect`` and ``franceconnect-plus`` set up a
federation client the way FranceConnect (v2) and FranceConnect+ register an identity provider.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from idp.oidc.models import AUTH_METHODS, KINDS

SIGNING_ALGS = ("RS256", "ES256")  # what the provider holds keys for (idp.oidc.keys.ALGORITHMS)
ENCRYPTION_ALGS = ("RSA-OAEP-256", "ECDH-ES")  # key management (RFC 7518 §4.3, §4.6)
ENCRYPTION_ENCS = ("A256GCM", "A128CBC-HS256")  # content encryption (RFC 7518 §5.3, §5.2.3)
DEFAULT_ENC = "A128CBC-HS256"  # OIDC Registration §2: the default enc when only the alg is registered
GRANT_TYPES = ("authorization_code", "refresh_token")
SCOPE_MAX_LENGTH = 500

# The FranceConnect scopes an identity provider answers (FC's per-claim scopes, plus the grouped ones).
FRANCECONNECT_SCOPE = ("openid profile email birth identite_pivot given_name family_name birthdate gender "
                       "birthplace birthcountry preferred_username")
PROFILES: dict[str, dict[str, Any]] = {
    # FranceConnect v2: confidential client_secret_post without PKCE, signed ID token and userinfo.
    "franceconnect": {
        "kind": "federation", "token_endpoint_auth_method": "client_secret_post",
        "grant_types": ["authorization_code"], "response_types": ["code"], "pkce_required": False,
        "require_email_code": False, "scope": FRANCECONNECT_SCOPE,
        "id_token_signed_response_alg": "RS256", "userinfo_signed_response_alg": "RS256",
    },
    # FranceConnect+: the same, plus ES256 signatures and ID token and userinfo encrypted to FC+'s keys.
    "franceconnect-plus": {
        "kind": "federation", "token_endpoint_auth_method": "client_secret_post",
        "grant_types": ["authorization_code"], "response_types": ["code"], "pkce_required": False,
        "require_email_code": False, "scope": FRANCECONNECT_SCOPE,
        "id_token_signed_response_alg": "ES256", "userinfo_signed_response_alg": "ES256",
        "id_token_encrypted_response_alg": "RSA-OAEP-256", "id_token_encrypted_response_enc": "A256GCM",
        "userinfo_encrypted_response_alg": "RSA-OAEP-256", "userinfo_encrypted_response_enc": "A256GCM",
    },
}


class ClientRegistrationError(ValueError):
    """The requested client metadata is inconsistent; the message says why (English, for operators)."""


def check_uri(uri: Any, what: str, *, production: bool) -> str:
    """An absolute URI without fragment; https outside loopback in production."""
    if not isinstance(uri, str):
        raise ClientRegistrationError(f"{what} must be a string: {uri!r}")
    parts = urlsplit(uri)
    if not parts.scheme or parts.fragment or (parts.scheme in ("http", "https") and not parts.netloc):
        raise ClientRegistrationError(f"{what} must be an absolute URI without fragment: {uri!r}")
    if parts.scheme == "http" and production and parts.hostname not in ("127.0.0.1", "localhost"):
        raise ClientRegistrationError(f"{what} must use https in production: {uri!r}")
    return uri


def _one_of(choices: tuple[str, ...]) -> Callable[[str, Any, bool], Any]:
    def check(name: str, value: Any, _production: bool) -> Any:
        if value not in choices:
            raise ClientRegistrationError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return value
    return check


def _optional(check: Callable[[str, Any, bool], Any]) -> Callable[[str, Any, bool], Any]:
    """``None`` or "" unsets the value (``update`` can remove a setting)."""
    return lambda name, value, production: None if value in (None, "") else check(name, value, production)


def _uri_list(name: str, value: Any, production: bool) -> list[str]:
    if not isinstance(value, list | tuple):
        raise ClientRegistrationError(f"{name} must be a list of URIs")
    return [check_uri(uri, name, production=production) for uri in value]


def _uri(name: str, value: Any, production: bool) -> str:
    return check_uri(value, name, production=production)


def _boolean(name: str, value: Any, _production: bool) -> bool:
    if not isinstance(value, bool):
        raise ClientRegistrationError(f"{name} must be true or false, not {value!r}")
    return value


def _seconds(name: str, value: Any, _production: bool) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 366 * 86400:
        raise ClientRegistrationError(f"{name} must be a number of seconds between 1 and 31622400, not {value!r}")
    return value


def _text(limit: int) -> Callable[[str, Any, bool], str]:
    def check(name: str, value: Any, _production: bool) -> str:
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            raise ClientRegistrationError(f"{name} must be a non-empty string of at most {limit} characters")
        return value
    return check


def _grant_types(name: str, value: Any, _production: bool) -> list[str]:
    if not isinstance(value, list | tuple) or any(g not in GRANT_TYPES for g in value):
        raise ClientRegistrationError(f"{name} must be a list of {', '.join(GRANT_TYPES)} (no implicit or password)")
    if "authorization_code" not in value:
        raise ClientRegistrationError(f"{name} must include authorization_code (the only flow here)")
    return list(dict.fromkeys(value))


def _response_types(name: str, value: Any, _production: bool) -> list[str]:
    if list(value or []) != ["code"]:
        raise ClientRegistrationError(f"{name} must be [\"code\"] (authorization code flow only)")
    return ["code"]


def _jwks(name: str, value: Any, _production: bool) -> dict[str, Any]:
    """A JWK Set of public keys only (a private member would be a leaked client key)."""
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list) or not value["keys"]:
        raise ClientRegistrationError(f"{name} must be a JWK Set: {{\"keys\": [...]}} with at least one key")
    private = ("d", "p", "q", "dp", "dq", "qi", "k")
    if any(not isinstance(k, dict) or any(m in k for m in private) for k in value["keys"]):
        raise ClientRegistrationError(f"{name} must hold public keys only (no private or symmetric key)")
    try:
        KeySet.import_key_set(value)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ClientRegistrationError(f"{name} is not a valid JWK Set: {exc}") from None
    return value


def _scope(name: str, value: Any, _production: bool) -> str:
    if not isinstance(value, str) or len(value) > SCOPE_MAX_LENGTH or "openid" not in value.split():
        raise ClientRegistrationError(f"{name} must be space-separated scopes including openid "
                                      f"(at most {SCOPE_MAX_LENGTH} characters)")
    return " ".join(dict.fromkeys(value.split()))


# metadata name -> (column, check). Column None: accepted and checked, not stored (fixed here).
FIELDS: dict[str, tuple[str | None, Callable[[str, Any, bool], Any]]] = {
    "client_name": ("name", _text(200)),
    "kind": ("kind", _one_of(KINDS)),
    "redirect_uris": ("redirect_uris", _uri_list),
    "post_logout_redirect_uris": ("post_logout_redirect_uris", _uri_list),
    "token_endpoint_auth_method": ("token_endpoint_auth_method", _one_of(AUTH_METHODS)),
    "grant_types": ("grant_types", _grant_types),
    "response_types": (None, _response_types),
    "scope": ("scope", _scope),
    "subject_type": ("subject_type", _one_of(("pairwise", "public"))),
    "sector_identifier_uri": ("sector_identifier", _optional(_uri)),
    "id_token_signed_response_alg": ("id_token_signed_response_alg", _optional(_one_of(SIGNING_ALGS))),
    "id_token_encrypted_response_alg": ("id_token_encrypted_response_alg", _optional(_one_of(ENCRYPTION_ALGS))),
    "id_token_encrypted_response_enc": ("id_token_encrypted_response_enc", _optional(_one_of(ENCRYPTION_ENCS))),
    "userinfo_signed_response_alg": ("userinfo_signed_response_alg", _optional(_one_of(SIGNING_ALGS))),
    "userinfo_encrypted_response_alg": ("userinfo_encrypted_response_alg", _optional(_one_of(ENCRYPTION_ALGS))),
    "userinfo_encrypted_response_enc": ("userinfo_encrypted_response_enc", _optional(_one_of(ENCRYPTION_ENCS))),
    "jwks": ("jwks", _optional(_jwks)),
    "jwks_uri": ("jwks_uri", _optional(_uri)),
    "backchannel_logout_uri": ("backchannel_logout_uri", _optional(_uri)),
    "pkce_required": ("pkce_required", _boolean),
    "require_email_code": ("require_email_code", _boolean),
    "code_ttl": ("code_ttl", _optional(_seconds)),
    "access_token_ttl": ("access_token_ttl", _optional(_seconds)),
    "refresh_token_ttl": ("refresh_token_ttl", _optional(_seconds)),
}
ALIASES = {"name": "client_name", "sector_identifier": "sector_identifier_uri"}  # column names accepted too
COLUMN_TO_NAME = {column: name for name, (column, _check) in FIELDS.items() if column}


def profile(name: str) -> dict[str, Any]:
    """The metadata preset of a profile."""
    if name not in PROFILES:
        raise ClientRegistrationError(f"profile must be one of {', '.join(PROFILES)}")
    return dict(PROFILES[name])


def kind_defaults(kind: str) -> dict[str, Any]:
    """What a new client of ``kind`` gets unless its metadata says otherwise (DESIGN.md §4)."""
    defaults: dict[str, Any] = {
        "token_endpoint_auth_method": {"web": "client_secret_basic", "mobile": "none"}.get(kind, "client_secret_post"),
        "grant_types": ["authorization_code"] if kind == "federation" else ["authorization_code", "refresh_token"],
        "pkce_required": True, "require_email_code": kind != "mobile", "subject_type": "pairwise",
        "scope": "openid profile email birth identite_pivot offline_access",
    }
    if kind == "federation":
        defaults["scope"] = FRANCECONNECT_SCOPE
    return defaults


def columns(metadata: dict[str, Any], *, production: bool) -> dict[str, Any]:
    """Each given metadata value checked and turned into its column (unknown names are an error)."""
    result: dict[str, Any] = {}
    for given, value in metadata.items():
        name = ALIASES.get(given, given)
        if name not in FIELDS:
            raise ClientRegistrationError(f"unknown client metadata {given!r} (known: {', '.join(sorted(FIELDS))})")
        column, check = FIELDS[name]
        checked = check(name, value, production)
        if column is not None:
            result[column] = checked
    return result


def check_consistency(values: dict[str, Any]) -> dict[str, Any]:
    """Rules between fields, on the full set of column values (a new client's, or an updated one's)."""
    method = values["token_endpoint_auth_method"]
    if not values.get("redirect_uris"):
        raise ClientRegistrationError("at least one redirect URI is required (redirect_uris)")
    if values.get("jwks") and values.get("jwks_uri"):
        raise ClientRegistrationError("jwks and jwks_uri must not both be registered (RFC 7591 §2)")
    has_keys = bool(values.get("jwks") or values.get("jwks_uri"))
    if method == "private_key_jwt" and not has_keys:
        raise ClientRegistrationError("private_key_jwt needs the client's jwks or jwks_uri")
    for target in ("id_token", "userinfo"):
        alg, enc = f"{target}_encrypted_response_alg", f"{target}_encrypted_response_enc"
        if values.get(enc) and not values.get(alg):
            raise ClientRegistrationError(f"{enc} needs {alg}")
        if values.get(alg):
            if not has_keys:
                raise ClientRegistrationError(f"{alg} needs the client's encryption keys (jwks or jwks_uri)")
            values[enc] = values.get(enc) or DEFAULT_ENC
            _check_encryption_key(values.get("jwks"), values[alg], alg)
    if method == "none":
        values["pkce_required"] = True  # public clients: always (RFC 9700 §2.1.1)
    if values.get("kind") == "mobile" and method != "none":
        raise ClientRegistrationError("mobile clients are public: token_endpoint_auth_method must be none")
    return values


def _check_encryption_key(jwks: dict[str, Any] | None, alg: str, what: str) -> None:
    """An inline JWKS must hold a key usable with ``alg`` (jwks_uri is checked when used)."""
    if not jwks:
        return
    wanted = "RSA" if alg.startswith("RSA") else "EC"
    usable = [k for k in jwks["keys"] if k.get("kty") == wanted and k.get("use", "enc") == "enc"
              and k.get("alg") in (None, alg)]
    if not usable:
        raise ClientRegistrationError(f"{what}={alg} needs an {wanted} encryption key (use enc) in jwks")


def metadata_view(values: dict[str, Any]) -> dict[str, Any]:
    """Column values shown under their metadata names (``idp clients show``)."""
    return {COLUMN_TO_NAME[column]: value for column, value in values.items() if column in COLUMN_TO_NAME}
