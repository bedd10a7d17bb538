"""A process killed mid-request leaves nothing half-written (PostgreSQL, the real Redis).

To kill at a precise instant, the test installs a PostgreSQL trigger that makes one write sleep; the
process doing that write is found (pg_stat_activity -> client port -> socket inode -> pid) and
SIGKILLed while its transaction is open. The trigger is dropped afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.conftest import TEST_SECRET, register_identity, remember_secret
from tests.oidc.conftest import flow, login, make_person, make_rp, redeem
from tests.resilience.harness import Gunicorn, idp_env, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def stall_insert(postgres_url: str) -> Iterator[Any]:
    """``stall(table)``: every INSERT into ``table`` sleeps 4 s after writing its row, until the test ends."""
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    installed: list[str] = []

    def stall(table: str) -> None:
        with engine.connect() as conn:
            conn.execute(text("CREATE OR REPLACE FUNCTION idp_test_stall() RETURNS trigger LANGUAGE plpgsql AS "
                              "$$ BEGIN PERFORM pg_sleep(4); RETURN NEW; END $$"))
            conn.execute(text(f'CREATE TRIGGER idp_test_stall AFTER INSERT ON "{table}" FOR EACH ROW '
                              "EXECUTE FUNCTION idp_test_stall()"))
        installed.append(table)

    yield stall
    with engine.connect() as conn:
        for table in installed:
            conn.execute(text(f'DROP TRIGGER IF EXISTS idp_test_stall ON "{table}"'))
    engine.dispose()


def _stalled_client_port(postgres_url: str, timeout: float = 15) -> int:
    """The client port of the database session sleeping in the trigger."""
    engine = create_engine(postgres_url)
    found: list[int] = []

    def sleeping() -> bool:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT client_port FROM pg_stat_activity WHERE wait_event = 'PgSleep' "
                                    "AND datname = current_database()")).first()
        if row is not None:
            found.append(int(row[0]))
        return bool(found)

    try:
        wait_until(sleeping, timeout=timeout, what="a write stalled in the trigger")
    finally:
        engine.dispose()
    return found[0]


def _pid_owning_port(port: int, candidates: list[int]) -> int:
    """Which of ``candidates`` holds the TCP socket whose local port is ``port`` (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    for pid in candidates:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd).removeprefix("socket:[").removesuffix("]") in inodes:
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no process among {candidates} owns port {port}")


def test_worker_killed_during_a_refresh_rotation_leaves_the_old_token_usable(
        pg_app: Any, postgres_url: str, redis_prefix: str, mailbox: Any, clock: Any, tmp_path: Any,
        stall_insert: Any) -> None:
    """The gunicorn worker serving a refresh is SIGKILLed after it claimed the rotation and wrote the
    successor, before its commit.

    Expected: the client's request fails (connection dropped: never a 5xx answer with a half result);
    the database holds no successor and the old token is not marked rotated; gunicorn replaces the
    worker; the client's retry with the same refresh token succeeds (nothing lost, no false "reuse"
    that would revoke the family), and the family then holds exactly 2 tokens."""
    from idp.crypto import hash_token
    from idp.extensions import db
    from idp.oidc.models import RefreshToken

    person = make_person(pg_app)
    rp = make_rp(pg_app, "web")
    client = pg_app.test_client()
    f = flow(rp)
    refresh_token = redeem(client, rp, login(pg_app, client, person, f)["code"], f).json["refresh_token"]
    env = idp_env(postgres_url=postgres_url, redis_prefix=redis_prefix, mailbox=mailbox, clock=clock,
                  clock_file=tmp_path / "clock")
    server = Gunicorn(env, workers=4, log_path=tmp_path / "gunicorn.log").start()
    try:
        stall_insert("oidc_refresh_tokens")
        outcome: list[Any] = []

        def refresh() -> None:
            try:
                outcome.append(requests.post(server.url + "/token", auth=(rp.client_id, rp.secret), timeout=30,
                                             data={"grant_type": "refresh_token", "refresh_token": refresh_token}))
            except requests.RequestException as exc:
                outcome.append(exc)

        caller = threading.Thread(target=refresh)
        caller.start()
        victim = _pid_owning_port(_stalled_client_port(postgres_url), server.worker_pids())
        os.kill(victim, signal.SIGKILL)
        caller.join(30)
        assert outcome and isinstance(outcome[0], requests.RequestException), outcome
        wait_until(lambda: len(server.worker_pids()) == 4 and victim not in server.worker_pids(), timeout=20,
                   what="gunicorn to replace the killed worker")
        with pg_app.app_context():
            rows = db.session.scalars(select_family(RefreshToken, hash_token(refresh_token))).all()
            assert len(rows) == 1 and rows[0].rotated_at is None and not rows[0].revoked, "half-written rotation"
            db.session.remove()
        retry = requests.post(server.url + "/token", auth=(rp.client_id, rp.secret), timeout=30,
                              data={"grant_type": "refresh_token", "refresh_token": refresh_token})
        assert retry.status_code == 200, retry.text[:300]
        with pg_app.app_context():
            rows = db.session.scalars(select_family(RefreshToken, hash_token(refresh_token))).all()
            assert len(rows) == 2 and sum(r.rotated_at is None for r in rows) == 1
            db.session.remove()
    finally:
        server.stop()


def select_family(model: Any, token_hash: str) -> Any:
    """All tokens of the family of the token with this hash."""
    from sqlalchemy import select

    family = select(model.family_id).where(model.token_hash == token_hash).scalar_subquery()
    return select(model).where(model.family_id == family)


def test_process_killed_while_creating_an_account_leaves_no_account(pg_app: Any, postgres_url: str,
                                                                    stall_insert: Any) -> None:
    """``idp accounts create`` is SIGKILLed after the account row is written, before the commit.

    Expected: no account row, no ``account.created`` audit event: the account and its audit event are
    one transaction; creating it again afterwards succeeds (no stale unique NIR)."""
    from sqlalchemy import func, select

    from idp.accounts.models import Account
    from idp.audit import AuditEvent
    from idp.extensions import db

    nir, password = "295019912611146", "Cheval-Agrafe-Batterie-9"
    remember_secret(nir, password)
    with pg_app.app_context():
        register_identity(nir)  # accounts are created only for people the registry holds
    env = {**os.environ, "IDP_DATABASE_URL": postgres_url, "IDP_SECRET_KEY": TEST_SECRET, "IDP_ARGON2_TIME_COST": "1",
           "IDP_ARGON2_MEMORY_COST": "1024", "IDP_LOG_LEVEL": "WARNING"}
    command = [str(Path(sys.executable).parent / "idp"), "accounts", "create", "--nir", nir, "--password", password,
               "--email", "kill@exemple.fr", "--email-validated"]
    stall_insert("accounts")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _stalled_client_port(postgres_url)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    time.sleep(4.5)  # the backend notices the dead client once its sleep ends, and rolls back

    def counts() -> tuple[int, int]:
        with pg_app.app_context():
            accounts = db.session.scalar(select(func.count()).select_from(Account))
            events = db.session.scalar(select(func.count()).select_from(AuditEvent)
                                       .where(AuditEvent.event == "account.created"))
            db.session.remove()
            return int(accounts or 0), int(events or 0)

    assert counts() == (0, 0), "half-written account"
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text('DROP TRIGGER IF EXISTS idp_test_stall ON "accounts"'))
    engine.dispose()
    assert subprocess.run(command, env=env, capture_output=True, timeout=60).returncode == 0
    assert counts() == (1, 1)
