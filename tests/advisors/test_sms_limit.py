"""The advisors' "Envoyer un code provisoire par SMS" replayed as a flood over HTTP: limited per person (across
advisors) and per advisor (across people), atomic Redis quotas, a French message, audited; a text that did not
leave gives its unit back."""

from __future__ import annotations

from typing import Any

import pytest

from idp.notify.sms import SmsNotSent
from tests.accounts.conftest import RecordingSms, by_name, demo_records
from tests.advisors.conftest import act, enrol, sign_in
from tests.advisors.test_console import dossier_of, events, text

RECORDS = demo_records()
WITH_PHONE = [by_name(RECORDS, name) for name in ("DUPONT", "MARTIN", "SANTONI", "DIALLO")]
PER_ADVISOR = 4


@pytest.fixture
def app_config(sms: RecordingSms) -> dict[str, Any]:
    return {"sms": sms, "advisor_sms_per_advisor": PER_ADVISOR}


def send(client: Any, dossier: str) -> Any:
    return act(client, dossier, "send_sms", reason="recréation du compte")


def test_one_persons_phone_gets_at_most_three_codes_a_day_whoever_sends_them(registry: Any, advisor: Any,
                                                                             sms: RecordingSms, clock: Any) -> None:
    client, staff = advisor
    marie = WITH_PHONE[0]
    dossier = dossier_of(client, marie["nir"])
    for _ in range(3):
        assert send(client, dossier).status_code == 303
    refused = send(client, dossier)
    assert refused.status_code == 429
    assert "nombre maximum de codes provisoires envoyés par SMS à cette personne" in text(refused)
    assert "(heure de Paris)" in text(refused)
    other = registry.test_client()  # another advisor (or the same person's call taken by a colleague)
    enrol(registry, other, "paul.conseil@assurance-maladie.fr")
    assert send(other, dossier_of(other, marie["nir"])).status_code == 429
    assert [phone for phone, _ in sms.sent] == [marie["phone"]] * 3
    limited = events(registry, "advisor.sms_limited")
    assert [e.data["scope"] for e in limited] == ["person", "person"]
    assert limited[0].data["advisor"] == staff.advisor_id and "nir" not in limited[0].data
    assert len(events(registry, "advisor.send_sms")) == 3
    clock.advance(hours=24, seconds=1)  # the block lasts the window (the console session did not: sign in again)
    assert sign_in(client, staff).status_code == 200
    assert send(client, dossier_of(client, marie["nir"])).status_code == 303


@pytest.fixture
def shared_phone(app: Any) -> Any:
    """The registry where MARTIN and SANTONI carry DUPONT's mobile number (one family phone, or records an
    attacker knows to share one)."""
    from idp.rfi_adapter.sql import import_records

    records = demo_records()
    phone = by_name(records, "DUPONT")["phone"]
    for record in records:
        if record["family_name"] in ("MARTIN", "SANTONI"):
            record["phone"] = phone
    with app.app_context():
        import_records(records)
    return app


def test_one_mobile_number_gets_at_most_three_codes_a_day_whichever_identity_it_is_registered_for(
        shared_phone: Any, advisor: Any, sms: RecordingSms) -> None:
    client, _staff = advisor
    dupont, martin, santoni, diallo = WITH_PHONE
    for person in (dupont, dupont, martin):
        assert send(client, dossier_of(client, person["nir"])).status_code == 303
    refused = send(client, dossier_of(client, santoni["nir"]))  # SANTONI's own limit is untouched
    assert refused.status_code == 429
    # The codes on that phone are other identities': the advisor is pointed to the Vitale card route instead.
    assert "nombre maximum de codes provisoires envoyés par SMS à ce numéro de téléphone mobile" in text(refused)
    assert "carte Vitale et son IBAN" in text(refused) and "dernier code" not in text(refused)
    assert [phone for phone, _ in sms.sent] == [dupont["phone"]] * 3
    assert [e.data["scope"] for e in events(shared_phone, "advisor.sms_limited")] == ["phone"]
    sent = events(shared_phone, "account.recreation.code_sent")  # traceable by keyed hashes, never in clear
    assert len({e.data["phone"] for e in sent}) == 1 and len({e.data["person"] for e in sent}) == 2
    assert not {dupont["phone"], dupont["nir"], martin["nir"]} & {str(v) for e in sent for v in e.data.values()}
    # Nothing was sent, so the refused attempt's units came back: this advisor's 4th text goes to DIALLO.
    assert send(client, dossier_of(client, diallo["nir"])).status_code == 303
    assert sms.sent[-1][0] == diallo["phone"] and len(sms.sent) == PER_ADVISOR


def test_one_advisor_texts_at_most_the_per_advisor_quota_all_people_together(registry: Any, advisor: Any,
                                                                             sms: RecordingSms) -> None:
    client, _staff = advisor
    dossiers = [dossier_of(client, person["nir"]) for person in WITH_PHONE]
    for dossier in (dossiers[0], dossiers[0], dossiers[1], dossiers[2]):
        assert send(client, dossier).status_code == 303
    refused = send(client, dossiers[3])
    assert refused.status_code == 429 and "Vous avez atteint le nombre maximum de codes provisoires" in text(refused)
    assert len(sms.sent) == PER_ADVISOR and WITH_PHONE[3]["phone"] not in [p for p, _ in sms.sent]
    assert [e.data["scope"] for e in events(registry, "advisor.sms_limited")] == ["advisor"]
    colleague = registry.test_client()  # the limit is this advisor's, not the console's
    enrol(registry, colleague, "paul.conseil@assurance-maladie.fr")
    assert send(colleague, dossier_of(colleague, WITH_PHONE[3]["nir"])).status_code == 303


def test_a_text_the_gateway_refused_gives_its_units_back(registry: Any, advisor: Any, sms: RecordingSms,
                                                         monkeypatch: Any) -> None:
    client, _staff = advisor
    dossier = dossier_of(client, WITH_PHONE[0]["nir"])

    def down(phone: str, text_: str) -> None:
        raise SmsNotSent(detail="test")

    with monkeypatch.context() as patch:
        patch.setattr(sms, "send", down)
        for _ in range(4):
            assert send(client, dossier).status_code == 503
    for _ in range(3):
        assert send(client, dossier).status_code == 303
    assert len(sms.sent) == 3


def test_a_registry_outage_gives_the_advisors_units_back(registry: Any, advisor: Any, sms: RecordingSms,
                                                        monkeypatch: Any) -> None:
    """Nothing can be sent while the registry is out: the retries must not use up the advisor's SMS quota
    (then locked out for the window once the registry is back)."""
    from idp.accounts import creation
    from idp.rfi_adapter.base import RegistryUnavailable

    client, _staff = advisor
    dossier = dossier_of(client, WITH_PHONE[0]["nir"])

    class Out:
        def lookup(self, _nir: Any) -> Any:
            raise RegistryUnavailable()

    with monkeypatch.context() as patch:
        patch.setattr(creation, "get_rfi", Out)  # the registry fails when the SMS is sent
        for _ in range(PER_ADVISOR + 1):
            assert send(client, dossier).status_code == 503
    assert events(registry, "advisor.sms_limited") == []
    for person in WITH_PHONE:  # the whole per-advisor quota is still there
        assert send(client, dossier_of(client, person["nir"])).status_code == 303
    assert len(sms.sent) == PER_ADVISOR


def test_a_text_whose_gateway_answer_was_lost_stays_counted(registry: Any, advisor: Any, sms: RecordingSms,
                                                             monkeypatch: Any) -> None:
    """Attack: with a slow gateway (the text delivered, its answer timing out), a refund per attempt would let a
    stolen advisor session text one person without limit. A failure that may have gone out keeps its units."""
    client, _staff = advisor
    dossier = dossier_of(client, WITH_PHONE[1]["nir"])

    def delivered_but_timed_out(phone: str, text_: str) -> None:
        sms.sent.append((phone, text_))  # the gateway delivered it...
        failure = SmsNotSent(detail="ReadTimeout")
        failure.maybe_sent = True  # ...and its answer was lost
        raise failure

    with monkeypatch.context() as patch:
        patch.setattr(sms, "send", delivered_but_timed_out)
        assert [send(client, dossier).status_code for _ in range(3)] == [503] * 3
    assert send(client, dossier).status_code == 429  # the person's limit holds
    assert len(sms.sent) == 3


@pytest.mark.parametrize(("answer", "maybe_sent"), [("refused", False), (400, False), (500, True),
                                                    ("silent", True)])
def test_the_http_gateway_says_whether_a_failed_text_may_have_gone_out(answer: Any, maybe_sent: bool) -> None:
    """Unreached (connection refused) or refused by the gateway (4xx): nothing went out, the unit is given back.
    A 5xx or no answer in time (the request was sent): it may have gone out, the unit stays spent."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from idp.notify.sms import HttpSmsGateway

    servers: list[Any] = []
    if answer == "refused":
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nobody listens there now
    elif answer == "silent":
        silent = socket.socket()  # accepts the connection, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        servers.append(silent)
        port = silent.getsockname()[1]
    else:
        class Answer(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        http = HTTPServer(("127.0.0.1", 0), Answer)
        threading.Thread(target=http.serve_forever, daemon=True).start()
        servers.append(http)
        port = http.server_address[1]
    try:
        with pytest.raises(SmsNotSent) as failed:
            HttpSmsGateway(f"http://127.0.0.1:{port}/sms", timeout=0.5).send("+33612345601", "texte")
        assert failed.value.maybe_sent is maybe_sent
    finally:
        for server in servers:
            if isinstance(server, HTTPServer):
                server.shutdown()
                server.server_close()
            else:
                server.close()


# --- parallel: a stolen advisor session fires at once (PostgreSQL and the real Redis) ---------------------
PARALLEL = 12


@pytest.fixture
def pg_registry(pg_app: Any) -> Any:
    from idp.rfi_adapter.sql import import_records

    with pg_app.app_context():
        import_records(demo_records())
    return pg_app


def _fire(app: Any, client: Any, dossiers: list[str]) -> list[int]:
    """One request per dossier, all at once, each from its own client holding the stolen cookies."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import csrf_from

    token = csrf_from(client.get(dossiers[0]).data)
    jar = {name: client.get_cookie(name).value for name in ("idp_advisor", "idp_csrf")}

    def one(dossier: str) -> int:
        thief = app.test_client()
        for name, value in jar.items():
            thief.set_cookie(name, value, domain="localhost")
        return thief.post(f"{dossier}/send_sms", data={"csrf_token": token, "reason": "recréation"}).status_code

    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(one, dossiers))


@pytest.mark.postgres
@pytest.mark.redis
def test_parallel_sends_to_one_person_never_pass_the_quota(pg_registry: Any, sms: RecordingSms) -> None:
    client = pg_registry.test_client()
    enrol(pg_registry, client, "claire.conseil@assurance-maladie.fr")
    dossier = dossier_of(client, WITH_PHONE[0]["nir"])
    answers = _fire(pg_registry, client, [dossier] * PARALLEL)
    assert sorted(answers) == [303] * 3 + [429] * (PARALLEL - 3)
    assert len(sms.sent) == 3


@pytest.mark.postgres
@pytest.mark.redis
def test_parallel_sends_by_one_advisor_never_pass_the_advisor_quota(pg_registry: Any, sms: RecordingSms) -> None:
    client = pg_registry.test_client()
    enrol(pg_registry, client, "claire.conseil@assurance-maladie.fr")
    dossiers = [dossier_of(client, person["nir"]) for person in WITH_PHONE] * 3  # 3 each: no person is refused
    answers = _fire(pg_registry, client, dossiers)
    assert sorted(answers) == [303] * PER_ADVISOR + [429] * (PARALLEL - PER_ADVISOR)
    assert len(sms.sent) == PER_ADVISOR
