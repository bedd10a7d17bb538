"""Retention of the durable tables (``docs/CAPACITY.md``, "Retention policy"): what is deleted, and when.

- ``oidc_refresh_tokens``: a family's rows go one day after its absolute expiry, rotated ones included (they
  must stay until then: a rotated token presented again revokes its family, and would otherwise be an
  unknown token). ``idp tokens purge``, daily.
- ``audit_events``: kept :attr:`~idp.settings.Settings.audit_retention_days` (12 months by default), then
  deleted by ``idp audit purge --before DATE`` once exported (``idp audit export``) to the archive. A date
  inside the retention period is refused.

Both delete in batches, each its own transaction (short locks, bounded WAL per commit, a purge that stops
half-way leaves a consistent table and is simply run again). Each purge is itself audited, twice: a
``*.purge_started`` event committed before the first batch (a purge cut short still leaves its trace) and a
``*.purged`` event with the count at the end. These records of purges are never purged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import delete, select

from idp import audit
from idp.extensions import clock, db, settings

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult

REFRESH_GRACE = timedelta(days=1)  # a family's rows outlive its absolute expiry by this much
BATCH = 10_000  # rows per transaction


class WithinRetention(ValueError):
    """The date asked for is inside the retention period."""

    def __init__(self, earliest: datetime) -> None:
        super().__init__(f"audit events are kept {settings().audit_retention_days} days: "
                         f"--before must be on or before {earliest.date().isoformat()}")
        self.earliest = earliest


def _purge(table: Any, older: Any, *, batch: int) -> int:
    """Delete the rows of ``table`` matching ``older``, ``batch`` at a time, each batch committed."""
    removed = 0
    while True:
        ids = select(table.c.id).where(older).order_by(table.c.id).limit(batch).scalar_subquery()
        done = cast("CursorResult[Any]", db.session.execute(delete(table).where(table.c.id.in_(ids)))).rowcount
        db.session.commit()
        removed += done
        if done < batch:
            return removed


PURGE_EVENTS = ("tokens.purge_started", "tokens.purged", "audit.purge_started", "audit.purged")  # kept forever


def purge_refresh_tokens(*, batch: int = BATCH) -> int:
    """Delete the refresh tokens of every family that expired more than :data:`REFRESH_GRACE` ago; returns
    how many rows went (audited ``tokens.purge_started``, then ``tokens.purged``)."""
    from idp.oidc.models import RefreshToken

    table = RefreshToken.__table__
    before = clock().now() - REFRESH_GRACE
    audit.record("tokens.purge_started", before=before.isoformat())
    removed = _purge(table, table.c.expires_at < before, batch=batch)
    audit.record("tokens.purged", before=before.isoformat(), count=removed)
    return removed


def earliest_audit_purge() -> datetime:
    """The latest ``before`` an audit purge accepts now: the start of the retention period."""
    return clock().now() - timedelta(days=settings().audit_retention_days)


def purge_audit_events(before: datetime, *, batch: int = BATCH) -> int:
    """Delete the audit events strictly before ``before`` (aware), which must be outside the retention period
    (:class:`WithinRetention` otherwise); returns how many went. The purge itself is audited
    (``audit.purge_started`` before the first batch, ``audit.purged`` with the date and the count after the
    last); the records of purges are never deleted."""
    before = before.astimezone(UTC)  # SQLite compares the stored UTC wall-clock times naively
    earliest = earliest_audit_purge()
    if before > earliest:
        raise WithinRetention(earliest)
    table = audit.AuditEvent.__table__
    audit.record("audit.purge_started", before=before.isoformat())
    removed = _purge(table, (table.c.at < before) & table.c.event.not_in(PURGE_EVENTS), batch=batch)
    audit.record("audit.purged", before=before.isoformat(), count=removed)
    return removed
