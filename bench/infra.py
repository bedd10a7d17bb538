"""The benchmark's services, all on 127.0.0.1: a dedicated PostgreSQL database, an own Redis key
prefix, an SMTP sink that hands the security codes to the virtual users, the IdP under gunicorn
(the production config, ``config/gunicorn.conf.py``) and the node peer.

The full run starts its own ``redis-server`` and PostgreSQL cluster (:class:`PrivateRedis`,
:class:`PrivatePostgres`, same settings as the machine's services) so that they can be pinned to a
core (:class:`Cores`) and their CPU counted; ``--shared-services`` (and the smoke mode) use the
machine's services instead. Each service is started by the benchmark and stopped by it
(``finally``), the database dropped and the Redis keys deleted at the end.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- cores -------------------------------------------------------------------------------------
class Cores:
    """Which cores each side runs on (``taskset`` for the servers, ``sched_setaffinity`` for the bench).

    With 2 or more cores the server under test (gunicorn with one worker, the node peer) gets the last
    core to itself and everything else (load generator, SMTP sink, PostgreSQL, Redis) the others. With
    one core, or when pinning is off, nothing is pinned."""

    def __init__(self, enabled: bool = True) -> None:
        available = sorted(os.sched_getaffinity(0))
        self.all = available
        self.pinned = enabled and len(available) >= 2 and shutil.which("taskset") is not None
        self.server = available[-1:] if self.pinned else available
        self.rest = available[:-1] if self.pinned else available

    @staticmethod
    def spec(cores: list[int]) -> str:
        """The ``taskset -c`` list."""
        return ",".join(str(c) for c in cores)

    def wrap(self, command: list[str], cores: list[int]) -> list[str]:
        """``command`` run on ``cores`` (unchanged when not pinning)."""
        return ["taskset", "-c", self.spec(cores), *command] if self.pinned else command

    def pin_self(self) -> None:
        """Pin this process (the load generator and the SMTP sink; threads started later inherit it)."""
        if self.pinned:
            os.sched_setaffinity(0, set(self.rest))

    def describe(self) -> dict[str, object]:
        """For the report."""
        return {"pinned": self.pinned, "cpus": self.all, "server": self.server, "rest": self.rest}


class _Server:
    """A process started by the bench: its CPU (with its children's) and a graceful stop."""

    process: subprocess.Popen[bytes] | None = None

    def cpu_seconds(self) -> float:
        """CPU seconds of the process and its children so far."""
        return process_tree_cpu(self.process.pid) if self.process else 0.0

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL."""
        if self.process is not None:
            _stop(self.process)


class PrivateRedis(_Server):
    """A ``redis-server`` of the run's own (no persistence, like the machine's service), on a free port."""

    def __init__(self, cores: Cores, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.cores, self.workdir = cores, workdir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        """Start it and wait until it answers."""
        import redis

        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", str(self.workdir), "--daemonize", "no"]
        with open(self.workdir / "redis.log", "ab") as log:
            # redis-server from PATH with fixed arguments.
            self.process = subprocess.Popen(self.cores.wrap(command, self.cores.rest),  # noqa: S603
                                            stdout=log, stderr=log)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the bench's redis-server did not start") from None
                time.sleep(0.05)
        client.close()
        return self


class PrivatePostgres:
    """A PostgreSQL cluster of the run's own (``initdb`` defaults: fsync and synchronous commit on), trust
    authentication on 127.0.0.1 only; run as the ``postgres`` user when the bench runs as root."""

    def __init__(self, cores: Cores, workdir: Path) -> None:
        self.port = free_port()
        self.cores, self.workdir = cores, workdir
        self.data = workdir / "pgdata"
        self.admin_url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._postmaster: int | None = None

    @staticmethod
    def available() -> bool:
        """initdb and pg_ctl are on PATH."""
        return shutil.which("initdb") is not None and shutil.which("pg_ctl") is not None

    def _as_owner(self, command: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *command]
        return command

    def start(self) -> PrivatePostgres:
        """initdb, then ``pg_ctl start -w`` on the database cores (the backends inherit the affinity)."""
        if os.geteuid() == 0:
            shutil.chown(self.workdir, user="postgres")
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "check": True}
        # initdb/pg_ctl from PATH with fixed arguments.
        subprocess.run(self._as_owner(["initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",  # noqa: S603
                                       "--no-sync"]), **quiet)  # type: ignore[call-overload]
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.workdir}"
        subprocess.run(self.cores.wrap(self._as_owner(["pg_ctl", "-D", str(self.data), "-o", options,  # noqa: S603
                                                       "-l", str(self.workdir / "postgres.log"), "-w", "start"]),
                                       self.cores.rest), **quiet)  # type: ignore[call-overload]
        self._postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        return self

    def cpu_seconds(self) -> float:
        """CPU seconds of the postmaster and its backends so far."""
        return process_tree_cpu(self._postmaster) if self._postmaster else 0.0

    def stop(self) -> None:
        """``pg_ctl stop -m fast``."""
        if self._postmaster is not None:
            subprocess.run(self._as_owner(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"]),  # noqa: S603
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            self._postmaster = None


@contextmanager
def private_services(cores: Cores) -> Iterator[tuple[PrivatePostgres, PrivateRedis]]:
    """A private PostgreSQL and redis-server for the run, removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="idp-bench-"))
    postgres, redis_server = PrivatePostgres(cores, workdir), PrivateRedis(cores, workdir)
    try:
        postgres.start()
        redis_server.start()
        yield postgres, redis_server
    finally:
        redis_server.stop()
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# --- PostgreSQL and Redis --------------------------------------------------------------------
@contextmanager
def postgres_database(admin_url: str = POSTGRES_ADMIN_URL) -> Iterator[str]:
    """A database created for this run and dropped after it (``WITH (FORCE)``)."""
    from sqlalchemy import create_engine, text

    name = f"idp_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def redis_prefix(url: str = REDIS_URL) -> Iterator[str]:
    """A key prefix of its own; every key under it is deleted afterwards."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    client.ping()
    prefix = f"idpbench:{uuid.uuid4().hex[:8]}:"
    try:
        yield prefix
    finally:
        for key in client.scan_iter(f"{prefix}*", count=1000):
            client.delete(key)
        client.close()


# --- SMTP sink -------------------------------------------------------------------------------
class SmtpSink:
    """aiosmtpd server in this process; :meth:`wait_code` gives a recipient's next security code."""

    CODE = re.compile(rb"\b(\d{6})\b")

    def __init__(self) -> None:
        self.host, self.port = "127.0.0.1", free_port()
        self._codes: dict[str, list[str]] = {}
        self._ready = threading.Condition()
        self.received = 0
        self._controller: Any = None

    def start(self) -> SmtpSink:
        """Start listening."""
        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                from idp.dev.mailbox import parse_message

                message = parse_message(envelope.original_content or envelope.content)
                match = SmtpSink.CODE.search(message["body"].encode())
                with sink._ready:
                    sink.received += 1
                    for rcpt in envelope.rcpt_tos:
                        sink._codes.setdefault(rcpt.lower(), []).append(match.group(1).decode() if match else "")
                    sink._ready.notify_all()
                return "250 OK"

        self._controller = Controller(Handler(), hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def seen(self, email: str) -> int:
        """How many messages this recipient got so far."""
        with self._ready:
            return len(self._codes.get(email.lower(), []))

    def wait_code(self, email: str, after: int, timeout: float = 30.0) -> str:
        """The code of the first message to ``email`` past the ``after`` first ones."""
        deadline = time.monotonic() + timeout
        with self._ready:
            while len(self._codes.get(email.lower(), [])) <= after:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no e-mail for a virtual user within {timeout} s")
                self._ready.wait(left)
            return self._codes[email.lower()][after]

    def stop(self) -> None:
        """Stop listening."""
        if self._controller is not None:
            self._controller.stop()


# --- processes and their CPU -----------------------------------------------------------------
def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its live children, and its reaped children (workers that restarted)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # fields[11..14] = utime, stime, cutime, cstime (proc(5), counted after the command name)
    total = sum(int(v) for v in fields[11:15])
    for child in _children(pid):
        child_fields = _stat_fields(child)
        if child_fields is not None:
            total += sum(int(v) for v in child_fields[11:15])
    return total / CLOCK_TICKS


def _wait_http(url: str, process: subprocess.Popen[bytes], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:  # still booting
            pass
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before it answered")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer within {timeout} s")
        time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def idp_environment(*, port: int, database_url: str, redis_url: str, prefix: str, sink: SmtpSink, secret_key: str,
                    overrides: dict[str, str]) -> dict[str, str]:
    """The IdP's IDP_* variables for this run (production defaults except what is listed in the report)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("IDP_")}
    env.update({"IDP_ENV": "development", "IDP_ISSUER": f"http://127.0.0.1:{port}", "IDP_SECRET_KEY": secret_key,
                "IDP_DATABASE_URL": database_url, "IDP_REDIS_URL": redis_url, "IDP_REDIS_PREFIX": prefix,
                "IDP_SMTP_HOST": sink.host, "IDP_SMTP_PORT": str(sink.port), **overrides})
    return env


class IdpServer(_Server):
    """``gunicorn 'idp:create_app()' -c config/gunicorn.conf.py`` with IDP_WORKERS workers, on ``cores``."""

    def __init__(self, env: dict[str, str], port: int, workers: int, log_path: Path, *, cores: Cores,
                 on: list[int], application: str = "idp:create_app()", health: str = "/healthz") -> None:
        self.env, self.port, self.workers, self.log_path = env, port, workers, log_path
        self.cores, self.on, self.application, self.health = cores, on, application, health
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> IdpServer:
        """Start gunicorn and wait for /healthz."""
        env = {**self.env, "IDP_WORKERS": str(self.workers), "IDP_BIND": f"127.0.0.1:{self.port}"}
        gunicorn = Path(sys.executable).parent / "gunicorn"
        with open(self.log_path, "ab") as log:
            # Our own venv's gunicorn with fixed arguments.
            command = [str(gunicorn), self.application, "-c", str(ROOT / "config/gunicorn.conf.py")]
            self.process = subprocess.Popen(self.cores.wrap(command, self.on), env=env, cwd=ROOT,  # noqa: S603
                                            stdout=log, stderr=log)
        _wait_http(self.url + self.health, self.process, "gunicorn")
        # Every worker has booted (imported the app) before the clock starts.
        deadline = time.monotonic() + 30
        while len(_children(self.process.pid)) < self.workers and time.monotonic() < deadline:
            time.sleep(0.1)
        return self


class PeerServer(_Server):
    """``node bench/peer/provider.mjs`` (one process: one core), its store in Redis at ``redis_url``."""

    def __init__(self, port: int, log_path: Path, *, redis_url: str, prefix: str, cores: Cores) -> None:
        self.port, self.log_path = port, log_path
        self.redis_url, self.prefix, self.cores = redis_url, prefix, cores
        self.url = f"http://127.0.0.1:{port}"
        self.client_id = "bench-peer"
        self.client_secret = secrets.token_urlsafe(32)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PeerServer:
        """Start node and wait for it."""
        env = {**os.environ, "PEER_PORT": str(self.port), "PEER_CLIENT_SECRET": self.client_secret,
               "PEER_REDIS_URL": self.redis_url, "PEER_REDIS_PREFIX": self.prefix, "NODE_ENV": "production"}
        with open(self.log_path, "ab") as log:
            # node from PATH (Node 20, installed with the project's tooling) on our own script.
            command = self.cores.wrap(["node", str(ROOT / "bench/peer/provider.mjs")], self.cores.server)
            self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=log)  # noqa: S603
        _wait_http(self.url + "/_bench/health", self.process, "node oidc-provider")
        return self

    def mint(self, *, codes: int = 0, refresh: int = 0) -> dict[str, Any]:
        """Authorization codes and refresh tokens made directly in the peer's store."""
        response = requests.post(f"{self.url}/_bench/mint", params={"codes": codes, "refresh": refresh}, timeout=300)
        response.raise_for_status()
        return dict(response.json())

