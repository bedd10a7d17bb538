"""The embedded registry: record validation, all-or-nothing import, look-up, encrypted storage."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from sqlalchemy import text

from idp.extensions import db
from idp.nir import Nir
from idp.rfi_adapter import IdentityNotFound, get_rfi
from idp.rfi_adapter.sql import ImportRejected, count_records, import_records
from tests.accounts.conftest import by_name


def test_demo_file_imports_and_every_identity_is_found(loaded: Any, records: list[dict[str, Any]]) -> None:
    with loaded.app_context():
        assert count_records() == len(records)
        for record in records:
            identity = get_rfi().lookup(Nir.parse(record["nir"]))
            assert identity.family_name == record["family_name"]
            assert identity.birthdate == record["birthdate"]


def test_demo_covers_corsica_abroad_and_presumed_birthdate(loaded: Any, records: list[dict[str, Any]]) -> None:
    with loaded.app_context():
        corsican = get_rfi().lookup(Nir.parse(by_name(records, "SANTONI")["nir"]))
        abroad = get_rfi().lookup(Nir.parse(by_name(records, "BENALI")["nir"]))
        presumed = get_rfi().lookup(Nir.parse(by_name(records, "DIALLO")["nir"]))
    assert corsican.birthplace == "2A004" and corsican.nir.value[5:7] == "2A"
    assert abroad.birthplace == "" and abroad.birthcountry == "99350"
    assert presumed.birthdate == "1980-00-00"


def test_unknown_nir_is_not_found(loaded: Any) -> None:
    with loaded.app_context(), pytest.raises(IdentityNotFound):
        get_rfi().lookup(Nir.parse("1010199999999"))


@pytest.mark.parametrize(("field", "value"), [
    ("nir", "285036938304243"),  # wrong key
    ("nir", 285036938304242),
    ("given_name", ""),
    ("family_name", None),
    ("birthdate", "1985-13-01"),
    ("birthdate", "1985-00-12"),  # unknown month but known day: not a présumé-né form
    ("birthdate", "1985-02-30"),
    ("birthdate", "12/03/1985"),
    ("gender", "F"),
    ("birthplace", "6938"),
    ("birthplace", ""),  # born in France without a commune
    ("birthcountry", "France"),
    ("phone", "0612345678"),  # not E.164
    ("vitale_card_serial", "12-34"),
    ("iban", "FR7630006000011234567890188"),  # bad IBAN checksum
    ("unexpected", "x"),
])
def test_one_bad_record_imports_nothing_and_names_record_and_field(
        any_app: Any, records: list[dict[str, Any]], field: str, value: Any) -> None:
    bad = copy.deepcopy(records)
    bad[3 if field != "birthplace" else 0][field] = value  # record 3 is born abroad; 0 in Lyon
    index = 3 if field != "birthplace" else 0
    with any_app.app_context():
        with pytest.raises(ImportRejected) as excinfo:
            import_records(bad)
        assert count_records() == 0
    assert [(e.index, e.field) for e in excinfo.value.errors] == [(index, field)]
    assert str(bad[index]["nir"]) not in str(excinfo.value.errors[0])


def test_missing_field_and_duplicate_nir_are_reported(any_app: Any, records: list[dict[str, Any]]) -> None:
    bad = copy.deepcopy(records)
    del bad[1]["iban"]
    bad.append(copy.deepcopy(records[0]))
    with any_app.app_context(), pytest.raises(ImportRejected) as excinfo:
        import_records(bad)
    assert {(e.index, e.field) for e in excinfo.value.errors} == {(1, "iban"), (len(records), "nir")}


def test_reimport_replaces_identities(loaded: Any, records: list[dict[str, Any]]) -> None:
    changed = copy.deepcopy(records)
    changed[0]["preferred_username"] = "NOUVEAU"
    with loaded.app_context():
        import_records(changed)
        assert count_records() == len(records)
        assert get_rfi().lookup(Nir.parse(records[0]["nir"])).preferred_username == "NOUVEAU"


def test_database_dump_holds_no_nir_name_or_iban_in_clear(loaded: Any, records: list[dict[str, Any]]) -> None:
    with loaded.app_context():
        rows = db.session.execute(text("SELECT nir_hmac, payload FROM rfi_records")).all()
    dump = json.dumps([list(r) for r in rows])
    for record in records:
        assert record["nir"] not in dump and record["nir"][:13] not in dump
        assert record["family_name"] not in dump
        assert record["iban"] not in dump


def test_cli_import_reports_bad_record_and_imports_nothing(cli: Any, tmp_path: Any,
                                                           records: list[dict[str, Any]]) -> None:
    bad = copy.deepcopy(records)
    bad[2]["vitale_card_serial"] = "?"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    result = cli("rfi", "import", str(path), "--json")
    assert result.exit_code == 1
    assert json.loads(result.output)["errors"] == [
        {"index": 2, "field": "vitale_card_serial", "message": "must be 8 to 20 digits or capital letters"}]
    result = cli("rfi", "import", str(path))
    assert "record 2: vitale_card_serial" in result.output
    good = tmp_path / "good.json"
    good.write_text(json.dumps(records), encoding="utf-8")
    result = cli("rfi", "import", str(good), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"imported": len(records), "errors": []}


def test_cli_import_refuses_a_file_that_is_not_json(cli: Any, tmp_path: Any) -> None:
    path = tmp_path / "broken.json"
    path.write_text("[{", encoding="utf-8")
    result = cli("rfi", "import", str(path))
    assert result.exit_code == 1
    assert "(file)" in result.output
