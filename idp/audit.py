"""Audit trail of security events (logins, failures, locks, codes sent, credentials, resets).

An event names the account by its opaque id, never by NIR; ``data`` holds only non-secret facts.
Events outlive the account they describe (an advisor reset keeps them).

:func:`record` commits at once (or leaves the commit to the caller). :func:`record_in_request` lets the
request's next commit write the event with the rest of its work (one commit per request instead of one per
event); whatever no commit wrote when the response leaves (a refused step, a failure, a rollback) is written
then, in a transaction of its own (:func:`init_app`'s after-request hook): such an event is never lost.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, DateTime, Integer, String, event
from sqlalchemy.orm import Mapped, Session, mapped_column

from idp import metrics
from idp.extensions import Base, clock, db

if TYPE_CHECKING:
    from flask import Flask, Response

FORBIDDEN_KEYS = frozenset({"nir", "password", "code", "secret", "token", "otp"})


class AuditEvent(Base):
    """One security event."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
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


def record(event: str, *, account_id: str | None = None, client_id: str | None = None,
           commit: bool = True, **data: Any) -> AuditEvent:
    """Append an audit event (within the current transaction; committed unless ``commit=False``)."""
    from flask import g, has_request_context, request

    leaked = FORBIDDEN_KEYS & set(data)
    if leaked:
        raise ValueError(f"audit data may not carry secrets: {sorted(leaked)}")
    in_request = has_request_context()
    entry = AuditEvent(
        at=clock().now(), event=event, account_id=account_id, client_id=client_id,
        ip=request.remote_addr if in_request else None,
        request_id=getattr(g, "request_id", None) if in_request else None,
        data=data,
    )
    db.session.add(entry)
    metrics.audited(event, data)
    if commit:
        db.session.commit()
    return entry


_UNSAVED = "_audit_unsaved"


def record_in_request(name: str, *, account_id: str | None = None, client_id: str | None = None,
                      **data: Any) -> AuditEvent:
    """Append an audit event to the current transaction: the request's next commit writes it, or, failing
    that, the after-request hook does before the response leaves (never lost). Outside a request: committed."""
    from flask import g, has_request_context

    if not has_request_context():
        return record(name, account_id=account_id, client_id=client_id, **data)
    entry = record(name, account_id=account_id, client_id=client_id, commit=False, **data)
    g.setdefault(_UNSAVED, []).append((entry, _row(entry)))
    return entry


def _row(entry: AuditEvent) -> dict[str, Any]:
    return {"at": entry.at, "event": entry.event, "account_id": entry.account_id, "client_id": entry.client_id,
            "ip": entry.ip, "request_id": entry.request_id, "data": dict(entry.data)}


def _after_commit(session: Session) -> None:
    """A commit wrote every event still in the session; the ones a rollback dropped stay to be written."""
    from flask import g, has_request_context

    if has_request_context():
        unsaved = g.get(_UNSAVED)
        if unsaved:
            g.setdefault(_UNSAVED, [])[:] = [item for item in unsaved if item[0] not in session]


def _write_unsaved(response: Response) -> Response:
    """Write the events of :func:`record_in_request` that no commit of the request wrote."""
    from flask import g

    unsaved = g.pop(_UNSAVED, None)
    if unsaved:
        # What the request did not commit would be rolled back at teardown anyway: discard it now, so that
        # only the audit events are committed here.
        db.session.rollback()
        db.session.add_all(AuditEvent(**row) for _entry, row in unsaved)
        db.session.commit()
    return response


def init_app(app: Flask) -> None:
    """Install the after-request hook that writes unsaved audit events, and the commit listener."""
    app.after_request(_write_unsaved)
    if not event.contains(db.session, "after_commit", _after_commit):
        event.listen(db.session, "after_commit", _after_commit)


def commit_recorded() -> None:
    """Commit now when events of :func:`record_in_request` wait in the session (the end of a step)."""
    from flask import g, has_request_context

    if has_request_context() and g.get(_UNSAVED):
        db.session.commit()
