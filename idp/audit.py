"""Audit trail of security events (logins, failures, locks, codes sent, credentials, resets).

An event names the account by its opaque id, never by NIR; ``data`` holds only non-secret facts.
Events outlive the account they describe (an advisor reset keeps them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.extensions import Base, clock, db

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
    if commit:
        db.session.commit()
    return entry
