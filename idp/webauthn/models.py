"""Durable WebAuthn platform credentials (one row per fingerprint/face activation).

A credential is usable for ``biometric_ttl`` (seed: 6 months) from its activation, unless revoked.
Only public material is stored: the COSE public key, the credential id, the signature counter and
the backup flags that later assertions are compared with (clone and key-export detection).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Integer, LargeBinary, String, false
from sqlalchemy.orm import Mapped, mapped_column

from idp.extensions import Base


class WebAuthnCredential(Base):
    """One platform credential registered by an account (W3C WebAuthn L2 §7.1 step 26)."""

    __tablename__ = "webauthn_credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    # base64url of the raw credential id: what the browser sends back as `id` in an assertion.
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE_Key bytes
    # Unsigned 32-bit on the wire: BigInteger keeps values above 2**31 on PostgreSQL.
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    backup_eligible: Mapped[bool] = mapped_column(Boolean, default=False)  # BE flag at registration
    backup_state: Mapped[bool] = mapped_column(Boolean, default=False)  # BS flag, last seen
    transports: Mapped[list[str]] = mapped_column(JSON, default=list)
    aaguid: Mapped[str] = mapped_column(String(36), default="00000000-0000-0000-0000-000000000000")
    attestation_format: Mapped[str] = mapped_column(String(32), default="none")
    device_label: Mapped[str] = mapped_column(String(120), default="Appareil")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Activated in a login that already had two factors (e-mail code to an address validated before it, a
    # credential itself activated so, or the password on a trusted browser: idp.login.assurance). Only such
    # credentials replace the security code on web and federation clients; one activated after a
    # password-only (mobile) login serves the app only.
    activated_with_mfa: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The acr of that activation login: a sign-in with this credential never yields more (None: activated
    # before this was recorded, worth the password's level).
    activation_acr: Mapped[str | None] = mapped_column(String(16))

    @property
    def activation_factors(self) -> int:
        """How many factors the activation login proved (2: it may stand in for two factors)."""
        return 2 if self.activated_with_mfa else 1

    def usable_at(self, instant: datetime) -> bool:
        """True when neither revoked nor past its expiry at ``instant``."""
        return self.revoked_at is None and as_utc(self.expires_at) > instant


def as_utc(value: datetime) -> datetime:
    """The stored instant as aware UTC (SQLite drops the timezone of DateTime(timezone=True) columns)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
