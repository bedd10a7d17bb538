"""Audit events of a login step go with the step's commit, and are never lost when the step does not commit.

``audit.record_in_request`` keeps the event until the request's next commit (one INSERT for the events
waiting, in that transaction); a request that rolls back, never commits, or whose commit fails still
writes them, alone, before its response leaves. ``audit.record`` is bound to the transaction.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from idp import audit
from idp.audit import AuditEvent
from idp.extensions import clock, db


def _events(app: Any) -> list[str]:
    with app.app_context():
        return [e.event for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def test_events_waiting_in_a_request_are_written_by_its_commit_once(app: Any) -> None:
    with app.test_request_context("/", environ_base={"REMOTE_ADDR": "192.0.2.7"}):
        audit.record_in_request("login_password_ok", account_id="acct-1", client_id="rp")
        audit.record_in_request("code_sent", account_id="acct-1", client_id="rp")
        assert _events(app) == []
        audit.commit_recorded()
        app.process_response(Response())
    assert _events(app) == ["login_password_ok", "code_sent"]
    with app.app_context():
        row = db.session.scalars(select(AuditEvent)).first()
        assert row is not None and row.ip == "192.0.2.7" and row.account_id == "acct-1" and row.data == {}


def test_a_step_that_rolls_back_or_never_commits_still_leaves_its_events(app: Any) -> None:
    with app.test_request_context("/"):
        audit.record_in_request("login_password_ok", account_id="acct-1")
        db.session.rollback()
        audit.record_in_request("code_failed", account_id="acct-1", locked=False)
        app.process_response(Response())
    assert _events(app) == ["login_password_ok", "code_failed"]


def test_a_failed_commit_leaves_the_events_it_carried_and_drops_the_rest(app: Any) -> None:
    with app.app_context():
        audit.record("seed")
        taken = db.session.scalar(select(AuditEvent.id))
    with app.test_request_context("/"):
        audit.record_in_request("code_ok", account_id="acct-1")
        audit.record("login_done", account_id="acct-1", commit=False)  # bound to the failing transaction
        db.session.add(AuditEvent(id=taken, at=clock().now(), event="duplicate", data={}))
        with pytest.raises(IntegrityError):
            db.session.commit()
        db.session.rollback()
        app.process_response(Response())
    assert _events(app) == ["seed", "code_ok"]


def test_secrets_are_refused_before_anything_waits(app: Any) -> None:
    with app.test_request_context("/"), pytest.raises(ValueError, match="secrets"):
        audit.record_in_request("code_sent", code="123456")


def test_an_event_bound_to_the_transaction_goes_with_its_commit_or_its_rollback(app: Any) -> None:
    with app.test_request_context("/"):
        audit.record("terms.published", commit=False, version="v1")
        db.session.rollback()  # nothing else used the database: a rollback without a DBAPI transaction
        audit.record("terms.published", commit=False, version="v2")
        audit.record_in_request("code_ok", account_id="acct-1")
        db.session.commit()
        app.process_response(Response())
    with app.app_context():
        rows = [(e.event, e.data) for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert rows == [("terms.published", {"version": "v2"}), ("code_ok", {})]
