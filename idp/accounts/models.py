"""Durable account records.

The NIR is never stored in clear: ``nir_hmac`` (keyed HMAC) serves look-ups and ``nir_enc``
(AES-GCM) lets an operator display it. The account's public id is a random UUID; it is the only
identifier that appears in logs, audit events and (through pairwise derivation) in tokens.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, case
from sqlalchemy.orm import Mapped, mapped_column

from idp.extensions import Base


def new_id() -> str:
    """A random UUID4 string (public, opaque account id)."""
    return str(uuid.uuid4())


class Account(Base):
    """One person's account (one per RFI identity)."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    nir_hmac: Mapped[str] = mapped_column(String(64), unique=True)
    nir_enc: Mapped[str] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(String(254))
    email_validated: Mapped[bool] = mapped_column(Boolean, default=False)
    phone: Mapped[str | None] = mapped_column(String(20))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | disabled
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Grants (sessions, codes, refresh families) from a login before this instant are refused wherever they are
    # checked: set by a password change and by disabling the account (what a revocation in flight missed).
    # Null (accounts before migration 0007): the last password change. See ``grants_cutoff``.
    grants_not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    login_count: Mapped[int] = mapped_column(Integer, default=0)
    biometric_offer_optout: Mapped[bool] = mapped_column(Boolean, default=False)

    @property
    def is_active(self) -> bool:
        """Only active accounts can sign in."""
        return status_allows_sign_in(self.status)

    @property
    def grants_cutoff(self) -> datetime | None:
        """Grants from a login before this instant are refused: the later of ``grants_not_before`` and the last
        password change (a writer that set only the latter, an older release during a rolling deploy, never
        moves the cut-off back); the SQL reading it is :func:`grants_cutoff_column`."""
        known = [t for t in (self.grants_not_before, self.password_changed_at) if t is not None]
        return max(known, key=_utc) if known else None


def status_allows_sign_in(status: str | None) -> bool:
    """The account rule of :attr:`Account.is_active`, for a status read without loading the account."""
    return status == "active"


def grants_cutoff_column(table: Any) -> Any:
    """:attr:`Account.grants_cutoff` as a SQL expression on ``table`` (``accounts`` or an alias of it): the
    later of the two, either may be null (portable: SQLite has no GREATEST)."""
    cut, changed = table.c.grants_not_before, table.c.password_changed_at
    return case((changed.is_(None), cut), (cut.is_(None), changed), (cut > changed, cut), else_=changed)


def grants_cutoff_now(now: datetime) -> datetime:
    """The cut-off to store at ``now``: rounded up to the whole second, as ``auth_time`` is whole seconds
    (a login earlier in the same second is cut off too; one in the rest of that second is refused, rarely)."""
    whole = now.replace(microsecond=0)
    return whole if whole == now else whole + timedelta(seconds=1)


def _utc(instant: datetime) -> datetime:
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


class TermsVersion(Base):
    """A published version of the terms of use (``idp terms publish``)."""

    __tablename__ = "terms_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TermsAcceptance(Base):
    """An account accepted a terms version."""

    __tablename__ = "terms_acceptances"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    terms_id: Mapped[int] = mapped_column(ForeignKey("terms_versions.id", ondelete="CASCADE"), primary_key=True)
    accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
