"""'Créer mon compte': identity check against the RFI, e-mail code, password; limits and audit."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from idp.accounts import service
from idp.audit import AuditEvent
from idp.extensions import db
from idp.rfi_adapter import RegistryUnavailable
from tests.accounts.conftest import PASSWORD, by_name, make_account, submit

WRONG = "Les informations saisies sont erronées. Merci de vérifier votre saisie."


def details(record: dict[str, Any], **changes: str) -> dict[str, str]:
    """The creation form filled from an RFI record."""
    year, month, day = record["birthdate"].split("-")
    form = {"nir": record["nir"], "birthdate": f"{day}/{month}/{year}", "vitale": record["vitale_card_serial"],
            "iban_end": record["iban"][-7:]}
    form.update(changes)
    return form


def test_full_creation_journey(loaded: Any, records: list[dict[str, Any]], mailbox: Any) -> None:
    client = loaded.test_client()
    lea = by_name(records, "BERNARD")
    response = submit(client, "/compte/creation", details(lea, nir=" ".join([lea["nir"][:5], lea["nir"][5:]])))
    assert response.status_code == 303 and response.location.endswith("/compte/creation/email")
    response = submit(client, "/compte/creation/email", {"email": "lea.bernard@example.fr"})
    assert response.status_code == 303
    page = client.get("/compte/creation/code").text
    assert "l***@e***.fr" in page and "Vérifiez votre dossier SPAM ou indésirable." in page
    code = mailbox.code("lea.bernard@example.fr")
    assert submit(client, "/compte/creation/code", {"code": "000000" if code != "000000" else "111111"}).text \
        .count(WRONG) == 1
    assert submit(client, "/compte/creation/code", {"code": code}).status_code == 303
    refused = submit(client, "/compte/creation/mot-de-passe", {"password": "azerty123"})
    assert "trop courant" in refused.text
    response = submit(client, "/compte/creation/mot-de-passe", {"password": PASSWORD})
    assert response.status_code == 303 and response.location.endswith("/compte/creation/terminee")
    with loaded.app_context():
        account = service.authenticate(lea["nir"], PASSWORD)
        assert account is not None and account.email == "lea.bernard@example.fr" and account.email_validated
        assert account.phone == lea["phone"]
        events = [e.event for e in db.session.scalars(select(AuditEvent))]
    assert "account.creation.check" in events and "account.created" in events
    # the flow is over: its pages send back to the start
    assert client.get("/compte/creation/mot-de-passe").status_code == 303


@pytest.mark.parametrize("change", [
    {"vitale": "8250000000"},
    {"iban_end": "9999999"},
    {"birthdate": "15/09/2001"},
    {"nir": "1010199999999"},  # valid NIR unknown to the RFI
])
def test_any_mismatch_gets_the_one_same_message(loaded: Any, records: list[dict[str, Any]],
                                                change: dict[str, str]) -> None:
    client = loaded.test_client()
    response = submit(client, "/compte/creation", details(by_name(records, "BERNARD"), **change))
    assert response.status_code == 200
    assert response.text.count(WRONG) == 1
    assert "carte Vitale est" not in response.text and "IBAN est" not in response.text
    with loaded.app_context():
        outcomes = [e.data["outcome"] for e in db.session.scalars(select(AuditEvent))]
        dump = repr([e.as_dict() for e in db.session.scalars(select(AuditEvent))])
    assert outcomes == ["mismatch"]
    assert by_name(records, "BERNARD")["nir"] not in dump


def test_creation_stops_after_the_attempt_limit(loaded: Any, records: list[dict[str, Any]]) -> None:
    client = loaded.test_client()
    lea = by_name(records, "BERNARD")
    for _ in range(5):
        assert WRONG in submit(client, "/compte/creation", details(lea, vitale="8250000000")).text
    blocked = submit(client, "/compte/creation", details(lea))  # even the right details are refused now
    assert blocked.status_code == 429
    assert "nombre maximum de tentatives" in blocked.text


def test_the_limit_also_holds_per_nir_across_addresses(app: Any, records: list[dict[str, Any]]) -> None:
    from idp.rfi_adapter.sql import import_records

    with app.app_context():
        import_records(records)
    lea = by_name(records, "BERNARD")
    for attempt in range(6):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"10.0.0.{attempt}"
        response = submit(client, "/compte/creation", details(lea, iban_end="0000000"))
    assert response.status_code == 429


def test_existing_account_is_told_after_the_identity_is_proven(loaded: Any, records: list[dict[str, Any]]) -> None:
    marie = by_name(records, "DUPONT")
    make_account(loaded, marie["nir"])
    response = submit(loaded.test_client(), "/compte/creation", details(marie))
    assert response.status_code == 409 and "Un compte existe déjà" in response.text


def test_presumed_birthdate_with_zeros_is_accepted(loaded: Any, records: list[dict[str, Any]]) -> None:
    amadou = by_name(records, "DIALLO")
    response = submit(loaded.test_client(), "/compte/creation", details(amadou))
    assert details(amadou)["birthdate"] == "00/00/1980"
    assert response.status_code == 303


@pytest.mark.parametrize(("field", "value", "message"), [
    ("nir", "28503693830424", "13 caractères"),
    ("birthdate", "1985-03-12", "JJ/MM/AAAA"),
    ("iban_end", "123", "7 derniers caractères"),
    ("vitale", "", "numéro de série"),
])
def test_malformed_fields_are_explained_next_to_the_field(app: Any, records: list[dict[str, Any]], field: str,
                                                          value: str, message: str) -> None:
    response = submit(app.test_client(), "/compte/creation", details(by_name(records, "BERNARD"), **{field: value}))
    assert message in response.text
    assert f'id="{field}-error"' in response.text and f'aria-describedby="{field}-hint {field}-error"' in response.text


class DownRegistry:
    def lookup(self, nir: Any) -> Any:
        raise RegistryUnavailable(detail="test")


@pytest.fixture
def app_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"rfi": DownRegistry()} if "registry_down" in request.node.name else {}


def test_registry_down_says_temporarily_unavailable_never_wrong_details_registry_down(
        app: Any, records: list[dict[str, Any]]) -> None:
    response = submit(app.test_client(), "/compte/creation", details(by_name(records, "BERNARD")))
    assert response.status_code == 503
    assert "momentanément indisponible" in response.text and WRONG not in response.text


def test_pages_are_french_with_csrf_and_labels(client: Any) -> None:
    for url in ("/compte/creation", "/compte/recreation", "/mot-de-passe-oublie", "/aide"):
        page = client.get(url)
        assert page.status_code == 200 and 'lang="fr"' in page.text
        if url != "/aide":
            assert 'name="csrf_token"' in page.text and '<label class="fr-label" for="nir">' in page.text
    assert "3646" in client.get("/aide").text and "SPAM" in client.get("/aide").text
