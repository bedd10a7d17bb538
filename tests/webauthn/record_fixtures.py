"""Record the WebAuthn JSON fixtures under ``tests/fixtures/webauthn/``.

Run once (``.venv/bin/python -m tests.webauthn.record_fixtures``) and commit the files: the unit
tests read the recorded JSON, they do not regenerate it. Every fixture is for RP ID ``localhost``
and origin ``http://localhost`` (the test apps' issuer) unless its name says otherwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.webauthn.authenticator import SoftAuthenticator, b64url

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "webauthn"
RP_ID = "localhost"
ORIGIN = "http://localhost"
EVIL_ORIGIN = "https://ameli-connexion.example"
EVIL_RP_ID = "ameli-connexion.example"


def _write(name: str, description: str, challenge: bytes, credential: dict[str, Any], **extra: Any) -> None:
    record = {"description": description, "rp_id": RP_ID, "origin": ORIGIN, "challenge": b64url(challenge),
              "credential": credential, **extra}
    (FIXTURES / f"{name}.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def main() -> None:
    """Write every fixture."""
    FIXTURES.mkdir(parents=True, exist_ok=True)
    phone = SoftAuthenticator(rp_id=RP_ID, origin=ORIGIN, user_handle=b"00000000-0000-4000-8000-000000000001")
    # The key is recorded so that the assertion fixtures and the stored public key belong together.
    (FIXTURES / "authenticator.json").write_text(json.dumps({
        "description": "the software authenticator that produced every fixture (EC P-256, not a secret)",
        "credential_id": b64url(phone.credential_id), "public_key": b64url(phone.cose_public_key()),
        "private_key_pem": phone.private_pem(), "aaguid": phone.aaguid.hex()}, indent=2) + "\n")

    def challenge() -> bytes:
        return os.urandom(32)

    c = challenge()
    _write("registration", "valid registration: platform, UV, BE=0, none attestation", c, phone.register(c))
    c = challenge()
    _write("registration_no_uv", "registration with UP only (no user verification)", c, phone.register(c, uv=False))
    c = challenge()
    _write("registration_wrong_origin", f"registration made on {EVIL_ORIGIN}", c, phone.register(c, origin=EVIL_ORIGIN))
    c = challenge()
    _write("registration_wrong_rp_id", f"registration scoped to RP ID {EVIL_RP_ID}", c,
           phone.register(c, rp_id=EVIL_RP_ID))

    public_key = b64url(phone.cose_public_key())
    for name, description, kwargs in [
        ("authentication", "valid assertion, counter 1", {}),
        ("authentication_second", "valid assertion, counter 2", {}),
        ("authentication_no_uv", "assertion without user verification", {"uv": False}),
        ("authentication_wrong_origin", f"assertion made on {EVIL_ORIGIN}", {"origin": EVIL_ORIGIN}),
        ("authentication_wrong_rp_id", f"assertion scoped to RP ID {EVIL_RP_ID}", {"rp_id": EVIL_RP_ID}),
        ("authentication_backup_eligible", "assertion claiming BE=1 for a credential registered with BE=0",
         {"be": True}),
        ("authentication_clone", "a clone replaying counter 1 after the phone reached 2", {"sign_count": 1}),
    ]:
        c = challenge()
        credential = phone.authenticate(c, **kwargs)
        _write(name, description, c, credential, public_key=public_key,
               sign_count=kwargs.get("sign_count", phone.sign_count))


if __name__ == "__main__":
    main()
