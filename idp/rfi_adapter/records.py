"""Validation of RFI records (DESIGN.md §6), shared by ``idp rfi import`` and the HTTP adapter.

A record is a JSON object with the keys ``nir``, ``given_name``, ``family_name``,
``preferred_username`` (optional), ``birthdate`` (YYYY-MM-DD, or the "présumé né" forms YYYY-MM-00
and YYYY-00-00), ``gender`` (female|male), ``birthplace`` (INSEE COG code, "" when born abroad),
``birthcountry`` (COG code, 99100 for France), ``phone`` (optional, E.164), ``vitale_card_serial``
and ``iban``. Every problem is reported with its field; error messages never repeat the NIR.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from stdnum import iban as stdnum_iban

from idp.nir import InvalidNir, Nir
from idp.rfi_adapter.base import Identity

FRANCE = "99100"
REQUIRED = ("nir", "given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry",
            "vitale_card_serial", "iban")
OPTIONAL = ("preferred_username", "phone")
_BIRTHDATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_COMMUNE = re.compile(r"^(?:\d{5}|2[AB]\d{3})$")
_COUNTRY = re.compile(r"^99\d{3}$")
_PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
_VITALE = re.compile(r"^[0-9A-Z]{8,20}$")


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem in one record: ``index`` in the file (0-based), ``field`` name, French-free message."""

    index: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"record {self.index}: {self.field}: {self.message}"


class InvalidRecord(ValueError):
    """A record is not a valid identity; ``errors`` lists every bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors


def valid_birthdate(text: str) -> bool:
    """YYYY-MM-DD of a real date, or a "présumé né" form: YYYY-MM-00 (unknown day), YYYY-00-00."""
    match = _BIRTHDATE.match(text)
    if not match:
        return False
    year, month, day = (int(g) for g in match.groups())
    if year < 1850:
        return False
    if month == 0:
        return day == 0
    if not 1 <= month <= 12:
        return False
    if day == 0:
        return True
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _text(record: Mapping[str, Any], name: str, errors: list[str], *, optional: bool = False,
          max_length: int = 200) -> str | None:
    value = record.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        errors.append(f"{name}\x1fmust be a string")
        return None
    value = value.strip()
    if optional and value == "":
        return None
    if not value and name not in ("birthplace",):
        errors.append(f"{name}\x1fmust not be empty")
    elif len(value) > max_length:
        errors.append(f"{name}\x1fis longer than {max_length} characters")
    return value


def _check_place(birthplace: str | None, birthcountry: str | None, problems: list[str]) -> None:
    if birthcountry is not None and not _COUNTRY.match(birthcountry):
        problems.append("birthcountry\x1fmust be an INSEE COG country code such as 99100")
    if birthplace is None:
        return
    if birthplace and not _COMMUNE.match(birthplace):
        problems.append("birthplace\x1fmust be an INSEE COG commune code (5 characters) or empty")
    elif birthcountry == FRANCE and not birthplace:
        problems.append("birthplace\x1fis required when born in France (birthcountry 99100)")
    elif birthcountry and birthcountry != FRANCE and birthplace:
        problems.append("birthplace\x1fmust be empty when born abroad")


def parse_record(record: Any, index: int = 0, *, extra_fields: bool = False) -> Identity:
    """Validate one record and return the :class:`Identity`; raise :class:`InvalidRecord` listing every bad field.

    ``extra_fields``: fields this provider does not know are ignored (a registry answer: a registry that
    adds a field must not take the service down) instead of refused (an import file: a typo is an error);
    the known fields are validated either way."""
    if not isinstance(record, Mapping):
        raise InvalidRecord([FieldError(index, "(record)", "must be a JSON object")])
    problems: list[str] = []
    problems += [f"{k}\x1fis required" for k in REQUIRED if k not in record]
    if not extra_fields:
        problems += [f"{k}\x1fis not a known field" for k in sorted(set(record) - set(REQUIRED) - set(OPTIONAL))]
    nir: Nir | None = None
    if "nir" in record:
        try:
            nir = Nir.parse(record["nir"]) if isinstance(record["nir"], str) else None
            if nir is None:
                problems.append("nir\x1fmust be a string")
        except InvalidNir:
            problems.append("nir\x1fis not a valid NIR (13 or 15 characters with a correct key)")
    given = _text(record, "given_name", problems) if "given_name" in record else None
    family = _text(record, "family_name", problems) if "family_name" in record else None
    usage = _text(record, "preferred_username", problems, optional=True)
    birthdate = _text(record, "birthdate", problems, max_length=10) if "birthdate" in record else None
    if birthdate and not valid_birthdate(birthdate):
        problems.append("birthdate\x1fmust be YYYY-MM-DD, YYYY-MM-00 or YYYY-00-00")
    gender = record.get("gender")
    if "gender" in record and gender not in ("female", "male"):
        problems.append("gender\x1fmust be female or male")
    birthplace = _text(record, "birthplace", problems, max_length=5) if "birthplace" in record else None
    birthcountry = _text(record, "birthcountry", problems, max_length=5) if "birthcountry" in record else None
    _check_place(birthplace, birthcountry, problems)
    phone = _text(record, "phone", problems, optional=True, max_length=16)
    if phone and not _PHONE.match(phone):
        problems.append("phone\x1fmust be an E.164 number such as +33612345678")
    vitale = _text(record, "vitale_card_serial", problems, max_length=40) if "vitale_card_serial" in record else None
    vitale = re.sub(r"\s", "", vitale).upper() if vitale else vitale
    if vitale and not _VITALE.match(vitale):
        problems.append("vitale_card_serial\x1fmust be 8 to 20 digits or capital letters")
    iban = _text(record, "iban", problems, max_length=50) if "iban" in record else None
    if iban and not stdnum_iban.is_valid(iban):
        problems.append("iban\x1fis not a valid IBAN")
    if problems:
        first: dict[str, str] = {}  # one message per field: the first problem found is the useful one
        for problem in problems:
            name, message = problem.split("\x1f", 1)
            first.setdefault(name, message)
        raise InvalidRecord([FieldError(index, name, message) for name, message in first.items()])
    assert nir and given and family and birthdate and birthplace is not None and birthcountry and vitale and iban
    return Identity(nir=nir, given_name=given, family_name=family, preferred_username=usage, birthdate=birthdate,
                    gender="female" if gender == "female" else "male", birthplace=birthplace,
                    birthcountry=birthcountry, phone=phone,
                    vitale_card_serial=vitale, iban=str(stdnum_iban.compact(iban)))


def to_record(identity: Identity) -> dict[str, Any]:
    """The JSON record of an identity (the import format); holds the NIR: encrypt before storing."""
    return {"nir": identity.nir.value, "given_name": identity.given_name, "family_name": identity.family_name,
            "preferred_username": identity.preferred_username, "birthdate": identity.birthdate,
            "gender": identity.gender, "birthplace": identity.birthplace, "birthcountry": identity.birthcountry,
            "phone": identity.phone, "vitale_card_serial": identity.vitale_card_serial, "iban": identity.iban}
