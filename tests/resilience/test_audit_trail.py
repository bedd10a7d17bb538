"""Every authentication event leaves an audit event without any secret, and ``idp audit export`` prints them."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import TEST_SECRET
from tests.login.conftest import (
    NIR,
    NIR_SPACED,
    PASSWORD,
    bind,
    make_account,
    new_interaction,
    post_code,
    post_identify,
    rp_answer,
)


def _events(app: Any) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from idp.audit import AuditEvent
    from idp.extensions import db

    with app.app_context():
        return [e.as_dict() for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def test_login_events_lock_and_reset_are_audited_without_secrets(app: Any, mailbox: Any, monkeypatch: Any,
                                                                  tmp_path: Any) -> None:
    """Wrong passwords up to the lock, a code sent, a wrong code, a right code, the login, an advisor reset.

    Expected: events login_password_failed (the 3rd with locked=true), login_password_ok, code_sent,
    code_failed, code_ok, login_done, account.reset, each with the opaque account id and no NIR,
    password or code anywhere in the row; ``idp audit export`` prints them as JSON lines (filterable)."""
    person = make_account(app)
    other = make_account(app, nir="295019912611146", email="bob@exemple.fr")
    client = app.test_client()
    bind(client, new_interaction(app))
    for _ in range(3):
        post_identify(client, nir="295019912611146", password="mauvais-mot-de-passe")
    assert post_identify(client).status_code == 303
    code = mailbox.code()
    post_code(client, "000000" if code != "000000" else "111111")
    rp_answer(post_code(client, code))
    from idp.accounts import service

    with app.app_context():
        service.reset_account(service.find_account(NIR))

    events = _events(app)
    names = [e["event"] for e in events]
    for expected in ("login_password_failed", "login_password_ok", "code_sent", "code_failed", "code_ok",
                     "login_done", "account.reset"):
        assert expected in names, (expected, names)
    failures = [e for e in events if e["event"] == "login_password_failed"]
    assert [e["data"]["locked"] for e in failures] == [False, False, True]
    assert {e["account_id"] for e in failures} == {other.account_id}
    assert all(e["account_id"] == person.account_id for e in events if e["event"] in ("code_sent", "login_done"))
    dump = json.dumps(events, ensure_ascii=False)
    for secret in (NIR, NIR_SPACED, "295019912611146", PASSWORD, "mauvais-mot-de-passe", code):
        assert secret not in dump

    from click.testing import CliRunner

    from idp.cli import main

    monkeypatch.setenv("IDP_DATABASE_URL", app.config["SQLALCHEMY_DATABASE_URI"])
    monkeypatch.setenv("IDP_SECRET_KEY", TEST_SECRET)
    exported = CliRunner().invoke(main, ["audit", "export"], catch_exceptions=False)
    lines = [json.loads(line) for line in exported.output.splitlines() if line.strip()]
    assert [line["event"] for line in lines] == names
    only = CliRunner().invoke(main, ["audit", "export", "--event", "code_failed"], catch_exceptions=False)
    assert [json.loads(x)["event"] for x in only.output.splitlines()] == ["code_failed"]
    assert CliRunner().invoke(main, ["audit", "export", "--since", "hier"]).exit_code != 0


def test_audit_record_refuses_secret_keys(app: Any) -> None:
    """``record(..., password=...)`` (or nir, code, token, secret, otp) is a programming error, not a leak."""
    import pytest

    from idp.audit import record

    with app.app_context():
        for key in ("nir", "password", "code", "token", "secret", "otp"):
            with pytest.raises(ValueError):
                record("x", **{key: "valeur"})
