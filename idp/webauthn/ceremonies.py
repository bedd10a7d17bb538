"""WebAuthn ceremonies on py_webauthn, as typed keyword-only results.

W3C Web Authentication Level 2: §7.1 "Registering a New Credential" and §7.2 "Verifying an
Authentication Assertion" (anchor: duo-labs/py_webauthn ``verify_authentication_response.py``).

This module holds no state and imports no Flask: callers pass the RP ID, the origin and the
challenge they kept server-side. Policy for this identity provider:

- platform authenticators only (fingerprint or face of the phone), resident key required so that
  the login page can offer a discoverable-credential sign-in without asking for the NIR;
- user verification REQUIRED on both ceremonies (``require_user_verification=True``): a credential
  that only proves presence is not a second factor;
- attestation "none" by default; ``require_attestation`` asks for "direct" attestation and refuses
  "none", self attestation and chains that do not lead to a trusted root.

The signature counter is NOT compared here: py_webauthn would refuse a regression before saying
whether the signature was valid. :mod:`idp.webauthn.service` compares it after a valid signature,
so that only a genuine clone (same key, older counter) is audited as one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    options_to_json,
    parse_attestation_object,
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AttestationFormat,
    AuthenticatorAttachment,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

# ES256 first (every platform authenticator), RS256 for Windows Hello; EdDSA is rare on platforms.
SUPPORTED_ALGS = [
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
    COSEAlgorithmIdentifier.EDDSA,
]
# Formats whose chain py_webauthn checks against vendor roots it ships (Apple, Google).
_FORMATS_WITH_BUILTIN_ROOTS = frozenset({AttestationFormat.APPLE, AttestationFormat.ANDROID_KEY,
                                         AttestationFormat.ANDROID_SAFETYNET})


class CeremonyError(Exception):
    """The response does not prove what it should; ``reason`` is internal (English, for logs)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class CredentialRef:
    """A stored credential as named in allowCredentials / excludeCredentials."""

    credential_id: str  # base64url
    transports: Sequence[str] = ()


@dataclass(frozen=True, kw_only=True)
class CeremonyOptions:
    """Options for ``navigator.credentials.create()`` or ``.get()`` and the challenge to keep."""

    public_key: dict[str, Any]  # JSON-ready (base64url strings), as py_webauthn's options_to_json
    challenge: bytes


@dataclass(frozen=True, kw_only=True)
class RegisteredCredential:
    """What a verified registration gives us to store."""

    credential_id: str  # base64url
    public_key: bytes
    sign_count: int
    backup_eligible: bool
    backup_state: bool
    transports: list[str]
    aaguid: str
    attestation_format: str
    user_verified: bool


@dataclass(frozen=True, kw_only=True)
class VerifiedAssertion:
    """What a verified authentication assertion proves (signature, origin, RP ID, challenge, UV)."""

    credential_id: str  # base64url
    sign_count: int
    backup_eligible: bool
    backup_state: bool
    user_verified: bool


def _descriptors(refs: Sequence[CredentialRef]) -> list[PublicKeyCredentialDescriptor]:
    descriptors = []
    for ref in refs:
        transports = [AuthenticatorTransport(t) for t in ref.transports
                      if t in AuthenticatorTransport._value2member_map_]
        descriptors.append(PublicKeyCredentialDescriptor(id=base64url_to_bytes(ref.credential_id),
                                                         transports=transports or None))
    return descriptors


def registration_options(*, rp_id: str, rp_name: str, user_handle: bytes, user_name: str, display_name: str,
                         exclude: Sequence[CredentialRef] = (), require_attestation: bool = False,
                         timeout_ms: int = 120_000, platform_only: bool = True) -> CeremonyOptions:
    """Options for a platform, resident, user-verified credential (WebAuthn L2 §5.4).

    ``exclude`` lists the account's credentials so that the same phone is not registered twice
    (excludeCredentials); ``user_handle`` must not be personal data (we use the opaque account id).
    ``platform_only=False`` (staff: a security key or a platform credential) lifts the attachment and the
    resident-key requirement (the account is known before the key is asked); user verification stays required."""
    options = generate_registration_options(
        rp_id=rp_id, rp_name=rp_name, user_id=user_handle, user_name=user_name, user_display_name=display_name,
        timeout=timeout_ms,
        attestation=(AttestationConveyancePreference.DIRECT if require_attestation
                     else AttestationConveyancePreference.NONE),
        authenticator_selection=AuthenticatorSelectionCriteria(
            authenticator_attachment=AuthenticatorAttachment.PLATFORM if platform_only else None,
            resident_key=ResidentKeyRequirement.REQUIRED if platform_only else ResidentKeyRequirement.DISCOURAGED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=_descriptors(exclude),
        supported_pub_key_algs=SUPPORTED_ALGS,
    )
    return CeremonyOptions(public_key=json.loads(options_to_json(options)), challenge=options.challenge)


def verify_registration(*, response: Mapping[str, Any] | str, challenge: bytes, rp_id: str, origin: str,
                        require_attestation: bool = False,
                        attestation_roots: Sequence[bytes] = ()) -> RegisteredCredential:
    """Verify ``navigator.credentials.create()``'s answer (WebAuthn L2 §7.1); raise CeremonyError."""
    try:
        credential = parse_registration_credential_json(_as_json(response))
        verified = verify_registration_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=rp_id, expected_origin=origin,
            require_user_presence=True, require_user_verification=True, supported_pub_key_algs=SUPPORTED_ALGS,
            pem_root_certs_bytes_by_fmt={fmt: list(attestation_roots) for fmt in AttestationFormat}
            if attestation_roots else None,
        )
        if require_attestation:
            _check_trusted_attestation(verified.attestation_object, bool(attestation_roots))
    except WebAuthnException as exc:
        raise CeremonyError(f"registration refused: {exc}") from exc
    except (ValueError, TypeError, KeyError) as exc:  # malformed base64 or structure
        raise CeremonyError(f"registration malformed: {type(exc).__name__}") from exc
    transports = [t.value for t in (credential.response.transports or [])]
    return RegisteredCredential(
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        backup_state=verified.credential_backed_up,
        transports=transports,
        aaguid=verified.aaguid,
        attestation_format=_format_name(verified.fmt),
        user_verified=verified.user_verified,
    )


def _check_trusted_attestation(attestation_object: bytes, have_roots: bool) -> None:
    """Trusted attestation: a certificate chain (no "none", no self attestation) that reaches a root."""
    parsed = parse_attestation_object(attestation_object)
    if parsed.fmt == AttestationFormat.NONE:
        raise CeremonyError("attestation required but the authenticator sent none")
    if not parsed.att_stmt.x5c:
        raise CeremonyError("attestation required but the authenticator used self attestation")
    if not have_roots and parsed.fmt not in _FORMATS_WITH_BUILTIN_ROOTS:
        # Without configured roots py_webauthn accepts any chain for these formats: not trusted.
        raise CeremonyError(f"no trusted root configured for {_format_name(parsed.fmt)} attestation")


def _format_name(fmt: AttestationFormat | str) -> str:
    """py_webauthn gives the format as its enum or, after CBOR parsing, as the plain string."""
    return fmt.value if isinstance(fmt, AttestationFormat) else str(fmt)


def authentication_options(*, rp_id: str, allow: Sequence[CredentialRef] = (),
                           timeout_ms: int = 120_000) -> CeremonyOptions:
    """Options for ``navigator.credentials.get()``; an empty ``allow`` asks for a discoverable credential."""
    options = generate_authentication_options(rp_id=rp_id, timeout=timeout_ms, allow_credentials=_descriptors(allow),
                                              user_verification=UserVerificationRequirement.REQUIRED)
    return CeremonyOptions(public_key=json.loads(options_to_json(options)), challenge=options.challenge)


def credential_id_of(response: Mapping[str, Any] | str) -> str:
    """The credential id a response claims (untrusted: only to find the stored public key)."""
    try:
        credential = parse_authentication_credential_json(_as_json(response))
    except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
        raise CeremonyError(f"assertion malformed: {type(exc).__name__}") from exc
    return bytes_to_base64url(credential.raw_id)


def verify_authentication(*, response: Mapping[str, Any] | str, challenge: bytes, rp_id: str, origin: str,
                          public_key: bytes) -> VerifiedAssertion:
    """Verify ``navigator.credentials.get()``'s answer (WebAuthn L2 §7.2) with UV required.

    The counter is checked by the caller (see the module docstring), hence a current count of 0."""
    try:
        verified = verify_authentication_response(
            credential=_as_json(response), expected_challenge=challenge, expected_rp_id=rp_id,
            expected_origin=origin, credential_public_key=public_key, credential_current_sign_count=0,
            require_user_verification=True,
        )
    except WebAuthnException as exc:
        raise CeremonyError(f"assertion refused: {exc}") from exc
    except (ValueError, TypeError, KeyError) as exc:
        raise CeremonyError(f"assertion malformed: {type(exc).__name__}") from exc
    return VerifiedAssertion(
        credential_id=bytes_to_base64url(verified.credential_id),
        sign_count=verified.new_sign_count,
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        backup_state=verified.credential_backed_up,
        user_verified=verified.user_verified,
    )


def _as_json(response: Mapping[str, Any] | str) -> str | dict[str, Any]:
    """py_webauthn takes a JSON string or a plain dict."""
    return response if isinstance(response, str) else dict(response)
