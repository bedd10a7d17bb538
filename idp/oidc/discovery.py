"""Provider metadata (OIDC Discovery 1.0 §3, RFC 8414, RFC 9207 §3, RP-Initiated Logout §2.1,
Back-Channel Logout §2.1)."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app

from idp.extensions import settings
from idp.login.assurance import reachable_acr_values
from idp.oidc.claims import SUPPORTED_CLAIMS
from idp.oidc.keys import ALGORITHMS
from idp.oidc.models import AUTH_METHODS
from idp.oidc.registration import ENCRYPTION_ALGS, ENCRYPTION_ENCS
from idp.oidc.server import SCOPES


def metadata() -> dict[str, Any]:
    """The discovery document; every URL derives from the issuer."""
    issuer = settings().issuer
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "end_session_endpoint": f"{issuer}/logout",
        "scopes_supported": SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["pairwise", "public"],
        "id_token_signing_alg_values_supported": list(ALGORITHMS),
        "userinfo_signing_alg_values_supported": list(ALGORITHMS),
        "id_token_encryption_alg_values_supported": list(ENCRYPTION_ALGS),
        "id_token_encryption_enc_values_supported": list(ENCRYPTION_ENCS),
        "userinfo_encryption_alg_values_supported": list(ENCRYPTION_ALGS),
        "userinfo_encryption_enc_values_supported": list(ENCRYPTION_ENCS),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [*SUPPORTED_CLAIMS, "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr",
                             "azp", "sid"],
        "claims_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "acr_values_supported": reachable_acr_values(),  # only what a login here can reach
        "prompt_values_supported": ["none", "login", "consent"],
        "ui_locales_supported": ["fr-FR"],
        "claim_types_supported": ["normal"],
        "authorization_response_iss_parameter_supported": True,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
    }


def metadata_bytes() -> bytes:
    """:func:`metadata` serialised once per application (it depends on the settings and the code
    only), then served from memory."""
    found = current_app.extensions.get("idp.discovery_bytes")
    if found is None:
        found = json.dumps(metadata(), separators=(",", ":"), ensure_ascii=False).encode()
        current_app.extensions["idp.discovery_bytes"] = found
    return bytes(found)
