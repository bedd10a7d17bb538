"""Browser sessions (single sign-on) kept in Redis.

A session is created when a login interaction finishes (always with a new id: no fixation), is
referenced by the ``idp_session`` cookie (:mod:`idp.login.cookies`), and ends on idle timeout,
absolute timeout, logout, password change or advisor reset (lifecycle signals, :mod:`idp.lifecycle`).
Decisions use the app clock; the Redis TTL only cleans up.

A session keeps the factors its login proved (:class:`idp.login.assurance.Proof`) and the ``amr``, ``acr``
and ``auth_time`` derived from them: single sign-on yields at most that level, and only to clients whose
rule it meets (``idp.login.assurance.meets``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from idp import lifecycle
from idp.clock import timestamp
from idp.crypto import new_token
from idp.extensions import clock, redis_client, rkey, settings
from idp.login import assurance
from idp.login.assurance import Proof


@dataclass(kw_only=True)
class BrowserSession:
    """An authenticated browser."""

    id: str
    account_id: str
    auth_time: int
    amr: list[str]
    acr: str
    created_at: int
    last_seen: int
    clients: list[str] = field(default_factory=list)  # client_ids that got tokens (for logout)
    factors: list[dict[str, Any]] = field(default_factory=list)  # the login's proof (assurance.Proof)
    device: str = ""  # "Firefox sur Linux", shown on "Sécurité de mon compte"

    @property
    def proof(self) -> Proof:
        """The factors the login that opened this session proved."""
        return Proof.from_list(self.factors)

    def to_json(self) -> str:
        """Serialised form stored in Redis."""
        return json.dumps(asdict(self), separators=(",", ":"))


PRUNE_SAMPLE = 8  # index ids checked (and dropped when dead) per new session


class SessionStore:
    """Create, read (with idle/absolute timeouts), touch and end browser sessions."""

    @staticmethod
    def _key(session_id: str) -> str:
        return rkey("session", session_id)

    @staticmethod
    def _index(account_id: str) -> str:
        return rkey("sessions-of", account_id)

    def create(self, *, account_id: str, proof: Proof, device: str = "") -> BrowserSession:
        """A new session with a fresh random id, worth what ``proof`` proved."""
        now = timestamp(clock().now())
        session = BrowserSession(id=new_token(32), account_id=account_id, auth_time=assurance.auth_time(proof) or now,
                                 amr=assurance.amr(proof), acr=assurance.acr(proof), created_at=now, last_seen=now,
                                 factors=proof.to_list(), device=device[:120])
        s = settings()
        index = self._index(account_id)
        # One round trip: the session, its place in the account's index, and a few ids already there.
        pipe = redis_client().pipeline(transaction=False)  # sessions live in many hash slots
        pipe.set(self._key(session.id), session.to_json(), ex=self._ttl())
        pipe.srandmember(index, PRUNE_SAMPLE)
        pipe.sadd(index, session.id)
        pipe.expire(index, s.session_absolute_timeout + 3600)
        _, before, _, _ = pipe.execute()
        self._prune_index(account_id, [i.decode() if isinstance(i, bytes) else i for i in before])
        return session

    def _prune_index(self, account_id: str, ids: list[str]) -> None:
        """Drop from the account's index those of ``ids`` (up to :data:`PRUNE_SAMPLE` of its members, drawn at
        random) whose sessions Redis already let expire (idle sessions are not ended explicitly): each new
        session costs the same whatever the account's number of sessions, and the index stays close to its
        live sessions (every reader skips an id whose session is gone)."""
        if not ids:
            return
        pipe = redis_client().pipeline(transaction=False)  # sessions live in many hash slots
        for session_id in ids:
            pipe.exists(self._key(session_id))
        dead = [session_id for session_id, alive in zip(ids, pipe.execute(), strict=True) if not alive]
        if dead:
            redis_client().srem(self._index(account_id), *dead)

    def get(self, session_id: str | None, *, touch: bool = True) -> BrowserSession | None:
        """The live session, or None (unknown, malformed, idle or past its absolute life)."""
        if not session_id or len(session_id) > 64:
            return None
        raw = redis_client().get(self._key(session_id))
        session = self._decode(raw) if raw is not None else None
        if session is None:
            return None
        now = timestamp(clock().now())
        s = settings()
        if now - session.last_seen >= s.session_idle_timeout or now - session.created_at >= s.session_absolute_timeout:
            self.end(session)
            return None
        if touch:
            session.last_seen = now
            self._write(session)
        return session

    def list_for(self, account_id: str) -> list[BrowserSession]:
        """The account's live sessions, newest first (read only: listing does not touch them)."""
        ids = sorted(i.decode() if isinstance(i, bytes) else i for i in redis_client().smembers(self._index(account_id)))
        found = (self.get(session_id, touch=False) for session_id in ids)
        return sorted((s for s in found if s is not None and s.account_id == account_id),
                      key=lambda s: s.created_at, reverse=True)

    def add_client(self, session: BrowserSession, client_id: str) -> None:
        """Remember that ``client_id`` received tokens in this session (back-channel logout)."""
        if client_id not in session.clients:
            session.clients.append(client_id)
            self._write(session)

    def end(self, session: BrowserSession, *, announce: bool = False) -> None:
        """End one session; ``announce`` (the person closed it on "Sécurité de mon compte"): its relying parties
        are told, as for :meth:`end_all` (RP-initiated logout tells them itself)."""
        ended = redis_client().delete(self._key(session.id))
        redis_client().srem(self._index(session.account_id), session.id)
        if announce and ended and session.clients:
            lifecycle.sessions_ended.send(session.account_id, sessions=[session])

    def end_all(self, account_id: str, *, except_id: str | None = None) -> int:
        """End every session of an account (password change, reset, disabling, "end my other sessions", an
        advisor); returns how many ended. The sessions that had clients are published as
        :data:`idp.lifecycle.sessions_ended` (their relying parties are told by back-channel logout)."""
        ids = [i.decode() if isinstance(i, bytes) else i for i in redis_client().smembers(self._index(account_id))]
        ended: list[BrowserSession] = []
        count = 0
        for session_id in ids:
            if session_id == except_id:
                continue
            raw = redis_client().getdel(self._key(session_id))
            redis_client().srem(self._index(account_id), session_id)
            if raw is None:
                continue
            count += 1
            session = self._decode(raw)
            if session is not None and session.clients:
                ended.append(session)
        if ended:
            lifecycle.sessions_ended.send(account_id, sessions=ended)
        return count

    @staticmethod
    def _decode(raw: bytes | str) -> BrowserSession | None:
        """The stored record, or None when malformed (a record whose factors do not read back is no session)."""
        try:
            session = BrowserSession(**json.loads(raw))
            session.proof  # noqa: B018
        except (ValueError, TypeError):
            return None
        return session

    def _write(self, session: BrowserSession) -> None:
        """Write back a session read before (touch, a new client): XX, so that a session ended meanwhile (a
        password change, a disabling, "Fermer" in another tab) is never brought back to life."""
        redis_client().set(self._key(session.id), session.to_json(), ex=self._ttl(), xx=True)

    @staticmethod
    def _ttl() -> int:
        s = settings()
        return min(s.session_idle_timeout, s.session_absolute_timeout) + 60


sessions = SessionStore()


def end_sessions(account_id: str, *, keep_session: str | None = None, **_: Any) -> None:
    """Lifecycle receiver (password changed, account reset): end the account's sessions but ``keep_session``."""
    sessions.end_all(account_id, except_id=keep_session)
