"""Processes the resilience tests start and break on purpose, all on 127.0.0.1 and free ports.

- :class:`Gunicorn`: the IdP under ``gunicorn -w N`` (factored from ``tests/login/test_concurrency.py``),
  with its worker pids so that a test can SIGKILL one mid-request.
- :class:`RedisProcess`: a private ``redis-server`` (never the shared one) that a test stops, stalls
  (SIGSTOP) and restarts; append-only file with ``fsync always`` as production should run it.
- :class:`TcpProxy`: a TCP relay in front of PostgreSQL (or anything) that a test cuts and restores.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis as redis_lib
import requests

from tests.conftest import REDIS_URL, TEST_SECRET, free_port


def wait_until(predicate: object, *, timeout: float, what: str, step: float = 0.1) -> None:
    """Poll ``predicate()`` until true, at most ``timeout`` seconds (bounded, never an endless loop)."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


# --- gunicorn ------------------------------------------------------------------------------------
def answers_200(url: str) -> bool:
    """True when ``GET url`` answers 200 now (a server coming up: any network error is "not yet")."""
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@dataclass
class Gunicorn:
    """``gunicorn 'idp:create_app()' -w <workers>`` configured through ``IDP_*`` variables."""

    env: Mapping[str, str]
    workers: int = 4
    threads: int = 4  # gthread, as config/gunicorn.conf.py runs in production
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 40) -> Gunicorn:
        """Start and wait until /healthz answers 200 and every worker is up."""
        gunicorn = Path(sys.executable).parent / "gunicorn"
        env = {**os.environ, "IDP_ISSUER": self.url, **self.env}
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(gunicorn), "idp:create_app()", "-w", str(self.workers), "-b", f"127.0.0.1:{self.port}",
             "--worker-class", "gthread", "--threads", str(self.threads),
             "--log-level", "warning", "--timeout", "60", "--graceful-timeout", "5"],
            env=env, stdout=log, stderr=log)
        wait_until(self._healthy, timeout=timeout, what="gunicorn /healthz")
        wait_until(lambda: len(self.worker_pids()) == self.workers, timeout=timeout, what="gunicorn workers")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, "gunicorn exited during start-up"
        try:
            return requests.get(self.url + "/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def worker_pids(self) -> list[int]:
        """Pids of the live workers (children of the master)."""
        assert self.process is not None
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except FileNotFoundError:
            return []

    def stop(self) -> None:
        """Terminate the master (it stops its workers)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def idp_env(*, postgres_url: str, redis_prefix: str, mailbox: object, clock: object, clock_file: Path,
            redis_url: str = REDIS_URL, **extra: str) -> dict[str, str]:
    """``IDP_*`` variables of a test server on the run's PostgreSQL database and the real Redis.

    Its clock is the test's frozen clock (``IDP_CLOCK_FILE`` holds the offset from real time), so that
    keys and accounts seeded through ``pg_app`` are seen at the same instant by the server."""
    from datetime import UTC, datetime

    clock_file.write_text(str((clock.now() - datetime.now(UTC)).total_seconds()))  # type: ignore[attr-defined]
    return {"IDP_ENV": "development", "IDP_SECRET_KEY": TEST_SECRET, "IDP_DATABASE_URL": postgres_url,
            "IDP_REDIS_URL": redis_url, "IDP_REDIS_PREFIX": redis_prefix,
            "IDP_SMTP_HOST": mailbox.host, "IDP_SMTP_PORT": str(mailbox.port),  # type: ignore[attr-defined]
            "IDP_ARGON2_TIME_COST": "1", "IDP_ARGON2_MEMORY_COST": "1024", "IDP_CLOCK_FILE": str(clock_file),
            "IDP_LOG_LEVEL": "WARNING", **extra}


# --- Redis ---------------------------------------------------------------------------------------
@dataclass
class RedisProcess:
    """A private redis-server on a free port, persisted in ``directory`` (AOF, fsync always)."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis:// URL of the server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        """(Re)start on the same port and directory: data written before a stop is still there."""
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis_lib.Redis(port=self.port, socket_connect_timeout=0.5)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis_lib.RedisError:
                return False

        wait_until(up, timeout=10, what="redis-server")
        return self

    def stop(self) -> None:
        """Shut the server down (SIGTERM; the AOF is already on disk)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stalled server must be able to exit
            self.process.terminate()
            self.process.wait(timeout=10)

    def stall(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Unfreeze a stalled server."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


# --- TCP proxy -----------------------------------------------------------------------------------
class TcpProxy:
    """Relays 127.0.0.1:<port> to ``target``; :meth:`cut` drops every connection and refuses new ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        """Listen (again) on the same port."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by cut()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=3)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Stop listening and reset every open connection (the database "goes away")."""
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would leave it listening.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass
