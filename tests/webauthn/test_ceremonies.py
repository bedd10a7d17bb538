"""Registration and authentication ceremonies on recorded JSON (no app: pure py_webauthn wrappers)."""

from __future__ import annotations

import copy

import pytest

from idp.webauthn import ceremonies
from idp.webauthn.ceremonies import CeremonyError, CredentialRef
from tests.webauthn.authenticator import SoftAuthenticator, b64url, from_b64url
from tests.webauthn.conftest import challenge_of, recorded

RP_ID, ORIGIN = "localhost", "http://localhost"


def _register(name: str, **overrides: object) -> ceremonies.RegisteredCredential:
    args: dict[str, object] = {"response": recorded(name)["credential"], "challenge": challenge_of(name),
                               "rp_id": RP_ID, "origin": ORIGIN}
    args.update(overrides)
    return ceremonies.verify_registration(**args)  # type: ignore[arg-type]


def _authenticate(name: str, **overrides: object) -> ceremonies.VerifiedAssertion:
    fixture = recorded(name)
    args: dict[str, object] = {"response": fixture["credential"], "challenge": challenge_of(name), "rp_id": RP_ID,
                               "origin": ORIGIN, "public_key": from_b64url(fixture["public_key"])}
    args.update(overrides)
    return ceremonies.verify_authentication(**args)  # type: ignore[arg-type]


def test_recorded_registration_gives_what_is_stored() -> None:
    registered = _register("registration")
    authenticator = recorded("authenticator")
    assert registered.credential_id == authenticator["credential_id"]
    assert registered.public_key == from_b64url(authenticator["public_key"])
    assert registered.user_verified is True
    assert (registered.backup_eligible, registered.backup_state) == (False, False)
    assert registered.transports == ["internal"]
    assert registered.aaguid.replace("-", "") == authenticator["aaguid"]
    assert registered.attestation_format == "none"
    assert registered.sign_count == 0


@pytest.mark.parametrize(("fixture", "overrides", "why"), [
    ("registration_wrong_origin", {}, "origin"),
    ("registration_wrong_rp_id", {}, "RP ID"),
    ("registration_no_uv", {}, "User verification"),
    ("registration", {"challenge": b"another challenge, not the one issued"}, "challenge"),
    ("registration", {"origin": "https://localhost"}, "origin"),
    ("registration", {"rp_id": "example.org"}, "RP ID"),
])
def test_registration_is_refused(fixture: str, overrides: dict[str, object], why: str) -> None:
    with pytest.raises(CeremonyError) as refused:
        _register(fixture, **overrides)
    assert why in refused.value.reason


def test_registration_without_attestation_is_refused_when_trusted_attestation_is_required() -> None:
    with pytest.raises(CeremonyError, match="attestation required"):
        _register("registration", require_attestation=True)


def test_recorded_assertion_is_verified_with_user_verification() -> None:
    assertion = _authenticate("authentication")
    assert assertion.credential_id == recorded("authenticator")["credential_id"]
    assert assertion.user_verified is True
    assert assertion.sign_count == 1
    assert assertion.backup_eligible is False


@pytest.mark.parametrize(("fixture", "overrides", "why"), [
    ("authentication_wrong_origin", {}, "origin"),
    ("authentication_wrong_rp_id", {}, "RP ID"),
    ("authentication_no_uv", {}, "User verification"),
    ("authentication", {"challenge": b"another challenge, not the one issued"}, "challenge"),
    ("authentication", {"origin": "http://localhost:5000"}, "origin"),
])
def test_assertion_is_refused(fixture: str, overrides: dict[str, object], why: str) -> None:
    with pytest.raises(CeremonyError) as refused:
        _authenticate(fixture, **overrides)
    assert why in refused.value.reason


def test_assertion_checked_against_another_public_key_is_refused() -> None:
    stranger = SoftAuthenticator()
    with pytest.raises(CeremonyError, match="signature"):
        _authenticate("authentication", public_key=stranger.cose_public_key())


@pytest.mark.parametrize("part", ["clientDataJSON", "authenticatorData", "signature"])
def test_tampered_assertion_is_refused(part: str) -> None:
    fixture = recorded("authentication")
    response = copy.deepcopy(fixture["credential"])
    raw = bytearray(from_b64url(response["response"][part]))
    raw[-1] ^= 0x01
    response["response"][part] = b64url(bytes(raw))
    with pytest.raises(CeremonyError):
        _authenticate("authentication", response=response)


@pytest.mark.parametrize("response", [{}, {"id": "x"}, "not json", {"id": "AA", "rawId": "AA", "type": "public-key",
                                                                     "response": {"clientDataJSON": "%%%"}}])
def test_malformed_responses_are_refused(response: object) -> None:
    with pytest.raises(CeremonyError):
        ceremonies.verify_authentication(response=response, challenge=b"c", rp_id=RP_ID, origin=ORIGIN,  # type: ignore[arg-type]
                                         public_key=b"")
    with pytest.raises(CeremonyError):
        ceremonies.verify_registration(response=response, challenge=b"c", rp_id=RP_ID, origin=ORIGIN)  # type: ignore[arg-type]


def test_registration_options_ask_for_a_user_verified_resident_platform_credential() -> None:
    existing = CredentialRef(credential_id=recorded("authenticator")["credential_id"], transports=["internal"])
    options = ceremonies.registration_options(rp_id=RP_ID, rp_name="Mon compte ameli", user_handle=b"account-id",
                                              user_name="Mon compte ameli", display_name="Mon compte ameli",
                                              exclude=[existing])
    public_key = options.public_key
    assert public_key["rp"] == {"name": "Mon compte ameli", "id": RP_ID}
    assert public_key["authenticatorSelection"] == {"authenticatorAttachment": "platform", "residentKey": "required",
                                                    "requireResidentKey": True, "userVerification": "required"}
    assert public_key["attestation"] == "none"
    assert public_key["excludeCredentials"] == [{"id": existing.credential_id, "type": "public-key",
                                                 "transports": ["internal"]}]
    assert from_b64url(public_key["challenge"]) == options.challenge
    assert len(options.challenge) >= 32


def test_registration_options_ask_for_direct_attestation_when_required() -> None:
    options = ceremonies.registration_options(rp_id=RP_ID, rp_name="x", user_handle=b"a", user_name="x",
                                              display_name="x", require_attestation=True)
    assert options.public_key["attestation"] == "direct"


def test_authentication_options_require_user_verification() -> None:
    discoverable = ceremonies.authentication_options(rp_id=RP_ID)
    assert discoverable.public_key["userVerification"] == "required"
    assert discoverable.public_key["allowCredentials"] == []
    known = ceremonies.authentication_options(rp_id=RP_ID, allow=[CredentialRef(credential_id="AAAA")])
    assert known.public_key["allowCredentials"] == [{"id": "AAAA", "type": "public-key"}]
    assert discoverable.challenge != known.challenge
