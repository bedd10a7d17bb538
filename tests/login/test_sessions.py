"""Browser sessions: idle and absolute timeouts by the app clock, end of all sessions, a bounded index."""

from __future__ import annotations

from idp.extensions import redis_client, rkey
from idp.login.sessions import sessions
from tests.conftest import proof_of


def _new(account_id: str = "acct-1"):
    return sessions.create(account_id=account_id, proof=proof_of(["pwd", "mail"], at=0))


def test_a_session_ends_after_the_idle_timeout(any_app, clock):
    with any_app.app_context():
        session = _new()
        clock.advance(any_app.extensions["idp.settings"].session_idle_timeout - 1)
        assert sessions.get(session.id) is not None  # used: idle time starts again
        clock.advance(any_app.extensions["idp.settings"].session_idle_timeout)
        assert sessions.get(session.id) is None


def test_a_session_ends_at_its_absolute_timeout_even_when_used(any_app, clock):
    with any_app.app_context():
        s = any_app.extensions["idp.settings"]
        session = _new()
        step = s.session_idle_timeout // 2
        elapsed = 0
        while elapsed + step < s.session_absolute_timeout:
            clock.advance(step)
            elapsed += step
            assert sessions.get(session.id) is not None
        clock.advance(step)
        assert sessions.get(session.id) is None


def test_end_all_ends_every_session_of_the_account_but_the_one_kept(any_app):
    with any_app.app_context():
        kept, other, third = _new(), _new(), _new()
        stranger = _new("acct-2")
        assert sessions.end_all("acct-1", except_id=kept.id) == 2
        assert sessions.get(kept.id) is not None
        assert sessions.get(other.id) is None and sessions.get(third.id) is None
        assert sessions.get(stranger.id) is not None


def test_the_account_index_forgets_sessions_that_redis_let_expire(any_app):
    with any_app.app_context():
        old = [_new() for _ in range(5)]
        for session in old:  # as if Redis had expired them after the idle timeout
            redis_client().delete(rkey("session", session.id))
        fresh = _new()
        members = {m.decode() if isinstance(m, bytes) else m for m in redis_client().smembers(rkey("sessions-of", "acct-1"))}
        assert members == {fresh.id}


def test_a_new_session_checks_at_most_a_sample_of_a_long_index_and_the_dead_ids_still_go(any_app):
    from idp.login import sessions as module

    def members():
        return {m.decode() if isinstance(m, bytes) else m for m in redis_client().smembers(rkey("sessions-of", "acct-1"))}

    with any_app.app_context():
        old = [_new() for _ in range(30)]
        for session in old:
            redis_client().delete(rkey("session", session.id))
        checked = []
        real = module.SessionStore._prune_index

        def spy(self, account_id, ids):
            checked.append(len(ids))
            return real(self, account_id, ids)

        module.SessionStore._prune_index = spy
        try:
            fresh = [_new() for _ in range(6)]
        finally:
            module.SessionStore._prune_index = real
        assert max(checked) <= module.PRUNE_SAMPLE
        assert members() == {s.id for s in fresh}, "six new sessions of 8 checks each cleared 30 dead ids"
