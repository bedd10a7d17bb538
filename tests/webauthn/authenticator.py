"""A small software platform authenticator, to record realistic WebAuthn JSON for the unit tests.

It builds what a phone's authenticator and browser would send (W3C WebAuthn L2 §6.1 authenticator
data, §6.5 attestation object with the "none" format, §5.8.1 clientDataJSON) with an EC P-256 key
(COSE alg -7), CBOR from cbor2 and the flags UP, UV, BE, BS, AT set as asked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64url(data: bytes) -> str:
    """base64url without padding, as WebAuthn JSON uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    """Inverse of :func:`b64url`."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftAuthenticator:
    """One credential on a pretend phone: its key, id, counter and backup flags."""

    rp_id: str = "localhost"
    origin: str = "http://localhost"
    backup_eligible: bool = False
    backup_state: bool = False
    sign_count: int = 0
    aaguid: bytes = field(default_factory=lambda: bytes.fromhex("adce000235bcc60a648b0b25f1f05503"))
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    user_handle: bytes = b""
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    # --- keys ----------------------------------------------------------------------------
    def cose_public_key(self) -> bytes:
        """The credential public key as a COSE_Key (EC2, P-256, ES256)."""
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def private_pem(self) -> str:
        """The private key (PKCS#8 PEM), to record a fixture that later assertions can reuse."""
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()

    @classmethod
    def from_pem(cls, pem: str, credential_id: bytes, **kwargs: Any) -> SoftAuthenticator:
        """Restore a recorded authenticator."""
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cls(key=key, credential_id=credential_id, **kwargs)

    # --- pieces --------------------------------------------------------------------------
    def _flags(self, *, up: bool, uv: bool, be: bool | None, bs: bool | None, attested: bool) -> int:
        flags = (UP if up else 0) | (UV if uv else 0)
        flags |= BE if (self.backup_eligible if be is None else be) else 0
        flags |= BS if (self.backup_state if bs is None else bs) else 0
        return flags | (AT if attested else 0)

    def authenticator_data(self, *, rp_id: str | None = None, up: bool = True, uv: bool = True,
                           be: bool | None = None, bs: bool | None = None, attested: bool = False,
                           sign_count: int | None = None) -> bytes:
        """rpIdHash || flags || signCount || [attestedCredentialData] (WebAuthn L2 §6.1)."""
        data = hashlib.sha256((rp_id or self.rp_id).encode()).digest()
        data += bytes([self._flags(up=up, uv=uv, be=be, bs=bs, attested=attested)])
        data += (self.sign_count if sign_count is None else sign_count).to_bytes(4, "big")
        if attested:
            data += self.aaguid + len(self.credential_id).to_bytes(2, "big") + self.credential_id
            data += self.cose_public_key()
        return data

    def client_data(self, kind: str, challenge: bytes, *, origin: str | None = None) -> bytes:
        """clientDataJSON as a browser serialises it (WebAuthn L2 §5.8.1.1)."""
        return json.dumps({"type": kind, "challenge": b64url(challenge), "origin": origin or self.origin,
                           "crossOrigin": False}, separators=(",", ":")).encode()

    # --- ceremonies ----------------------------------------------------------------------
    def register(self, challenge: bytes, *, origin: str | None = None, rp_id: str | None = None, uv: bool = True,
                 up: bool = True) -> dict[str, Any]:
        """The JSON a browser posts after ``navigator.credentials.create()`` ("none" attestation)."""
        auth_data = self.authenticator_data(rp_id=rp_id, up=up, uv=uv, attested=True)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(self.credential_id), "rawId": b64url(self.credential_id), "type": "public-key",
            "authenticatorAttachment": "platform",
            "response": {"clientDataJSON": b64url(self.client_data("webauthn.create", challenge, origin=origin)),
                         "attestationObject": b64url(attestation), "transports": ["internal"]},
            "clientExtensionResults": {},
        }

    def authenticate(self, challenge: bytes, *, origin: str | None = None, rp_id: str | None = None,
                     uv: bool = True, be: bool | None = None, bs: bool | None = None,
                     sign_count: int | None = None) -> dict[str, Any]:
        """The JSON a browser posts after ``navigator.credentials.get()``; the counter goes up by one
        unless ``sign_count`` forces a value (a clone replaying an older counter)."""
        if sign_count is None:
            self.sign_count += 1
        auth_data = self.authenticator_data(rp_id=rp_id, uv=uv, be=be, bs=bs, sign_count=sign_count)
        client_data = self.client_data("webauthn.get", challenge, origin=origin)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64url(self.credential_id), "rawId": b64url(self.credential_id), "type": "public-key",
            "authenticatorAttachment": "platform",
            "response": {"clientDataJSON": b64url(client_data), "authenticatorData": b64url(auth_data),
                         "signature": b64url(signature),
                         "userHandle": b64url(self.user_handle) if self.user_handle else None},
            "clientExtensionResults": {},
        }
