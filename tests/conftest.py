"""Shared fixtures (anchor: flask ``examples/tutorial/tests/conftest.py``).

- ``clock``: a FrozenClock the tests move instead of sleeping.
- ``app`` / ``client``: the IdP on a SQLite file and an in-process fakeredis (fast unit tests).
- ``pg_app``: the IdP on a real PostgreSQL database created for this run and dropped after it,
  and a real Redis isolated by key prefix; ``any_app`` runs a test on both backends.
- ``mailbox``: a real SMTP server (aiosmtpd) that receives the e-mails the app sends.
- ``live_server`` and ``page``: the app served on a free port and a real headless Chromium.

Real services come from ``IDP_TEST_POSTGRES_URL`` and ``IDP_TEST_REDIS_URL`` (defaults: the local
servers). Without them the tests that need them are skipped, except when ``IDP_TEST_REQUIRE_SERVICES=1``
(CI), where a missing service is an error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis as redis_lib
from sqlalchemy import create_engine, text

from idp import create_app
from idp.clock import FrozenClock
from idp.dev.mailbox import parse_message
from idp.extensions import db

RUN_ID = uuid.uuid4().hex[:10]
POSTGRES_ADMIN_URL = os.environ.get("IDP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("IDP_TEST_REQUIRE_SERVICES") == "1"
TEST_SECRET = "test-secret-key-0123456789abcdefghijklmnop"


def _unavailable(what: str, exc: Exception) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (IDP_TEST_REQUIRE_SERVICES=1) but unreachable: {exc}")
    pytest.skip(f"{what} unreachable: {exc}")


# --- secrets never logged -------------------------------------------------------------------
# Every NIR, password and code a test uses is registered here (``remember_secret``); a handler
# captures every log record of the whole run, formatted as production writes it, and the run fails
# at the end if any registered secret appears in any line (see pytest_sessionfinish).
SECRETS: set[str] = set()
LOG_LINES: list[str] = []


def remember_secret(*values: str) -> None:
    """Register values that must never appear in a log line (NIR in all its spellings, passwords, codes)."""
    for value in values:
        if value and len(value) >= 6:
            SECRETS.add(value)
            compact = re.sub(r"[\s.\-]", "", value)
            if len(compact) >= 6:
                SECRETS.add(compact)


class _CaptureAll(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            LOG_LINES.append(self.format(record))
        except Exception:  # a broken record must not hide other failures
            LOG_LINES.append(repr(record.__dict__))


def pytest_configure(config: Any) -> None:
    from idp.observability import JsonFormatter, RedactingFilter, RequestIdFilter

    handler = _CaptureAll()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter())
    handler.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    # A secret counts only as a whole token, so that a random request id such as "a1234567f" is not
    # mistaken for the code 123456.
    text_ = "\n".join(LOG_LINES)
    leaks = sorted(s for s in SECRETS if re.search(rf"(?<![0-9A-Za-z]){re.escape(s)}(?![0-9A-Za-z])", text_))
    if leaks:
        sample = [line for line in LOG_LINES if any(s in line for s in leaks)][:3]
        print(f"\nSECRET LEAK: {len(leaks)} registered secret(s) appear in log lines, e.g. {sample}")
        session.exitstatus = 1
    else:
        print(f"\nlog check: {len(LOG_LINES)} log lines, none holds any of {len(SECRETS)} registered secrets")


# --- time ------------------------------------------------------------------------------------
@pytest.fixture
def clock() -> FrozenClock:
    """A clock frozen at 2026-01-05 13:30 UTC (14h30 in Paris)."""
    return FrozenClock()


# --- SMTP ------------------------------------------------------------------------------------
@dataclass
class Mailbox:
    """Messages received by the aiosmtpd test server."""

    host: str
    port: int
    messages: list[dict[str, str]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)

    def last(self, to: str | None = None) -> dict[str, str]:
        """The newest message (optionally for one recipient); fails when none arrived."""
        found = [m for m in self.messages if to is None or to in m["to"]]
        assert found, f"no e-mail received{' for ' + to if to else ''}"
        return found[-1]

    def code(self, to: str | None = None) -> str:
        """The 6-digit code of the newest message."""
        match = re.search(r"\b(\d{6})\b", self.last(to)["body"])
        assert match, "no 6-digit code in the last e-mail"
        remember_secret(match.group(1))
        return match.group(1)

    def clear(self) -> None:
        """Forget what was received."""
        self.messages.clear()
        self.raw.clear()


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def _smtp_server() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox("127.0.0.1", free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            raw = envelope.original_content or envelope.content
            box.raw.append(raw)
            box.messages.append(parse_message(raw))
            return "250 OK"

    controller = Controller(Handler(), hostname=box.host, port=box.port)
    controller.start()
    yield box
    controller.stop()


@pytest.fixture
def mailbox(_smtp_server: Mailbox) -> Mailbox:
    """The real SMTP server, emptied for this test."""
    _smtp_server.clear()
    return _smtp_server


# --- applications ----------------------------------------------------------------------------
def base_config(clock: FrozenClock, mailbox: Mailbox | None, **overrides: Any) -> dict[str, Any]:
    """Settings every test app shares."""
    config: dict[str, Any] = {
        "TESTING": True,
        "clock": clock,
        "secret_key": TEST_SECRET,
        "issuer": "http://localhost",
        "log_level": "INFO",
        "argon2_time_cost": 1,
        "argon2_memory_cost": 1024,
        "smtp_host": mailbox.host if mailbox else "127.0.0.1",
        "smtp_port": mailbox.port if mailbox else 9,
        "smtp_timeout": 2.0,
    }
    config.update(overrides)
    return config


@pytest.fixture
def app_config() -> dict[str, Any]:
    """Per-test overrides; a test module can override this fixture."""
    return {}


@pytest.fixture
def app(tmp_path: Any, clock: FrozenClock, mailbox: Mailbox, app_config: dict[str, Any]) -> Iterator[Any]:
    """The IdP on a fresh SQLite file and an in-process fakeredis that refuses, as a Redis Cluster does, a
    script or MULTI whose keys span several hash slots (tests/redis/slots.py)."""
    import fakeredis

    from tests.redis.slots import SlotCheckingRedis

    config = base_config(clock, mailbox, database_url=f"sqlite:///{tmp_path}/idp.sqlite3",
                         redis_url="memory://", **app_config)
    config.setdefault("redis", SlotCheckingRedis(server=fakeredis.FakeServer()))
    with running_app(config) as application:
        yield application


@contextlib.contextmanager
def running_app(config: dict[str, Any]) -> Iterator[Any]:
    """An application built from ``config`` with its tables created; its connections closed afterwards."""
    application = create_app(config)
    with application.app_context():
        db.create_all()
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Any) -> Any:
    """A test client of ``app``."""
    return app.test_client()


@contextlib.contextmanager
def temporary_postgres_database(name: str) -> Iterator[str]:
    """Create database ``name`` on the test server, yield its URL, drop it afterwards (skip/fail if unreachable)."""
    try:
        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        _unavailable("PostgreSQL", exc)
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database created for this test run and dropped after it."""
    with temporary_postgres_database(f"idp_test_{RUN_ID}") as url:
        yield url


@pytest.fixture(scope="session")
def redis_server() -> redis_lib.Redis:
    """A client of the real Redis server (reachable, or the test is skipped/failed)."""
    client = redis_lib.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis_lib.exceptions.RedisError as exc:
        _unavailable("Redis", exc)
    return client


@pytest.fixture
def redis_url() -> str:
    """The Redis URL of ``pg_app`` and of the servers a test starts: the shared server; a test module
    parametrizes it to run on a real Cluster or Sentinel set (see ``redis_topology``)."""
    return REDIS_URL


def _topology(kind: str, directory: Any) -> Iterator[Any]:
    import shutil

    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        _unavailable("redis-server and redis-cli", FileNotFoundError("redis-server"))
    from tests.redis.topologies import ClusterProcesses, SentinelSet

    started = (ClusterProcesses if kind == "cluster" else SentinelSet)(directory)
    try:
        yield started.start()
    finally:
        started.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: Any) -> Iterator[Any]:
    """A real 3-master Redis Cluster on free loopback ports, for the session (tests/redis/topologies.py)."""
    yield from _topology("cluster", tmp_path_factory.mktemp("redis-cluster"))


@pytest.fixture(scope="session")
def redis_sentinels(tmp_path_factory: Any) -> Iterator[Any]:
    """A real primary + replica watched by 3 Sentinels, for the session."""
    yield from _topology("sentinel", tmp_path_factory.mktemp("redis-sentinel"))


def redis_topology(request: pytest.FixtureRequest) -> str:
    """For a ``redis_url`` fixture parametrized with "redis", "cluster" or "sentinel": the URL to use."""
    if request.param == "redis":
        return REDIS_URL
    return str(request.getfixturevalue("redis_cluster" if request.param == "cluster" else "redis_sentinels").url)


@pytest.fixture
def redis_prefix(redis_server: redis_lib.Redis) -> Iterator[str]:
    """A key prefix unique to this test; its keys are deleted afterwards."""
    prefix = f"idptest:{RUN_ID}:{uuid.uuid4().hex[:8]}:"
    yield prefix
    for key in redis_server.scan_iter(f"{prefix}*", count=500):
        redis_server.delete(key)


def _truncate_all(application: Any) -> None:
    with application.app_context():
        tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
        if tables:
            db.session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            db.session.commit()
        db.session.remove()


_pg_schema_ready: set[str] = set()


@pytest.fixture
def pg_app(postgres_url: str, redis_prefix: str, redis_url: str, clock: FrozenClock, mailbox: Mailbox,
           app_config: dict[str, Any]) -> Iterator[Any]:
    """The IdP on the run's PostgreSQL database and the real Redis (isolated prefix; ``redis_url``)."""
    config = base_config(clock, mailbox, database_url=postgres_url, redis_url=redis_url,
                         redis_prefix=redis_prefix, **app_config)
    application = create_app(config)
    if postgres_url not in _pg_schema_ready:
        with application.app_context():
            db.create_all()
        _pg_schema_ready.add(postgres_url)
    yield application
    _truncate_all(application)
    with application.app_context():
        db.engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def any_app(request: pytest.FixtureRequest) -> Any:
    """The same test on SQLite + fakeredis and on PostgreSQL + Redis."""
    return request.getfixturevalue("app" if request.param == "sqlite" else "pg_app")


# --- forms -----------------------------------------------------------------------------------
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_from(html: bytes | str) -> str:
    """The CSRF token of the first form in a page."""
    text_ = html.decode() if isinstance(html, bytes) else html
    match = CSRF_RE.search(text_)
    assert match, "no csrf_token in the page"
    return match.group(1)


# --- live server and browser -----------------------------------------------------------------
@dataclass
class LiveServer:
    """An application served on 127.0.0.1 in a background thread."""

    app: Any
    url: str
    server: Any

    def stop(self) -> None:
        """Shut the server down."""
        self.server.shutdown()


def serve_in_thread(application: Any) -> LiveServer:
    """Serve ``application`` with werkzeug in a thread on a free port."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, application, threaded=True)
    port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return LiveServer(application, f"http://127.0.0.1:{port}", server)


CHROMIUM = os.environ.get("IDP_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session (Debian's package, driven by Playwright)."""
    if not os.path.exists(CHROMIUM):
        _unavailable("Chromium", FileNotFoundError(CHROMIUM))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (own cookies) and page."""
    context = browser.new_context(locale="fr-FR", timezone_id="Europe/Paris")
    context.set_default_timeout(10_000)
    pg = context.new_page()
    yield pg
    context.close()


# --- login interactions built by tests ---------------------------------------------------------
def proof_of(amr: list[str] | tuple[str, ...], *, at: int | None = None, credential_factors: int = 2,
             credential_acr: str | None = None, trusted_browser: bool = False) -> Any:
    """The assurance proof of a login that completed ``amr`` (RFC 8176 names: pwd, mail, hwk/user), as the
    login pages record it; ``credential_*``: the level the platform credential was activated with."""
    from idp.clock import timestamp
    from idp.extensions import clock
    from idp.login import assurance

    now = timestamp(clock().now()) if at is None else at
    proof = assurance.Proof()
    if "pwd" in amr:
        proof.add(assurance.password_factor(now))
    if "mail" in amr:
        proof.add(assurance.Factor(method=assurance.Method.EMAIL_CODE, at=now, how="test"))
    if "hwk" in amr:
        acr = credential_acr or (assurance.settings().acr_platform if credential_factors >= 2 else None)
        proof.add(assurance.platform_factor(now, activation_factors=credential_factors, activation_acr=acr))
    if trusted_browser:
        proof.add(assurance.trusted_browser_factor(now))
    return proof


def test_requirement(kind: str = "web", request: dict[str, str] | None = None, *,
                     require_email_code: bool | None = None) -> Any:
    """The requirement /authorize computes for a client of ``kind`` and this request."""
    from idp.login import assurance

    return assurance.requirement(client_kind=kind, client_requires_code=kind != "mobile" if require_email_code is None
                                 else require_email_code, acr_values=(request or {}).get("acr_values"),
                                 claims_request={})


test_requirement.__test__ = False  # type: ignore[attr-defined]  (a helper, not a test)


def register_identity(nir: str, **fields: Any) -> None:
    """Put a person for ``nir`` into the embedded registry (RFI), as ``idp rfi import`` does (idempotent).
    The login asks the registry for the person after the password: an account alone is not enough."""
    from idp.rfi_adapter.sql import import_records

    record = {"nir": nir, "given_name": "Alice Marie", "family_name": "MARTIN", "preferred_username": None,
              "birthdate": "1985-05-01", "gender": "female" if nir.startswith("2") else "male",
              "birthplace": "75114", "birthcountry": "99100", "phone": None, "vitale_card_serial": "8250099999",
              "iban": "FR7630006000011234567890189", **fields}
    import_records([record])
