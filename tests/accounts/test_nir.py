"""The NIR value type: parsing, Corsica, the key, normalisation and masking."""

from __future__ import annotations

import pytest

from idp.nir import InvalidNir, Nir
from tests.conftest import remember_secret

VALID = "285036938304242"
CORSICA_2A = "190072A00401746"
CORSICA_2B = "185032B03301268"
remember_secret(VALID, CORSICA_2A, CORSICA_2B, "2 85 03 69 383 042 42", "2850369383042", "190072a00401746")


@pytest.mark.parametrize(("text", "normalised"), [
    (VALID, VALID),
    ("2 85 03 69 383 042 42", VALID),  # spaces as printed on the Carte Vitale
    ("2.85.03.69.383.042.42", VALID),
    ("2850369383042", VALID),  # 13 characters: the key is computed
    (CORSICA_2A, CORSICA_2A),
    ("190072a00401746", CORSICA_2A),  # lower-case Corsican department
    (CORSICA_2B, CORSICA_2B),
    ("185032B033012", CORSICA_2B),  # 13 characters with 2B
])
def test_accepts_and_normalises_valid_spellings(text: str, normalised: str) -> None:
    assert Nir.parse(text).value == normalised


@pytest.mark.parametrize(("text", "reason"), [
    ("285036938304243", "Vérifiez la clé"),  # wrong key
    ("190072A00401745", "Vérifiez la clé"),  # wrong key in Corsica
    ("190072B00401746", "Vérifiez la clé"),  # 2A key used with 2B
    ("28503693830424", "13 caractères"),  # 14 digits
    ("2850369383042421", "13 caractères"),  # 16 digits
    ("28503X938304242", "que des chiffres"),  # a letter
    ("2850369383O4242", "que des chiffres"),  # letter O for zero
    ("19007AA00401746", "que des chiffres"),  # only 2A/2B are allowed letters
    ("", "Saisissez"),
    ("   ", "Saisissez"),
])
def test_refuses_bad_input_with_a_french_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidNir) as excinfo:
        Nir.parse(text)
    assert reason in excinfo.value.reason
    assert Nir.is_valid(text) is False


def test_thirteen_digits_get_the_computed_key() -> None:
    assert Nir.parse("2850369383042").value[13:] == "42"
    assert Nir.parse("190072A004017").value[13:] == "46"  # 2A counts as 19 in the key


def test_masked_display_shows_only_first_digit_and_key() -> None:
    nir = Nir.parse(VALID)
    assert nir.masked() == "2 ** ** ** *** *** 42"
    assert "850369383" not in nir.masked()


def test_repr_and_str_never_show_the_number() -> None:
    nir = Nir.parse(VALID)
    for shown in (repr(nir), str(nir), f"{nir}", f"{nir!s:>30}"):
        assert "8503693830" not in shown
        assert VALID not in shown


def test_formatted_groups_like_the_card() -> None:
    assert Nir.parse(VALID).formatted() == "2 85 03 69 383 042 42"


def test_equal_values_are_equal_and_hash_alike() -> None:
    assert Nir.parse(VALID) == Nir.parse("2 85 03 69 383 042 42")
    assert len({Nir.parse(VALID), Nir.parse("2850369383042")}) == 1
    assert Nir.parse(VALID) != Nir.parse(CORSICA_2A)
