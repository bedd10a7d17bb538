"""One injectable clock.

Every decision that depends on time (code expiry, lock end, quota window, token lifetimes) reads
:func:`now` from the application's clock; Redis TTLs are only housekeeping. Tests install a
:class:`FrozenClock` and move it instead of sleeping.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")


class Clock(Protocol):
    """Source of the current time (timezone-aware UTC)."""

    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> datetime:
        """The current instant from the operating system."""
        return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to (tests, and multi-process tests through a shared file)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or datetime(2026, 1, 5, 13, 30, tzinfo=UTC)).astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The frozen instant."""
        with self._lock:
            return self._now

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        """Move the clock forward by ``seconds`` (and/or timedelta keyword arguments)."""
        with self._lock:
            self._now += timedelta(seconds=seconds, **delta)
            return self._now

    def set(self, instant: datetime) -> None:
        """Jump to ``instant``."""
        with self._lock:
            self._now = instant.astimezone(UTC)


class FileClock:
    """A clock whose offset from real time is read from a file, so tests can move the clock of
    server processes they start (gunicorn workers) without sleeping. Development and tests only."""

    def __init__(self, path: str) -> None:
        self.path = path

    def now(self) -> datetime:
        """Real time plus the offset (seconds) written in the file; 0 when unreadable."""
        try:
            with open(self.path) as fh:
                offset = float(fh.read().strip() or 0)
        except (OSError, ValueError):
            offset = 0.0
        return datetime.now(UTC) + timedelta(seconds=offset)


def timestamp(instant: datetime) -> int:
    """Whole seconds since the epoch."""
    return int(instant.timestamp())


def paris_display(instant: datetime) -> str:
    """Format as the seed does: ``05/01/2023 - 14h45`` in Europe/Paris local time."""
    local = instant.astimezone(PARIS)
    return local.strftime("%d/%m/%Y - %Hh%M")
