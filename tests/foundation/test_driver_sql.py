"""Hot statements on the driver's cursor (idp.driver_sql): the same rows as through SQLAlchemy, on PostgreSQL
and on SQLite; a statement whose parameters need SQLAlchemy's conversion refused; an autocommit read gives
its pooled connection back transactional. (A connection lost under them: tests/resilience/test_faults_postgres.py.)"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert, text

from tests.oidc.conftest import make_person


def _account_row_both_ways(app: Any, account_id: str) -> tuple[Any, Any]:
    from idp.driver_sql import first_without_transaction
    from idp.extensions import db
    from idp.oidc.claims import _account_statement

    with app.app_context():
        fast = first_without_transaction(_account_statement(), {"id": account_id})
    with app.app_context():
        slow = db.session.execute(_account_statement(), {"id": account_id}).first()
    return fast, slow


def test_an_autocommit_read_gives_the_same_row_as_sqlalchemy(any_app: Any) -> None:
    from idp.extensions import db

    person = make_person(any_app)
    with any_app.app_context():
        db.session.execute(text("UPDATE accounts SET grants_not_before = :at WHERE id = :id"),
                           {"at": datetime(2026, 11, 30, 8, 0, 1, tzinfo=UTC), "id": person.account_id})
        db.session.commit()
    fast, slow = _account_row_both_ways(any_app, person.account_id)
    assert fast is not None and tuple(fast) == tuple(slow)
    assert (fast.status, fast.email_validated) == ("active", True)
    assert fast.cutoff.replace(tzinfo=fast.cutoff.tzinfo or UTC) == datetime(2026, 11, 30, 8, 0, 1, tzinfo=UTC)
    assert _account_row_both_ways(any_app, "no-such-account") == (None, None)


def test_a_read_inside_a_transaction_sees_what_the_transaction_wrote(any_app: Any) -> None:
    """In the Session's transaction, not beside it: a row updated and not committed is read as updated."""
    from idp.driver_sql import first_in_transaction, first_without_transaction
    from idp.extensions import db
    from idp.oidc.claims import _account_statement

    person = make_person(any_app)
    with any_app.app_context():
        db.session.execute(text("UPDATE accounts SET status = 'disabled' WHERE id = :id"), {"id": person.account_id})
        assert first_in_transaction(_account_statement(), {"id": person.account_id}).status == "disabled"
        assert first_without_transaction(_account_statement(), {"id": person.account_id}).status == "disabled"
        db.session.rollback()
        assert first_without_transaction(_account_statement(), {"id": person.account_id}).status == "active"


@pytest.mark.postgres
def test_a_statement_binding_a_json_value_stays_on_sqlalchemy(pg_app: Any) -> None:
    from idp.driver_sql import first_in_transaction
    from idp.oidc.tokens import _REFRESH

    with pg_app.app_context(), pytest.raises(TypeError, match="parameter conversion"):
        first_in_transaction(insert(_REFRESH).returning(_REFRESH.c.id), {"auth": {"acr": "eidas1"}})


@pytest.mark.postgres
def test_an_autocommit_read_gives_its_connection_back_transactional(pg_app: Any) -> None:
    """After the reads, a write in the Session's transaction is still rolled back by a rollback (a pooled
    connection left in autocommit would have committed it on the spot)."""
    from idp.driver_sql import first_without_transaction
    from idp.extensions import db
    from idp.oidc.claims import _account_statement

    person = make_person(pg_app)
    with pg_app.app_context():
        db.engine.dispose()  # one pooled connection from here on: the reads and the write share it
        for _ in range(3):
            assert first_without_transaction(_account_statement(), {"id": person.account_id}) is not None
    with pg_app.app_context():
        assert db.session.connection().connection.driver_connection.autocommit is False
        db.session.execute(text("UPDATE accounts SET email = 'changed@example.org' WHERE id = :id"),
                           {"id": person.account_id})
        db.session.rollback()
        assert db.session.execute(text("SELECT email FROM accounts WHERE id = :id"),
                                  {"id": person.account_id}).scalar() != "changed@example.org"


@pytest.mark.postgres
def test_a_connection_that_cannot_leave_autocommit_is_never_handed_out_again(pg_app: Any, monkeypatch: Any) -> None:
    """The read left its connection in a transaction (here: a BEGIN slipped in), so autocommit cannot be
    switched off: the error is SQLAlchemy's, and that connection is discarded, not given to the next request
    in autocommit (where a refresh rotation would commit on its own)."""
    import sqlalchemy.exc

    from idp import driver_sql
    from idp.extensions import db
    from idp.oidc.claims import _account_statement

    person = make_person(pg_app)
    on_cursor = driver_sql._first_on_cursor
    seen: list[Any] = []

    def leaves_a_transaction(cursor: Any, *args: Any) -> Any:
        seen.append(cursor.connection)
        cursor.execute("BEGIN")
        return on_cursor(cursor, *args)

    with pg_app.app_context():
        db.engine.dispose()
        monkeypatch.setattr(driver_sql, "_first_on_cursor", leaves_a_transaction)
        with pytest.raises(sqlalchemy.exc.DBAPIError):
            driver_sql.first_without_transaction(_account_statement(), {"id": person.account_id})
        monkeypatch.setattr(driver_sql, "_first_on_cursor", on_cursor)
    assert seen and seen[0].closed
    with pg_app.app_context():
        connection = db.session.connection().connection.driver_connection
        assert connection is not seen[0] and connection.autocommit is False
