"""Identity provider application factory (anchor: flask ``examples/tutorial/flaskr/__init__.py``)."""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from idp.clock import Clock, FileClock, SystemClock
from idp.settings import Settings, load_settings

if TYPE_CHECKING:
    from itsdangerous import URLSafeTimedSerializer  # Flask's own dependency, for the annotation only

__all__ = ["after_fork", "create_app", "ready_to_serve"]

# Objects (not settings) that tests may inject through test_config.
_INJECTABLE = ("clock", "redis", "rfi", "sms")


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create and configure the identity provider.

    ``test_config`` may hold setting overrides (lower-case field names of :class:`Settings`),
    Flask config keys (upper case, e.g. ``TESTING``) and injected objects: ``clock``, ``redis``,
    ``rfi`` (an RFI adapter) and ``sms`` (an SMS gateway).
    """
    test_config = dict(test_config or {})
    injected = {name: test_config.pop(name) for name in _INJECTABLE if name in test_config}
    flask_config = {k: test_config.pop(k) for k in list(test_config) if k.isupper()}
    settings = load_settings(test_config)

    from idp.observability import configure_logging, init_request_logging

    configure_logging(settings.log_level)
    app = Flask(__name__, instance_path=os.path.abspath("instance"), instance_relative_config=True)
    app.session_interface = _SessionInterface()
    _configure_flask(app, settings)
    app.config.update(flask_config)
    app.extensions["idp.settings"] = settings
    app.extensions["idp.clock"] = injected.get("clock") or _default_clock(settings)
    _init_storage(app, settings, injected.get("redis"))
    _init_extensions(app, settings)
    init_request_logging(app)
    _register_areas(app, injected)
    from idp.oidc import metadata_wsgi, token_wsgi, userinfo_wsgi

    token_wsgi.install(app)  # the token endpoint answered before Flask's request stack
    userinfo_wsgi.install(app)  # userinfo's common case too
    metadata_wsgi.install(app)  # discovery and JWKS too
    if settings.proxy_hops:  # outermost: every layer sees the client's scheme, host and address
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops,  # type: ignore[method-assign]
                                x_proto=settings.proxy_hops, x_host=settings.proxy_hops)
    return app


def ready_to_serve(app: object) -> int:
    """Make a freshly started worker cheap to run: every page template compiled now (not by the first
    person who opens it), then everything alive at start-up (modules, the app, its caches, the compiled
    templates) moved out of the garbage collector's reach with :func:`gc.freeze`.

    Without the freeze, each full collection walks those ~165,000 start-up objects again: a pause of
    ~0.1 s for every thread of the worker (measured in a bench worker), rare in steady state but
    a p99 spike each time. Frozen objects are never collected, which start-up objects never are anyway.
    gunicorn calls it in the master once it preloaded the app, before the first fork (what the workers
    inherit then stays shared: Python's ``gc.freeze`` documentation), and again in each worker
    (``config/gunicorn.conf.py``), where it only has the worker's few new objects to freeze; returns the
    number of objects frozen."""
    if isinstance(app, Flask):  # another WSGI app under this configuration (the bench's floor) is only frozen
        for name in app.jinja_env.list_templates(extensions=("html", "txt")):
            app.jinja_env.get_template(name)
    gc.collect()  # what start-up left as garbage goes now, not frozen for the worker's life
    gc.freeze()
    return gc.get_freeze_count()


def after_fork(app: object) -> None:
    """In a worker forked from a master that loaded the app (gunicorn's ``preload_app``): the database
    pool forgets any connection the master holds, so that no socket is shared between processes; each
    worker opens its own on first use. ``close=False``: closing them here would end the master's sessions
    on the server (SQLAlchemy, "Using Connection Pools with Multiprocessing or os.fork()"). redis-py's
    pools notice the new process id by themselves and start afresh (``ConnectionPool._checkpid``)."""
    if isinstance(app, Flask):
        from idp.extensions import db

        with app.app_context():
            for engine in db.engines.values():
                engine.dispose(close=False)


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session (it carries Flask-WTF's CSRF token) with its signing serializer made
    once per set of keys instead of on every request (~6 µs each, every request opens the session)."""

    def __init__(self) -> None:
        self._made: tuple[tuple[Any, ...], URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        """Flask's serializer, rebuilt only when the secret key or its fallbacks change."""
        keys = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        made = self._made
        if made is None or made[0] != keys:
            made = self._made = (keys, super().get_signing_serializer(app))
        return made[1]


def _default_clock(settings: Settings) -> Clock:
    clock_file = os.environ.get("IDP_CLOCK_FILE", "")
    if clock_file and not settings.is_production:
        return FileClock(clock_file)
    return SystemClock()


def _configure_flask(app: Flask, s: Settings) -> None:
    app.config.update(
        SECRET_KEY=s.secret_key,
        SQLALCHEMY_DATABASE_URI=s.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(s.database_url),
        MAIL_SERVER=s.smtp_host,
        MAIL_PORT=s.smtp_port,
        MAIL_USE_TLS=s.smtp_use_tls,
        MAIL_USERNAME=s.smtp_username or None,
        MAIL_PASSWORD=s.smtp_password or None,
        MAIL_DEFAULT_SENDER=s.mail_sender,
        MAIL_TIMEOUT=s.smtp_timeout,
        MAIL_SUPPRESS_SEND=False,  # tests use a real SMTP server (aiosmtpd), never a fake
        MAX_CONTENT_LENGTH=64 * 1024,
        MAX_FORM_MEMORY_SIZE=64 * 1024,
        MAX_FORM_PARTS=200,
        SESSION_COOKIE_NAME="__Host-idp_csrf" if s.secure_cookies else "idp_csrf",
        SESSION_COOKIE_SECURE=s.secure_cookies,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_SSL_STRICT=False,
        PREFERRED_URL_SCHEME="https" if s.secure_cookies else "http",
        JSON_AS_ASCII=False,
    )


# A pooled connection unused for this long is pinged before it is handed out (see _ping_when_idle).
POOL_PING_AFTER_IDLE_SECONDS = 10.0


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 15}}
    # hide_parameters: a failed statement's text in an exception or a log line names no bound value (token
    # hashes, the NIR look-up HMAC).
    return {"pool_size": 10, "max_overflow": 10, "pool_timeout": 5, "connect_args": {"connect_timeout": 3},
            "hide_parameters": True}


def _ping_when_idle(engine: Any) -> None:
    """Ping a pooled connection only when it sat idle for :data:`POOL_PING_AFTER_IDLE_SECONDS`.

    ``pool_pre_ping`` costs one more round trip (an autocommit ``SELECT 1``, a transaction of its own
    on the server) on every request. A connection in steady use was proven alive a moment ago; one that
    sat idle may have been closed by the server, a proxy or a failover, and is checked. A connection
    that dies while in use is still caught: the request fails closed with the 503 page or JSON
    (:mod:`idp.errors`), and SQLAlchemy then invalidates the whole pool, so the next requests reconnect."""
    import time

    from sqlalchemy import event, exc

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_connection: Any, record: Any) -> None:
        record.info["idp.used_at"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["idp.used_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idp.used_at", 0.0) < POOL_PING_AFTER_IDLE_SECONDS:
            return
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            dbapi_connection.rollback()
        except Exception as error:  # any failure: the pool drops this connection and opens another
            raise exc.DisconnectionError() from error


def _init_storage(app: Flask, settings: Settings, redis_client: Any) -> None:
    from idp.extensions import db, migrate
    from idp.redis_store import make_redis

    if settings.database_url.startswith("sqlite:///") and not settings.database_url.startswith("sqlite:////"):
        os.makedirs(app.instance_path, exist_ok=True)
    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(__file__), "migrations"),
                     render_as_batch=True, compare_type=True)
    app.extensions["idp.redis"] = redis_client if redis_client is not None else make_redis(settings.redis_url,
                                                                                              settings)
    with app.app_context():
        if settings.database_url.startswith("sqlite"):
            _sqlite_pragmas(db.engine)
        else:
            _ping_when_idle(db.engine)


def _sqlite_pragmas(engine: Any) -> None:
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.close()


def _init_extensions(app: Flask, settings: Settings) -> None:
    from idp import metrics
    from idp.errors import register_error_handlers
    from idp.extensions import csrf, mail
    from idp.security_headers import init_security_headers

    mail.init_app(app)
    csrf.init_app(app)
    register_error_handlers(app)
    metrics.init_app(app)
    init_security_headers(app, settings)


def _dev_sms(settings: Settings) -> Any:
    """The development SMS gateway (messages shown on /dev/mailbox) when ``sms_backend`` is dev."""
    if settings.sms_backend != "dev":
        return None
    from idp.dev.mailbox import DevSmsGateway

    return DevSmsGateway()


def _register_areas(app: Flask, injected: dict[str, Any]) -> None:
    """Each area attaches its blueprints and services; order matters only for the dev tools."""
    # Accounts are referenced by every other area's tables: their models must be known first.
    import idp.accounts.models  # noqa: F401
    from idp import accounts, advisors, audit, home, login, mfa, notify, oidc, rfi_adapter, webauthn

    audit.init_app(app)
    rfi_adapter.init_app(app, injected.get("rfi"))
    notify.init_app(app, injected.get("sms") or _dev_sms(app.extensions["idp.settings"]))
    accounts.init_app(app)
    mfa.init_app(app)
    webauthn.init_app(app)
    oidc.init_app(app)
    login.init_app(app)
    advisors.init_app(app)
    home.init_app(app)
    if not app.extensions["idp.settings"].is_production:
        from idp import dev

        dev.init_app(app)
