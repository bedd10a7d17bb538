"""Trusted browsers ("J'utilise mon ordinateur personnel", DESIGN.md §2).

When the box is ticked and the security code succeeds, the browser receives a cookie holding a
random token (256 bits); only its SHA-256 is kept in the database, bound to the account, with its
creation, expiry (6 months by default), last use and revocation. The cookie alone is what makes a
browser trusted (seed: refused cookies or another browser mean a code is asked); a forged, expired,
revoked or foreign value simply is not trusted and is cleared by the login view.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import DateTime, ForeignKey, String, select, update
from sqlalchemy.orm import Mapped, mapped_column

from idp.crypto import hash_token, new_token
from idp.extensions import GROWING_ID, Base, clock, db, settings

MAX_COOKIE_LENGTH = 128


class TrustedBrowser(Base):
    """One browser trusted by one account."""

    __tablename__ = "trusted_browsers"

    id: Mapped[int] = mapped_column(GROWING_ID, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # "Chrome sur Windows": what the person sees on "Sécurité de mon compte" (from the User-Agent at trust time).
    label: Mapped[str | None] = mapped_column(String(120))


def _aware(instant: datetime) -> datetime:
    # SQLite gives naive datetimes back; they were stored in UTC.
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def trust(account_id: str, *, label: str | None = None) -> str:
    """Record a new trusted browser for the account; returns the cookie value (shown once)."""
    token = new_token(32)
    now = clock().now()
    db.session.add(TrustedBrowser(account_id=account_id, token_hash=hash_token(token), created_at=now,
                                  expires_at=now + timedelta(seconds=settings().trusted_browser_ttl),
                                  label=(label or "")[:120] or None))
    db.session.commit()
    return token


def is_trusted(token: str | None, account_id: str) -> bool:
    """True when ``token`` is a live trusted browser of this very account (and notes its use, written by the
    login step's own commit: a step that fails loses only this note)."""
    if not token or len(token) > MAX_COOKIE_LENGTH:
        return False
    row = db.session.scalar(select(TrustedBrowser).where(TrustedBrowser.token_hash == hash_token(token)))
    now = clock().now()
    if row is None or row.account_id != account_id or row.revoked_at is not None or _aware(row.expires_at) <= now:
        return False
    row.last_used_at = now
    return True


def revoke(token: str) -> None:
    """Revoke the trusted browser behind a cookie value (unknown values are ignored)."""
    db.session.execute(update(TrustedBrowser).where(TrustedBrowser.token_hash == hash_token(token),
                                                    TrustedBrowser.revoked_at.is_(None))
                       .values(revoked_at=clock().now()))
    db.session.commit()


def revoke_one(account_id: str, browser_id: int) -> bool:
    """Revoke one of the account's trusted browsers ("Sécurité de mon compte"); False if not theirs or gone."""
    result = db.session.execute(update(TrustedBrowser).where(TrustedBrowser.id == browser_id,
                                                             TrustedBrowser.account_id == account_id,
                                                             TrustedBrowser.revoked_at.is_(None))
                                .values(revoked_at=clock().now()))
    db.session.commit()
    return bool(getattr(result, "rowcount", 0))


def is_current(row: TrustedBrowser, token: str | None) -> bool:
    """Whether ``row`` is the browser holding the cookie value ``token``."""
    from idp.crypto import constant_time_equal

    return bool(token) and len(token or "") <= MAX_COOKIE_LENGTH and constant_time_equal(row.token_hash,
                                                                                          hash_token(token or ""))


def revoke_all(account_id: str) -> int:
    """Revoke every trusted browser of an account (password change, advisor action); returns how many."""
    result = db.session.execute(update(TrustedBrowser).where(TrustedBrowser.account_id == account_id,
                                                             TrustedBrowser.revoked_at.is_(None))
                                .values(revoked_at=clock().now()))
    db.session.commit()
    return int(getattr(result, "rowcount", 0) or 0)


def revoke_on_event(account_id: str, **_: object) -> None:
    """Lifecycle receiver (password changed, account disabled): whoever had the password may have trusted their
    browser."""
    revoke_all(account_id)


def list_for(account_id: str) -> list[TrustedBrowser]:
    """The account's live trusted browsers, newest first."""
    now = clock().now()
    rows = db.session.scalars(select(TrustedBrowser).where(TrustedBrowser.account_id == account_id,
                                                           TrustedBrowser.revoked_at.is_(None))
                              .order_by(TrustedBrowser.created_at.desc()))
    return [r for r in rows if _aware(r.expires_at) > now]
