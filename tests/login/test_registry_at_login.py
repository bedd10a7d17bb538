"""Issue 11, attack 5: the registry of individuals (RFI) is asked at every login, and its data decide.

- a person the registry no longer knows gets the French "connexion impossible, appelez le 3646" page
  (audited, no failure counted), never tokens;
- the HTTP registry answering 500 or timing out gives the 503 French page, nothing counted, and the login
  works again once it is back;
- at /token and /userinfo a vanished identity is ``invalid_grant`` / ``invalid_token``, never a 500; a code is
  handed back only after a transient outage;
- ``idp accounts create`` refuses a NIR the registry does not hold (tests/accounts/test_lifecycle.py);
- the HTTP adapter ignores unknown fields of an answer but still validates the known ones.
"""

from __future__ import annotations

import html
import json
import time
from typing import Any

import pytest

from tests.accounts.conftest import PASSWORD, demo_records, make_account
from tests.accounts.test_rfi_http import Registry
from tests.conftest import csrf_from
from tests.oidc.conftest import IDENTITIES, NIR, flow, login, make_person, make_rp, redeem

MARIE = demo_records()[0]
CALL_3646 = "appelez le 3646"
REGISTRY_DOWN = "nous ne pouvons pas vérifier votre identité"


def text(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def identify(client: Any, nir: str, password: str) -> Any:
    token = csrf_from(client.get("/connexion").data)
    return client.post("/connexion", data={"csrf_token": token, "nir": nir, "password": password})


def forget_identity(app: Any, nir: str) -> None:
    """The registry no longer holds the person (moved, merged, deceased...)."""
    from sqlalchemy import delete

    from idp.crypto import lookup_hmac
    from idp.extensions import db
    from idp.rfi_adapter.sql import RfiRecord

    with app.app_context():
        db.session.execute(delete(RfiRecord).where(RfiRecord.nir_hmac == lookup_hmac(nir)))
        db.session.commit()


def events(app: Any, name: str) -> list[Any]:
    from sqlalchemy import select

    from idp.audit import AuditEvent
    from idp.extensions import db

    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


def failures(app: Any, account_id: str) -> bool:
    from idp.mfa import limits

    with app.app_context():
        return limits.account_lock(account_id).locked


# --- the embedded registry --------------------------------------------------------------------
def test_a_person_absent_from_the_registry_gets_the_3646_page_audited_and_nothing_counted(
        app: Any, client: Any, mailbox: Any) -> None:
    person = make_person(app)
    forget_identity(app, NIR)
    rp = make_rp(app, "web")
    for _ in range(app.extensions["idp.settings"].max_failed_attempts + 1):  # more than the lock limit
        client.get("/authorize", query_string=flow(rp).params)
        answer = identify(client, NIR, person.password)
        assert answer.status_code == 403 and CALL_3646 in text(answer) and "Connexion impossible" in text(answer)
    assert not failures(app, person.account_id)  # no failure counted: no lock
    assert [e.account_id for e in events(app, "login_identity_unknown")] == [person.account_id] * 4
    assert not mailbox.messages  # no security code
    assert client.get("/authorize/resume").headers["Location"].endswith("/connexion")  # no tokens


def test_a_wrong_password_for_a_person_absent_from_the_registry_is_just_wrong(app: Any, client: Any) -> None:
    """The registry speaks only once the password is right: nobody learns anything about the person."""
    make_person(app)
    forget_identity(app, NIR)
    client.get("/authorize", query_string=flow(make_rp(app, "web")).params)
    answer = identify(client, NIR, "Pas-Le-Bon-Mot-2")
    assert answer.status_code == 200 and "Les informations saisies sont erronées" in text(answer)
    assert CALL_3646 not in text(answer) and events(app, "login_identity_unknown") == []


def test_a_vanished_identity_at_userinfo_is_invalid_token_not_a_500(app: Any, client: Any, mailbox: Any) -> None:
    person = make_person(app)
    rp = make_rp(app, "web")
    f = flow(rp)
    tokens = redeem(client, rp, login(app, client, person, f)["code"], f).json
    forget_identity(app, NIR)
    answer = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert answer.status_code == 401 and answer.json["error"] == "invalid_token"
    assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]


def test_a_vanished_identity_at_token_is_invalid_grant_and_the_code_is_not_handed_back(
        app: Any, client: Any, mailbox: Any) -> None:
    person = make_person(app)
    rp = make_rp(app, "web")
    f = flow(rp, claims=json.dumps({"id_token": {"family_name": {"essential": True}}}))
    code = login(app, client, person, f)["code"]
    forget_identity(app, NIR)
    first = redeem(client, rp, code, f)
    assert first.status_code == 400 and first.json["error"] == "invalid_grant"
    retry = redeem(client, rp, code, f)
    assert retry.status_code == 400 and retry.json["error"] == "invalid_grant"


# --- the HTTP registry: 500, timeouts, recovery -----------------------------------------------
@pytest.fixture
def registry() -> Any:
    server = Registry()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def http_app(tmp_path: Any, clock: Any, mailbox: Any, registry: Registry) -> Any:
    """The IdP on the HTTP registry (bounded timeouts, one retry, breaker reset after 1 s of app clock)."""
    from tests.conftest import base_config, running_app

    with running_app(base_config(
            clock, mailbox, database_url=f"sqlite:///{tmp_path}/rfi-http.sqlite3", redis_url="memory://",
            rfi_backend="http", rfi_url=registry.url + "/", rfi_read_timeout=0.3, rfi_connect_timeout=0.3,
            rfi_retries=1, rfi_backoff=0.01, rfi_breaker_reset=1)) as application:
        yield application


@pytest.mark.parametrize("fault", ["500", "slow"])
def test_the_http_registry_down_gives_the_503_page_and_the_login_works_once_it_is_back(
        http_app: Any, registry: Registry, clock: Any, mailbox: Any, fault: str) -> None:
    account_id = make_account(http_app, MARIE["nir"])
    rp = make_rp(http_app, "web")
    client = http_app.test_client()
    client.get("/authorize", query_string=flow(rp).params)
    registry.mode = fault
    started = time.monotonic()
    down = identify(client, MARIE["nir"], PASSWORD)
    assert time.monotonic() - started < 3  # bounded by the timeouts and retries
    assert down.status_code == 503 and REGISTRY_DOWN in text(down)
    assert down.headers["Retry-After"]
    assert not failures(http_app, account_id) and not mailbox.messages  # nothing counted, no code
    registry.mode = "ok"
    clock.advance(2)  # past the breaker's reset: one trial request closes it
    back = identify(client, MARIE["nir"], PASSWORD)
    assert back.status_code == 303 and back.headers["Location"] == "/connexion/code"


def test_an_outage_at_token_hands_the_code_back_and_the_retry_succeeds(
        http_app: Any, registry: Registry, clock: Any, mailbox: Any) -> None:
    from tests.oidc.conftest import Person

    account_id = make_account(http_app, MARIE["nir"])
    rp = make_rp(http_app, "web")
    client = http_app.test_client()
    f = flow(rp, claims=json.dumps({"id_token": {"family_name": {"essential": True}}}))
    code = login(http_app, client, Person(account_id, MARIE["nir"], PASSWORD), f)["code"]
    registry.mode = "500"
    down = redeem(client, rp, code, f)
    assert down.status_code == 503 and down.json["error"] == "registry_unavailable"
    registry.mode = "ok"
    clock.advance(2)
    retry = redeem(client, rp, code, f)
    assert retry.status_code == 200, retry.json


def test_the_http_adapter_ignores_unknown_fields_and_still_validates_the_known_ones(registry: Registry,
                                                                                    app: Any) -> None:
    from idp.nir import Nir
    from idp.rfi_adapter import RegistryUnavailable
    from idp.rfi_adapter.http import CircuitBreaker, HttpRfiAdapter

    registry.records[MARIE["nir"]] = {**MARIE, "situation_familiale": "mariée", "ins": {"matricule": "x"}}
    adapter = HttpRfiAdapter(registry.url, connect_timeout=0.5, read_timeout=0.5, retries=0, backoff=0.01,
                             breaker=CircuitBreaker("rfi-fields", threshold=5, reset_seconds=30))
    with app.app_context():
        assert adapter.lookup(Nir.parse(MARIE["nir"])).family_name == MARIE["family_name"]
        registry.records[MARIE["nir"]] = {**MARIE, "birthdate": "1985-13-45", "nouveau_champ": 1}
        with pytest.raises(RegistryUnavailable):
            adapter.lookup(Nir.parse(MARIE["nir"]))


def test_the_registry_is_asked_for_every_checked_guess(app: Any, client: Any, monkeypatch: Any) -> None:
    """An unknown NIR or a wrong password costs the same registry round trip as a right password."""
    from idp.rfi_adapter.sql import SqlRfiAdapter

    calls: list[str] = []
    real = SqlRfiAdapter.lookup

    def counting(self: Any, nir: Any) -> Any:
        calls.append("lookup")
        return real(self, nir)

    make_person(app)
    client.get("/authorize", query_string=flow(make_rp(app, "web")).params)
    monkeypatch.setattr(SqlRfiAdapter, "lookup", counting)
    identify(client, IDENTITIES[1]["nir"], "Pas-Le-Bon-Mot-2")  # a NIR without an account
    identify(client, NIR, "Pas-Le-Bon-Mot-2")  # an account, a wrong password
    assert calls == ["lookup", "lookup"]
