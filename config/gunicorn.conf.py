"""gunicorn settings for production: ``gunicorn 'idp:create_app()' -c config/gunicorn.conf.py``.

Workers are stateless (PostgreSQL + Redis hold everything), so scale with IDP_WORKERS on each node
and with more nodes behind the load balancer.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile

bind = os.environ.get("IDP_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("IDP_WORKERS", multiprocessing.cpu_count() * 2 + 1))
# Threads let a worker keep serving while one request waits on SMTP or the registry.
worker_class = "gthread"
threads = int(os.environ.get("IDP_THREADS", "4"))
timeout = int(os.environ.get("IDP_WORKER_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# A worker is replaced after this many requests (a bound on whatever a long-lived process could leak).
max_requests = int(os.environ.get("IDP_MAX_REQUESTS", "10000"))
max_requests_jitter = max_requests // 10
# The master loads the application once and forks every worker from it (copy-on-write). A worker that
# max_requests replaces then costs a fork, not ~1 s of CPU for the imports, create_app and the pages
# (measured: at 4,000 discovery requests/s a 1-worker server spent ~40 % of its CPU booting replacements).
# A new release needs a restart of the master (SIGHUP would fork the old code again).
preload_app = True
# The application writes JSON access logs with request ids; gunicorn's own access log would duplicate them.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("IDP_LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("IDP_FORWARDED_ALLOW_IPS", "127.0.0.1")
limit_request_line = 8190
limit_request_field_size = 8190


# Prometheus multiprocess mode: every process writes its metrics under this directory, /metrics (or the
# master's metrics_bind server) adds them up. Made here, when gunicorn reads this file (the master imports
# prometheus_client while it preloads the app); emptied in on_starting, once per start, so that a previous
# run's dead workers do not count (not on a SIGHUP, which reads this file again, nor by `--check-config`).
_METRICS_DIR = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(),
                                                                            f"idp-metrics-{os.getpid()}"))
os.makedirs(_METRICS_DIR, exist_ok=True)


def _validate_settings() -> None:
    """Validate the settings before the master loads the app: a bad value stops the start with one clear
    line (exit status 2), not a traceback from inside the application factory. Once per master: a SIGHUP
    reads this file again, and the preloaded app would not take new settings anyway (restart for those);
    a bad file then must not end the running master. Settings given with gunicorn's ``-e`` are applied
    after this check: give them as environment variables of the process."""
    from idp.errors import SettingsError
    from idp.settings import load_settings

    if os.environ.get("IDP_SETTINGS_CHECKED_BY") == str(os.getpid()):
        return
    try:
        load_settings()
    except SettingsError as exc:
        print(f"Configuration error: {exc.setting}: {exc.message}", file=sys.stderr)
        sys.exit(2)
    os.environ["IDP_SETTINGS_CHECKED_BY"] = str(os.getpid())


_validate_settings()


def on_starting(server: object) -> None:
    """Empty the metrics directory of a previous run (its workers' files would be added up with ours)."""
    for name in os.listdir(_METRICS_DIR):
        if name.endswith(".db"):
            os.remove(os.path.join(_METRICS_DIR, name))


def when_ready(server: object) -> None:
    """Before the first fork: the preloaded app made ready in the master (its pages compiled, its objects
    frozen: what the workers inherit stays shared), and every worker's metrics served on ``metrics_bind``
    from the master, when configured."""
    from idp import ready_to_serve
    from idp.settings import load_settings

    if server.cfg.preload_app:  # type: ignore[attr-defined]
        ready_to_serve(server.app.wsgi())  # type: ignore[attr-defined]

    bind = load_settings().metrics_bind
    if bind:
        from idp.metrics import serve_on

        serve_on(bind)


def post_fork(server: object, worker: object) -> None:
    """A worker forked from the master's app opens its own database connections (``idp.after_fork``)."""
    from idp import after_fork

    if server.cfg.preload_app:  # type: ignore[attr-defined]
        after_fork(worker.app.wsgi())  # type: ignore[attr-defined]


def post_worker_init(worker: object) -> None:
    """The worker loaded the app: compile its pages and freeze its start-up objects (``idp.ready_to_serve``)."""
    from idp import ready_to_serve

    frozen = ready_to_serve(worker.wsgi)  # type: ignore[attr-defined]
    worker.log.info("worker %s ready: pages compiled, %d start-up objects frozen", os.getpid(), frozen)  # type: ignore[attr-defined]


def child_exit(server: object, worker: object) -> None:
    """A worker that exits leaves its counters in the total; its live gauges are dropped."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
