"""``idp audit export``: the audit trail as JSON lines."""

from __future__ import annotations

import json

import click
from sqlalchemy import select

from idp.cli import with_app


@click.group("audit")
def audit_group() -> None:
    """Audit trail of security events."""


@audit_group.command("export")
@click.option("--since", default=None, help="ISO date or datetime; only events at or after it.")
@click.option("--event", "event_name", default=None, help="Only this event type.")
@with_app
def export(since: str | None, event_name: str | None) -> None:
    """Print the audit events as JSON lines, oldest first."""
    from datetime import UTC, datetime

    from idp.audit import AuditEvent
    from idp.extensions import db

    query = select(AuditEvent).order_by(AuditEvent.id)
    if since:
        try:
            start = datetime.fromisoformat(since)
        except ValueError:
            raise click.BadParameter("expected an ISO date such as 2026-01-31", param_hint="--since") from None
        query = query.where(AuditEvent.at >= (start if start.tzinfo else start.replace(tzinfo=UTC)))
    if event_name:
        query = query.where(AuditEvent.event == event_name)
    for event in db.session.scalars(query):
        click.echo(json.dumps(event.as_dict(), ensure_ascii=False))
