"""The hottest statements run on the database driver's own cursor, on PostgreSQL.

Through SQLAlchemy, one statement of a hot path (the refresh rotation, the code exchange's new family, the
userinfo account read) pays more than its round trip: the Session's connection and transaction bookkeeping, the
execution context, the result machinery, the pool's events (measured in-process: an autocommit account read
costs 231 µs through the Session, 171 µs through an engine connection, 80-93 µs on the driver's cursor of a pooled
connection). These helpers keep the statement's one definition (a Core or ``text()`` construct, compiled once
per dialect) and run it with psycopg, which prepares it server-side after a few executions
(``prepare_threshold``); any other dialect (SQLite, the embedded default) runs it through SQLAlchemy as before.

Only for statements whose parameters and result columns need no conversion by SQLAlchemy: strings,
numbers, booleans, timezone-aware datetimes, and JSON columns *read* (psycopg decodes them); a statement
that binds a JSON value or a type with a bind processor stays on SQLAlchemy (checked when compiled), unless it
is ``text()`` that binds the JSON as a string and casts it (the code exchange's family insert).

Failures keep the application's handling: a driver error is raised as the SQLAlchemy exception SQLAlchemy
would have raised (:class:`sqlalchemy.exc.OperationalError`... with ``connection_invalidated`` set for a
lost connection, which :func:`idp.errors.is_dependency_failure` answers with a 503), and a lost connection
is invalidated with the whole pool (as SQLAlchemy does on a disconnect: a database restart costs one failed
request per worker, not one per pooled connection).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy.exc

from idp.extensions import db


@dataclass
class _Compiled:
    sql: str
    row: Any = field(default=None)  # a namedtuple type, made from the first cursor description


# Keyed by the statement object itself (kept alive here): the statements are module-level or built once.
_compiled: dict[tuple[Any, str], _Compiled] = {}


def _compile(statement: Any, dialect: Any) -> _Compiled:
    key = (statement, dialect.name)
    found = _compiled.get(key)
    if found is None:
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup or any(compiled._bind_processors.values()):
            raise TypeError("driver_sql: this statement needs SQLAlchemy's parameter conversion")
        found = _compiled[key] = _Compiled(str(compiled))
    return found


def _first_on_cursor(cursor: Any, compiled: _Compiled, params: Mapping[str, Any]) -> Any:
    cursor.execute(compiled.sql, params)
    values = cursor.fetchone()
    if values is None:
        return None
    if compiled.row is None:
        compiled.row = namedtuple("Row", [column.name for column in cursor.description])  # type: ignore[misc]
    return compiled.row(*values)


@contextmanager
def _translated(compiled: _Compiled, params: Mapping[str, Any], invalidate: Any, dialect: Any,
                driver: Any) -> Iterator[None]:
    """Driver errors as SQLAlchemy's, a lost connection invalidated (never handed out again)."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        lost = dialect.is_disconnect(exc, driver, None) or driver.closed or driver.broken
        if lost:  # as SQLAlchemy does on a disconnect: this connection and every other pooled one go
            invalidate(exc)
            db.engine.dispose()  # the pool is replaced; connections in use are closed when given back
        raise sqlalchemy.exc.DBAPIError.instance(compiled.sql, dict(params), exc, psycopg.Error, hide_parameters=True,
                                                 connection_invalidated=lost, dialect=dialect) from exc


def first_in_transaction(statement: Any, params: Mapping[str, Any]) -> Any:
    """The first row of ``statement`` (or None), in the Session's transaction (not committed)."""
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        return connection.execute(statement, params).first()
    compiled = _compile(statement, connection.dialect)
    driver = connection.connection.driver_connection
    with _translated(compiled, params, connection.invalidate, connection.dialect, driver):
        return _first_on_cursor(driver.cursor(), compiled, params)  # type: ignore[union-attr]


def first_without_transaction(statement: Any, params: Mapping[str, Any]) -> Any:
    """The first row of a read-only ``statement`` (or None), in autocommit (see
    :func:`idp.extensions.reads_without_transaction`): on PostgreSQL on a pooled connection of its own, given
    back at once, when the Session has not started a transaction in this request; else in the Session's
    transaction, as :func:`first_in_transaction` (SQLite: no round trip to save)."""
    dialect = db.engine.dialect
    if db.session().in_transaction() or dialect.name != "postgresql":  # SQLite: no round trip to save
        return first_in_transaction(statement, params)
    compiled = _compile(statement, dialect)
    pooled = db.engine.raw_connection()
    driver: Any = pooled.driver_connection
    try:
        with _translated(compiled, params, pooled.invalidate, dialect, driver):
            driver.autocommit = True
            try:
                return _first_on_cursor(driver.cursor(), compiled, params)
            finally:
                if not driver.closed:
                    driver.autocommit = False
    finally:
        if pooled.is_valid and (driver.closed or driver.autocommit):  # never handed out again in autocommit
            pooled.invalidate()  # (a write of the next request would commit on its own)
        pooled.close()  # back to the pool (or discarded when invalidated)
