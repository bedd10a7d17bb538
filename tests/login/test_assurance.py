"""The assurance module: factors -> amr (RFC 8176), acr (the configured mapping), auth_time; requirements."""

from __future__ import annotations

from typing import Any

import pytest

from idp.login import assurance
from idp.login.assurance import Method, Proof


@pytest.fixture
def ctx(app: Any) -> Any:
    with app.app_context():
        yield app


def _proof(*factors: assurance.Factor) -> Proof:
    proof = Proof()
    for factor in factors:
        proof.add(factor)
    return proof


PWD = assurance.password_factor(1000)
MAIL = assurance.Factor(method=Method.EMAIL_CODE, at=1060)


def test_password_alone_is_one_factor_at_the_password_acr(ctx: Any) -> None:
    proof = _proof(PWD)
    assert assurance.amr(proof) == ["pwd"] and assurance.acr(proof) == "eidas1" and assurance.auth_time(proof) == 1000


def test_password_and_code_are_two_factors_but_stay_eidas1_by_default(ctx: Any) -> None:
    """NIST SP 800-63B-4: e-mail is not an accepted out-of-band authenticator."""
    proof = _proof(PWD, MAIL)
    assert assurance.amr(proof) == ["pwd", "mail", "mfa"] and assurance.acr(proof) == "eidas1"
    assert assurance.auth_time(proof) == 1000  # the first factor, not the last


@pytest.mark.parametrize("app_config", [{"acr_email_code": "eidas2"}])
def test_the_mapping_is_a_setting(ctx: Any) -> None:
    assert assurance.acr(_proof(PWD, MAIL)) == "eidas2"
    assert assurance.reachable_acr_values() == ["eidas1", "eidas2"]


def test_a_code_counts_only_to_the_address_validated_before_the_login(ctx: Any) -> None:
    assert assurance.email_code_factor(5, sent_to="a@x.fr", validated_before_login="a@x.fr") is not None
    assert assurance.email_code_factor(5, sent_to="evil@x.fr", validated_before_login="a@x.fr") is None
    assert assurance.email_code_factor(5, sent_to="evil@x.fr", validated_before_login=None) is None


@pytest.mark.parametrize(("factors", "ceiling", "amr", "acr"), [
    (1, "eidas1", ["hwk", "user"], "eidas1"),
    (2, "eidas1", ["hwk", "user", "mfa"], "eidas1"),  # activated after pwd + mail at eidas1: never more
    (2, "eidas2", ["hwk", "user", "mfa"], "eidas2"),
    (1, "eidas2", ["hwk", "user"], "eidas1"),  # one factor at activation: the password's level at most
])
def test_a_credential_is_worth_what_its_activation_login_proved(ctx: Any, factors: int, ceiling: str,
                                                                amr: list[str], acr: str) -> None:
    proof = _proof(assurance.platform_factor(7, activation_factors=factors, activation_acr=ceiling))
    assert assurance.amr(proof) == amr and assurance.acr(proof) == acr


def test_a_trusted_browser_adds_no_amr_and_no_level(ctx: Any) -> None:
    proof = _proof(PWD, assurance.trusted_browser_factor(1001))
    assert assurance.amr(proof) == ["pwd"] and assurance.acr(proof) == "eidas1"
    web = assurance.requirement(client_kind="web", client_requires_code=True, acr_values=None, claims_request={})
    assert assurance.second_factor_satisfied(web, proof)
    assert assurance.may_activate_two_factor_credential(proof)


def test_discovery_lists_only_reachable_levels(ctx: Any) -> None:
    assert assurance.reachable_acr_values() == ["eidas1"]
    assert not assurance.reachable("eidas2") and not assurance.reachable("eidas3")
    metadata = ctx.test_client().get("/.well-known/openid-configuration").json
    assert metadata["acr_values_supported"] == ["eidas1"]


@pytest.mark.parametrize(("kind", "code", "acr_values", "claims", "second", "acr", "binding"), [
    ("web", True, None, {}, True, None, False),
    ("mobile", False, None, {}, False, None, False),
    ("federation", False, None, {}, False, None, False),
    ("federation", False, "eidas2 eidas3", {}, True, "eidas2", True),
    ("web", True, "eidas2", {}, True, "eidas2", False),  # voluntary for a web client
    ("web", True, None, {"id_token": {"acr": {"essential": True, "values": ["eidas2"]}}}, True, "eidas2", True),
    ("federation", True, "bogus", {}, True, None, False),
])
def test_requirement_of_a_request(ctx: Any, kind: str, code: bool, acr_values: str | None, claims: dict[str, Any],
                                  second: bool, acr: str | None, binding: bool) -> None:
    req = assurance.requirement(client_kind=kind, client_requires_code=code, acr_values=acr_values,
                                claims_request=claims)
    assert (req.second_factor, req.acr, req.binding) == (second, acr, binding)


def test_web_needs_the_password_before_a_credential(ctx: Any) -> None:
    web = assurance.requirement(client_kind="web", client_requires_code=True, acr_values=None, claims_request={})
    credential = assurance.platform_factor(7, activation_factors=2, activation_acr="eidas2")
    assert not assurance.second_factor_satisfied(web, _proof(credential))
    assert assurance.second_factor_satisfied(web, _proof(PWD, credential))
    mobile = assurance.requirement(client_kind="mobile", client_requires_code=False, acr_values=None,
                                   claims_request={})
    assert assurance.second_factor_satisfied(mobile, _proof(credential))


def test_binding_requirements_refuse_a_lower_acr(ctx: Any) -> None:
    fc = assurance.requirement(client_kind="federation", client_requires_code=True, acr_values="eidas2",
                               claims_request={})
    assert assurance.acr_too_low(fc, "eidas1") and not assurance.acr_too_low(fc, "eidas2")
    web = assurance.requirement(client_kind="web", client_requires_code=True, acr_values="eidas2", claims_request={})
    assert not assurance.acr_too_low(web, "eidas1")  # acr_values is voluntary (OIDC Core §3.1.2.1)


def test_proof_round_trips_and_refuses_malformed_records(ctx: Any) -> None:
    proof = _proof(PWD, MAIL)
    assert Proof.from_list(proof.to_list()) == proof
    with pytest.raises(ValueError):
        Proof.from_list([{"method": "password"}])
    with pytest.raises(ValueError):
        Proof.from_list([{"method": "telepathy", "at": 1}])


def test_the_mapping_refuses_an_unknown_level() -> None:
    from idp.errors import SettingsError
    from idp.settings import load_settings

    with pytest.raises(SettingsError) as info:
        load_settings(environ={"IDP_ACR_EMAIL_CODE": "eidas9"})
    assert "IDP_ACR_EMAIL_CODE" in str(info.value)
