"""Durable staff records of the advisors' console: advisors and their WebAuthn credentials.

Advisors are not people's accounts: another table, another session cookie, another sign-in (password and a
security key or platform credential, or the organisation's staff OpenID provider). Only the hash of the
one-time enrolment token is stored.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.extensions import Base

ROLES = ("advisor", "supervisor")


def new_advisor_id() -> str:
    """A random UUID4 string (the advisor's opaque id, named in audit events)."""
    return str(uuid.uuid4())


class Advisor(Base):
    """One staff member allowed into ``/conseiller/``."""

    __tablename__ = "advisors"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_advisor_id)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # advisor | supervisor
    source: Mapped[str] = mapped_column(String(16), default="local")  # local | oidc
    password_hash: Mapped[str | None] = mapped_column(String(255))
    enrolment_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    enrolment_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    enrolled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_sign_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def is_supervisor(self) -> bool:
        """Supervisors also read the advisors' action list."""
        return self.role == "supervisor"


class AdvisorCredential(Base):
    """A security key or platform credential of an advisor (W3C WebAuthn L2 §7.1 step 26)."""

    __tablename__ = "advisor_credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    advisor_id: Mapped[str] = mapped_column(ForeignKey("advisors.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)  # base64url
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE_Key bytes
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    transports: Mapped[list[str]] = mapped_column(JSON, default=list)
    aaguid: Mapped[str] = mapped_column(String(36), default="00000000-0000-0000-0000-000000000000")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
