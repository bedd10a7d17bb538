"""Advisors' console sessions, kept in Redis apart from people's browser sessions.

Their own cookie (``__Host-idp_advisor`` outside development, set by :mod:`idp.login.cookies`), their own
Redis keys, their own idle and absolute timeouts: a person's session id is never looked up here and an advisor's never in
:mod:`idp.login.sessions`. A session goes through stages — ``password`` (the password was right, the key is
asked), ``enrol`` (an enrolment link was used, the key is to be registered), ``signed_in`` — and gets a new
id at each stage (no fixation). The dossiers an advisor opened by searching live in the session: a dossier
handle is random and worthless in another session. Decisions use the app clock; TTLs only clean up.
Each advisor's live session ids are also kept in a set, so that :func:`end_all` (``idp advisors disable``) ends
every session of a leaving or compromised advisor at once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

from idp.clock import timestamp
from idp.crypto import new_token
from idp.extensions import clock, hashtag, redis_client, rkey, settings

Stage = Literal["password", "enrol", "signed_in"]
MAX_DOSSIERS = 20


@dataclass(kw_only=True)
class AdvisorSession:
    """A browser in the advisors' console."""

    id: str
    advisor_id: str
    stage: Stage
    method: str  # pwd+hwk | oidc
    created_at: int
    last_seen: int
    # handle -> {"nir_enc": ..., "account_id": ...}: the accounts this advisor searched in this session.
    dossiers: dict[str, dict[str, str | None]] = field(default_factory=dict)

    @property
    def signed_in(self) -> bool:
        """Every factor was given."""
        return self.stage == "signed_in"


def _key(session_id: str) -> str:
    return rkey("advisor-session", session_id)


def _index(advisor_id: str) -> str:
    return rkey("advisor-sessions", hashtag(advisor_id))


def _ttl() -> int:
    s = settings()
    return min(s.advisor_session_idle_timeout, s.advisor_session_absolute_timeout) + 60


def save(session: AdvisorSession) -> None:
    """Write the session (TTL: housekeeping; the timeouts are decided by :func:`get`)."""
    redis_client().set(_key(session.id), json.dumps(asdict(session), separators=(",", ":")), ex=_ttl())


def start(advisor_id: str, stage: Stage, *, method: str = "pwd+hwk") -> AdvisorSession:
    """A new session (fresh random id) at ``stage``."""
    now = timestamp(clock().now())
    session = AdvisorSession(id=new_token(32), advisor_id=advisor_id, stage=stage, method=method,
                             created_at=now, last_seen=now)
    r = redis_client()
    r.sadd(_index(advisor_id), session.id)  # indexed before it exists: end_all never misses a live session
    r.expire(_index(advisor_id), settings().advisor_session_absolute_timeout + 60)  # outlives its sessions
    save(session)
    return session


def get(session_id: str | None) -> AdvisorSession | None:
    """The live session (touched), or None: unknown, malformed, idle or past its absolute life."""
    if not session_id or len(session_id) > 64:
        return None
    raw = redis_client().get(_key(session_id))
    try:
        session = AdvisorSession(**json.loads(raw)) if raw else None
    except (ValueError, TypeError):
        return None
    if session is None:
        return None
    now = timestamp(clock().now())
    s = settings()
    if now - session.last_seen >= s.advisor_session_idle_timeout or \
            now - session.created_at >= s.advisor_session_absolute_timeout:
        end(session)
        return None
    session.last_seen = now
    save(session)
    return session


def promote(session: AdvisorSession, stage: Stage) -> AdvisorSession:
    """The next stage under a new id (the old id stops working at once)."""
    end(session)
    promoted = start(session.advisor_id, stage, method=session.method)
    return promoted


def open_dossier(session: AdvisorSession, *, nir_enc: str, account_id: str | None) -> str:
    """Remember a searched identity in the session; returns its random handle (the oldest are forgotten)."""
    handle = new_token(12)
    session.dossiers[handle] = {"nir_enc": nir_enc, "account_id": account_id}
    while len(session.dossiers) > MAX_DOSSIERS:
        session.dossiers.pop(next(iter(session.dossiers)))
    save(session)
    return handle


def end(session: AdvisorSession) -> None:
    """End the session (sign-out, timeout, stage change)."""
    r = redis_client()
    r.delete(_key(session.id))
    r.srem(_index(session.advisor_id), session.id)


def end_all(advisor_id: str) -> int:
    """End every session of the advisor (disabled by an operator); returns how many were live."""
    r = redis_client()
    ended = 0
    for raw in r.smembers(_index(advisor_id)):
        session_id = raw.decode() if isinstance(raw, bytes) else str(raw)
        ended += int(r.delete(_key(session_id)))
        r.srem(_index(advisor_id), session_id)
    return ended
