"""``idp audit export``: the audit trail as JSON lines; ``idp audit purge``: its retention."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from sqlalchemy import select

from idp.cli import emit, json_option, with_app


@click.group("audit")
def audit_group() -> None:
    """Audit trail of security events."""


@audit_group.command("export")
@click.option("--since", default=None, help="ISO date or datetime; only events at or after it.")
@click.option("--event", "event_name", default=None, help="Only this event type.")
@with_app
def export(since: str | None, event_name: str | None) -> None:
    """Print the audit events as JSON lines, oldest first."""
    from idp.audit import AuditEvent
    from idp.extensions import db

    query = select(AuditEvent).order_by(AuditEvent.id)
    if since:
        query = query.where(AuditEvent.at >= _instant(since, "--since"))
    if event_name:
        query = query.where(AuditEvent.event == event_name)
    for event in db.session.scalars(query):
        click.echo(json.dumps(event.as_dict(), ensure_ascii=False))


@audit_group.command("purge")
@click.option("--before", required=True, help="ISO date or datetime: delete the events before it (outside the "
                                                "retention period, IDP_AUDIT_RETENTION_DAYS).")
@json_option
@with_app
def purge(before: str, as_json: bool) -> None:
    """Delete the audit events older than --before, once exported to the archive (``idp audit export``)."""
    from idp import retention

    try:
        removed = retention.purge_audit_events(_instant(before, "--before"))
    except retention.WithinRetention as exc:
        raise click.BadParameter(str(exc), param_hint="--before") from None
    emit({"deleted": removed, "before": before}, as_json, f"{removed} audit event(s) deleted (before {before}).")


def _instant(value: str, option: str) -> datetime:
    """An ISO date or datetime from the command line (UTC when it names no offset)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("expected an ISO date such as 2026-01-31", param_hint=option) from None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)  # UTC: SQLite compares naively
