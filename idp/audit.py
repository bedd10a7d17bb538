"""Audit trail of security events (logins, failures, locks, codes sent, credentials, resets).

An event names the account by its opaque id, never by NIR; ``data`` holds only non-secret facts.
Events outlive the account they describe (an advisor reset keeps them).

:func:`record` commits at once (or leaves the commit to the caller). :func:`record_in_request` lets the
request's next commit write the event with the rest of its work (one commit per request instead of one per
event, one INSERT for the events waiting); whatever no commit wrote when the response leaves (a refused
step, a failure, a rollback) is written then, in a transaction of its own (:func:`init_app`'s after-request
hook): such an event is never lost.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import JSON, DateTime, String, event
from sqlalchemy.orm import Mapped, Session, mapped_column, scoped_session

from idp import metrics
from idp.extensions import GROWING_ID, Base, clock, db

if TYPE_CHECKING:
    from flask import Flask, Response
    from sqlalchemy import Table

FORBIDDEN_KEYS = frozenset({"nir", "password", "code", "secret", "token", "otp"})


class AuditEvent(Base):
    """One security event."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(GROWING_ID, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    event: Mapped[str] = mapped_column(String(64), index=True)
    account_id: Mapped[str | None] = mapped_column(String(36), index=True)
    client_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(45))
    request_id: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view for exports."""
        return {"id": self.id, "at": self.at.isoformat(), "event": self.event, "account_id": self.account_id,
                "client_id": self.client_id, "ip": self.ip, "request_id": self.request_id, "data": self.data}


def _row(event: str, account_id: str | None, client_id: str | None, data: dict[str, Any]) -> dict[str, Any]:
    """The table row of an event (checked: no secret in ``data``); counted in the metrics."""
    from flask import g, has_request_context, request

    leaked = FORBIDDEN_KEYS & set(data)
    if leaked:
        raise ValueError(f"audit data may not carry secrets: {sorted(leaked)}")
    in_request = has_request_context()
    metrics.audited(event, data)
    return {"at": clock().now(), "event": event, "account_id": account_id, "client_id": client_id,
            "ip": request.remote_addr if in_request else None,
            "request_id": getattr(g, "request_id", None) if in_request else None, "data": data}


def record(event: str, *, account_id: str | None = None, client_id: str | None = None,
           commit: bool = True, **data: Any) -> None:
    """Append an audit event to the current transaction (committed now unless ``commit=False``): written by
    its commit (in a request, in the one INSERT of the events waiting), gone with its rollback."""
    from flask import g, has_request_context

    row = _row(event, account_id, client_id, data)
    if has_request_context():
        session = db.session()
        if not session.in_transaction():
            session.begin()  # no round trip: a rollback from now on drops the row with the transaction
        g.setdefault(_IN_TRANSACTION, []).append(row)
    else:
        _insert(db.session, [row])
    if commit:
        db.session.commit()


_UNSAVED = "_audit_unsaved"  # rows of record_in_request that no transaction holds yet
_IN_COMMIT = "_audit_in_commit"  # rows inserted by the commit under way (back to unsaved if it fails)
_IN_TRANSACTION = "_audit_in_transaction"  # rows of record(): the current transaction's, written by its commit


def record_in_request(name: str, *, account_id: str | None = None, client_id: str | None = None,
                      **data: Any) -> None:
    """Append an audit event to the current request: the request's next commit writes it (one INSERT for all
    the events waiting, in that transaction), or, failing that, the after-request hook does before the
    response leaves (never lost). Outside a request: committed at once."""
    from flask import g, has_request_context

    if not has_request_context():
        record(name, account_id=account_id, client_id=client_id, **data)
        return
    g.setdefault(_UNSAVED, []).append(_row(name, account_id, client_id, data))


def _insert(session: Session | scoped_session[Any], rows: list[dict[str, Any]]) -> None:
    # Core INSERT of the table (no ORM unit of work, no RETURNING of ids nobody reads): about half the CPU.
    session.execute(cast("Table", AuditEvent.__table__).insert(), rows)


def _before_commit(session: Session) -> None:
    """The commit writes the events waiting in the request, in its own transaction."""
    from flask import g, has_request_context

    if has_request_context():
        unsaved = g.pop(_UNSAVED, None) or []
        bound = g.pop(_IN_TRANSACTION, None) or []
        if unsaved:
            g.setdefault(_IN_COMMIT, []).extend(unsaved)
        if unsaved or bound:
            _insert(session, bound + unsaved)


def _after_commit(session: Session) -> None:
    """The commit wrote them."""
    from flask import g, has_request_context

    if has_request_context():
        g.pop(_IN_COMMIT, None)


def _after_rollback(session: Session, *_: Any) -> None:
    """A commit that failed (or a rollback before its end) did not write them: the events of
    :func:`record_in_request` wait again, those of :func:`record` are gone with their transaction."""
    from flask import g, has_request_context

    if has_request_context():
        g.pop(_IN_TRANSACTION, None)
        lost = g.pop(_IN_COMMIT, None)
        if lost:
            g.setdefault(_UNSAVED, [])[:0] = lost


def write_unsaved(response: Response) -> Response:
    """Write the events of :func:`record_in_request` that no commit of the request wrote."""
    from flask import g

    if g.get(_UNSAVED) or g.get(_IN_COMMIT):
        # What the request did not commit would be rolled back at teardown anyway: discard it now, so that
        # only the audit events are committed here (the rollback puts back those of a failed commit).
        db.session.rollback()
        unsaved = g.pop(_UNSAVED, None)
        if unsaved:
            _insert(db.session, unsaved)
            db.session.commit()
    return response


def init_app(app: Flask) -> None:
    """Install the after-request hook that writes unsaved audit events, and the session listeners."""
    app.after_request(write_unsaved)
    for name, listener in (("before_commit", _before_commit), ("after_commit", _after_commit),
                           ("after_rollback", _after_rollback), ("after_soft_rollback", _after_rollback)):
        if not event.contains(db.session, name, listener):
            event.listen(db.session, name, listener)


def commit_recorded() -> None:
    """Commit now when events of :func:`record_in_request` wait in the session (the end of a step)."""
    from flask import g, has_request_context

    if has_request_context() and g.get(_UNSAVED):
        db.session.commit()
