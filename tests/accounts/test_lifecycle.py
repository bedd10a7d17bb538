"""Advisor reset, SMS re-creation, forgotten password links, and the operator CLI."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sqlalchemy import func, select

from idp.accounts import service
from idp.accounts.models import TermsAcceptance
from idp.audit import AuditEvent
from idp.extensions import db
from idp.mfa import limits
from idp.nir import Nir
from idp.rfi_adapter import get_rfi
from tests.accounts.conftest import PASSWORD, RecordingSms, by_name, make_account, submit
from tests.conftest import proof_of, remember_secret

NEW_PASSWORD = "une nouvelle phrase secrète"
remember_secret(NEW_PASSWORD)


@pytest.fixture
def sms() -> RecordingSms:
    return RecordingSms()


@pytest.fixture
def app_config(sms: RecordingSms) -> dict[str, Any]:
    return {"sms": sms}


def test_reset_removes_account_sessions_locks_but_keeps_audit_and_rfi(loaded: Any,
                                                                    records: list[dict[str, Any]]) -> None:
    from idp.login.sessions import sessions

    marie = by_name(records, "DUPONT")
    account_id = make_account(loaded, marie["nir"])
    with loaded.app_context():
        account = service.get_account(account_id)
        assert account is not None
        service.accept_terms(account, service.publish_terms("v1", "CGU", "texte"))
        session = sessions.create(account_id=account_id, proof=proof_of(["pwd"], at=0))
        for _ in range(3):
            limits.register_failure("pwd", account_id)
        assert limits.account_lock(account_id).locked
        service.reset_account(account)

        assert service.find_account(marie["nir"]) is None
        assert db.session.scalar(select(func.count()).select_from(TermsAcceptance)) == 0  # cascaded
        assert sessions.get(session.id) is None
        assert not limits.account_lock(account_id).locked
        assert get_rfi().lookup(Nir.parse(marie["nir"])).family_name == "DUPONT"
        events = [e.event for e in db.session.scalars(select(AuditEvent).where(AuditEvent.account_id == account_id))]
    assert "account.created" in events and "account.reset" in events


def test_recreation_with_the_sms_provisional_code(loaded: Any, records: list[dict[str, Any]], sms: RecordingSms,
                                                  mailbox: Any) -> None:
    from idp.accounts import creation

    marie = by_name(records, "DUPONT")
    make_account(loaded, marie["nir"])
    with loaded.app_context():
        service.reset_account(service.find_account(marie["nir"]))  # type: ignore[arg-type]
        assert creation.send_provisional_code(Nir.parse(marie["nir"])) == "+33 6 ** ** ** 01"
    assert sms.sent[-1][0] == marie["phone"]
    code = sms.code()
    client = loaded.test_client()
    wrong = submit(client, "/compte/recreation", {"nir": marie["nir"], "code": "00000000"})
    assert "Les informations saisies sont erronées" in wrong.text
    response = submit(client, "/compte/recreation", {"nir": marie["nir"], "code": code})
    assert response.status_code == 303 and response.location.endswith("/compte/creation/email")
    submit(client, "/compte/creation/email", {"email": "marie.nouvelle@example.fr"})
    submit(client, "/compte/creation/code", {"code": mailbox.code()})
    assert submit(client, "/compte/creation/mot-de-passe", {"password": NEW_PASSWORD}).status_code == 303
    with loaded.app_context():
        account = service.authenticate(marie["nir"], NEW_PASSWORD)
        assert account is not None and account.email == "marie.nouvelle@example.fr"


def test_provisional_code_works_once(loaded: Any, records: list[dict[str, Any]], sms: RecordingSms) -> None:
    from idp.accounts import creation

    jean = by_name(records, "MARTIN")
    with loaded.app_context():
        creation.send_provisional_code(Nir.parse(jean["nir"]))
    code = sms.code()
    first, second = loaded.test_client(), loaded.test_client()
    assert submit(first, "/compte/recreation", {"nir": jean["nir"], "code": code}).status_code == 303
    assert "erronées" in submit(second, "/compte/recreation", {"nir": jean["nir"], "code": code}).text


def _reset_link(mailbox: Any) -> str:
    match = re.search(r"http://localhost(/mot-de-passe/nouveau/[A-Za-z0-9_-]+)", mailbox.last()["body"])
    assert match, mailbox.last()["body"]
    return match.group(1)


def test_forgotten_password_link_works_once_and_ends_sessions(loaded: Any, records: list[dict[str, Any]],
                                                              mailbox: Any) -> None:
    from idp.login.sessions import sessions

    marie = by_name(records, "DUPONT")
    account_id = make_account(loaded, marie["nir"])
    with loaded.app_context():
        session = sessions.create(account_id=account_id, proof=proof_of(["pwd"], at=0))
    client = loaded.test_client()
    response = submit(client, "/mot-de-passe-oublie", {"nir": marie["nir"]})
    assert response.status_code == 303
    link = _reset_link(mailbox)
    assert "réinitialisation" in mailbox.last()["subject"]
    assert client.get(link).status_code == 200
    refused = submit(client, link, {"password": "password1"})
    assert "trop courant" in refused.text  # a refused password keeps the link usable
    done = submit(client, link, {"password": NEW_PASSWORD}, page=link)
    assert done.status_code == 303 and done.location.endswith("/mot-de-passe/modifie")
    with loaded.app_context():
        assert service.authenticate(marie["nir"], NEW_PASSWORD) is not None
        assert service.authenticate(marie["nir"], PASSWORD) is None
        assert sessions.get(session.id) is None
    again = client.get(link)
    assert again.status_code == 410 and "plus valide" in again.text


def test_reset_link_expires_after_30_minutes(loaded: Any, records: list[dict[str, Any]], mailbox: Any,
                                             clock: Any) -> None:
    marie = by_name(records, "DUPONT")
    make_account(loaded, marie["nir"])
    client = loaded.test_client()
    submit(client, "/mot-de-passe-oublie", {"nir": marie["nir"]})
    link = _reset_link(mailbox)
    clock.advance(29 * 60)
    assert client.get(link).status_code == 200
    clock.advance(60)
    assert client.get(link).status_code == 410


def test_a_new_request_and_a_reset_invalidate_older_links(loaded: Any, records: list[dict[str, Any]],
                                                          mailbox: Any) -> None:
    marie = by_name(records, "DUPONT")
    make_account(loaded, marie["nir"])
    client = loaded.test_client()
    submit(client, "/mot-de-passe-oublie", {"nir": marie["nir"]})
    first = _reset_link(mailbox)
    submit(client, "/mot-de-passe-oublie", {"nir": marie["nir"]})
    second = _reset_link(mailbox)
    assert client.get(first).status_code == 410 and client.get(second).status_code == 200
    with loaded.app_context():
        service.reset_account(service.find_account(marie["nir"]))  # type: ignore[arg-type]
    assert client.get(second).status_code == 410


@pytest.mark.parametrize("who", ["DUPONT", "BERNARD", "unvalidated"])
def test_forgotten_password_answers_the_same_whether_or_not_there_is_an_account(
        loaded: Any, records: list[dict[str, Any]], mailbox: Any, who: str) -> None:
    """DUPONT has an account, BERNARD has none, MARTIN's e-mail is not validated: same answer."""
    make_account(loaded, by_name(records, "DUPONT")["nir"])
    make_account(loaded, by_name(records, "MARTIN")["nir"], email="jean@example.fr", validated=False)
    nir = by_name(records, "MARTIN" if who == "unvalidated" else who)["nir"]
    client = loaded.test_client()
    response = submit(client, "/mot-de-passe-oublie", {"nir": nir})
    assert response.status_code == 303 and response.location.endswith("/mot-de-passe-oublie/envoye")
    page = client.get(response.location).text
    assert "Si un compte correspond au numéro saisi" in page
    assert len(mailbox.messages) == (1 if who == "DUPONT" else 0)


def test_reset_token_is_masked_in_the_access_log(loaded: Any, records: list[dict[str, Any]], mailbox: Any,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    make_account(loaded, by_name(records, "DUPONT")["nir"])
    client = loaded.test_client()
    submit(client, "/mot-de-passe-oublie", {"nir": by_name(records, "DUPONT")["nir"]})
    link = _reset_link(mailbox)
    token = link.rsplit("/", 1)[1]
    remember_secret(token)
    client.get(link)
    paths = [getattr(r, "path", "") for r in caplog.records if r.name == "idp.access"]
    assert "/mot-de-passe/nouveau/<token>" in paths and not any(token in p for p in paths)


# --- CLI ----------------------------------------------------------------------------------------
def test_cli_accounts_create_show_unlock_reset(cli: Any, tmp_path: Any, records: list[dict[str, Any]]) -> None:
    path = tmp_path / "rfi.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    assert cli("rfi", "import", str(path)).exit_code == 0
    nir = by_name(records, "SANTONI")["nir"]
    created = cli("accounts", "create", "--nir", nir, "--password", PASSWORD, "--email", "paul@example.fr",
                  "--email-validated", "--json")
    assert created.exit_code == 0, created.output
    data = json.loads(created.output)
    assert data["email_validated"] is True and data["phone"] == "+33612345603"
    assert data["nir"] == "1 ** ** ** *** *** 46" and nir not in created.output
    duplicate = cli("accounts", "create", "--nir", nir, "--password", PASSWORD, "--email", "p@example.fr", "--json")
    assert duplicate.exit_code == 1 and json.loads(duplicate.output)["error"] == "account_exists"
    weak = cli("accounts", "create", "--nir", by_name(records, "BENALI")["nir"], "--password", "azerty",
               "--email", "f@example.fr", "--json")
    assert weak.exit_code == 1 and "au moins 8 caractères" in json.loads(weak.output)["message"]

    shown = json.loads(cli("accounts", "show", nir[:13], "--json").output)
    assert shown["id"] == data["id"] and shown["locked_until"] is None
    assert "email_validated: True" in cli("accounts", "show", nir).output
    assert json.loads(cli("accounts", "unlock", nir, "--json").output) == {"id": data["id"], "unlocked": True}
    terms = json.loads(cli("terms", "publish", "--version", "2026-01", "--json").output)
    assert terms["version"] == "2026-01"
    assert json.loads(cli("accounts", "show", nir, "--json").output)["pending_terms"] == "2026-01"
    assert cli("terms", "publish", "--version", "2026-01").exit_code == 1

    reset = json.loads(cli("accounts", "reset", nir, "--json").output)
    assert reset["id"] == data["id"] and reset["reset"] is True
    missing = cli("accounts", "show", nir, "--json")
    assert missing.exit_code == 1 and json.loads(missing.output)["error"] == "not_found"
    assert cli("accounts", "show", "12345", "--json").exit_code == 1


def test_cli_accounts_disable_and_enable(cli: Any, tmp_path: Any, records: list[dict[str, Any]]) -> None:
    path = tmp_path / "rfi.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    cli("rfi", "import", str(path))
    nir = by_name(records, "DUPONT")["nir"]
    account_id = json.loads(cli("accounts", "create", "--nir", nir, "--password", PASSWORD, "--email", "m@example.fr",
                                "--json").output)["id"]
    disabled = cli("accounts", "disable", nir, "--json")
    assert disabled.exit_code == 0 and nir not in disabled.output
    assert json.loads(disabled.output) == {"id": account_id, "status": "disabled", "changed": True}
    assert json.loads(cli("accounts", "show", nir, "--json").output)["status"] == "disabled"
    assert "already disabled" in cli("accounts", "disable", nir).output
    refused = cli("accounts", "reset", nir, "--json")  # enable first: a reset would re-create it active
    assert refused.exit_code == 1 and json.loads(refused.output)["error"] == "account_disabled"
    assert json.loads(cli("accounts", "enable", nir, "--json").output) == \
        {"id": account_id, "status": "active", "changed": True}
    missing = cli("accounts", "disable", by_name(records, "SANTONI")["nir"], "--json")
    assert missing.exit_code == 1 and json.loads(missing.output)["error"] == "not_found"


def test_cli_accounts_create_refuses_a_nir_the_registry_does_not_hold(cli: Any, records: list[dict[str, Any]]) -> None:
    """Issue 11: the registry's data decide who can sign in, so no account for a person it does not hold."""
    answer = cli("accounts", "create", "--nir", by_name(records, "SANTONI")["nir"], "--password", PASSWORD,
                 "--email", "paul@example.fr", "--json")  # the registry is empty here
    assert answer.exit_code == 1 and json.loads(answer.output)["error"] == "identity_not_found"
    assert cli("accounts", "show", by_name(records, "SANTONI")["nir"], "--json").exit_code == 1


def test_cli_reset_with_sms_uses_the_dev_gateway(cli: Any, tmp_path: Any, records: list[dict[str, Any]]) -> None:
    path = tmp_path / "rfi.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    cli("rfi", "import", str(path))
    nir = by_name(records, "DUPONT")["nir"]
    cli("accounts", "create", "--nir", nir, "--password", PASSWORD, "--email", "m@example.fr")
    result = cli("accounts", "reset", nir, "--sms", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["sms_sent_to"] == "+33 6 ** ** ** 01"


@pytest.mark.redis
def test_cli_reset_with_sms_stays_within_the_persons_sms_limit(
        cli: Any, tmp_path: Any, records: list[dict[str, Any]], redis_url: str, redis_prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator (or a script looping over ``idp accounts reset --sms``) cannot flood a person's phone: the
    per-person limit of the advisors' console holds for the CLI too (counted in the real Redis across runs)."""
    monkeypatch.setenv("IDP_REDIS_URL", redis_url)
    monkeypatch.setenv("IDP_REDIS_PREFIX", redis_prefix)
    monkeypatch.setenv("IDP_ADVISOR_SMS_LIMIT", "2")
    path = tmp_path / "rfi.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    cli("rfi", "import", str(path))
    nir = by_name(records, "DUPONT")["nir"]
    outcomes = []
    for _ in range(3):
        cli("accounts", "create", "--nir", nir, "--password", PASSWORD, "--email", "m@example.fr")
        outcomes.append(cli("accounts", "reset", nir, "--sms", "--json"))
    assert [o.exit_code for o in outcomes] == [0, 0, 1]
    assert [json.loads(o.output).get("sms_sent_to") for o in outcomes[:2]] == ["+33 6 ** ** ** 01"] * 2
    refused = json.loads(outcomes[2].output)
    assert refused["error"] == "sms_limit" and "maximum of provisional codes" in refused["message"]
    assert cli("accounts", "show", nir, "--json").exit_code == 1  # the reset itself was done


def test_forgotten_password_requests_are_limited_per_address(loaded: Any, records: list[dict[str, Any]],
                                                             mailbox: Any) -> None:
    """One address cannot probe NIRs or flood mailboxes through the reset page: past the limit, a 429 page."""
    with loaded.app_context():
        limit = loaded.extensions["idp.settings"].address_failure_limit
    client = loaded.test_client()
    nir = by_name(records, "BERNARD")["nir"]
    answers = [submit(client, "/mot-de-passe-oublie", {"nir": nir}).status_code for _ in range(limit + 1)]
    assert answers[:limit] == [303] * limit
    assert answers[limit] == 429


def test_the_reset_answer_does_not_wait_for_the_mail_and_a_failed_mail_withdraws_the_link(
        loaded: Any, records: list[dict[str, Any]], mailbox: Any) -> None:
    """The e-mail leaves from a sender thread: a stalled SMTP relay makes an existing account's answer no
    slower than an unknown NIR's (no enumeration by timing); when it fails, its link is withdrawn."""
    import socket
    import time

    make_account(loaded, by_name(records, "DUPONT")["nir"])
    silent = socket.socket()  # accepts connections, never answers: a stalled relay
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    mail_state = loaded.extensions["mail"]
    mail_state.port, original_port = silent.getsockname()[1], mail_state.port
    try:
        client = loaded.test_client()
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get("/mot-de-passe-oublie").text)
        started = time.monotonic()
        response = client.post("/mot-de-passe-oublie",
                               data={"csrf_token": token.group(1), "nir": by_name(records, "DUPONT")["nir"]})
        answered = time.monotonic() - started
        assert response.status_code == 303 and answered < 1.0
        from idp.notify import outbox

        outbox.drain()  # the sender thread tries the stalled relay and gives up after smtp_timeout
    finally:
        mail_state.port = original_port
        silent.close()
    with loaded.app_context():
        events = [e.event for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        account = service.find_account(by_name(records, "DUPONT")["nir"])
        from idp.accounts import recovery
        from idp.extensions import redis_client

        assert redis_client().scard(recovery._index(account.id)) == 0
    assert events[-2:] == ["password_reset.requested", "password_reset.mail_failed"]
    assert mailbox.messages == []


def test_a_failed_reset_mail_withdraws_only_its_own_link(loaded: Any, records: list[dict[str, Any]],
                                                       mailbox: Any) -> None:
    """A newer link that was delivered stays usable when an older request's mail fails afterwards."""
    from idp.accounts import recovery

    make_account(loaded, by_name(records, "DUPONT")["nir"])
    with loaded.app_context():
        first = recovery.request_reset(by_name(records, "DUPONT")["nir"])
    client = loaded.test_client()
    submit(client, "/mot-de-passe-oublie", {"nir": by_name(records, "DUPONT")["nir"]})
    newer = _reset_link(mailbox)
    remember_secret(newer.rsplit("/", 1)[1])
    assert first is not None
    mail_state = loaded.extensions["mail"]
    mail_state.port, original_port = 9, mail_state.port  # nothing listens there: the older mail fails
    try:
        with loaded.app_context():
            recovery.deliver(first)
    finally:
        mail_state.port = original_port
    assert client.get(newer).status_code == 200


def test_a_forked_worker_sends_later_mail_through_its_own_pool(app: Any) -> None:
    """With gunicorn preloading the app, the outbox module is imported in the master: a forked worker must
    still run its jobs. The parent's sender thread, idle after a job, does not exist in the child: an inherited
    pool would count on it and leave the child's mail queued for ever."""
    import os
    import threading

    from idp.notify import outbox

    outbox.send_later(app, lambda: None).result(5)  # the parent's pool now has an idle thread
    pid = os.fork()
    if pid == 0:  # the child: a job of its own must complete
        status = 1
        try:
            done = threading.Event()
            outbox.send_later(app, done.set)
            status = 0 if done.wait(5) else 1
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the forked process's job never ran"


def test_back_channel_logouts_stuck_on_a_silent_relying_party_do_not_delay_the_mails(app: Any) -> None:
    """Every logout thread waits on a relying party that does not answer: a reset mail still leaves at once
    (its own queue)."""
    import threading

    from idp.notify import outbox

    stuck = threading.Event()
    try:
        for _ in range(8):  # twice the logout threads: the queue is full and backed up
            outbox.send_later(app, lambda: stuck.wait(10), queue="logout")
        sent = threading.Event()
        outbox.send_later(app, sent.set)
        assert sent.wait(5), "the mail waited behind the back-channel logouts"
    finally:
        stuck.set()
        outbox.drain()
