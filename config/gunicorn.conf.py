"""gunicorn settings for production: ``gunicorn 'idp:create_app()' -c config/gunicorn.conf.py``.

Workers are stateless (PostgreSQL + Redis hold everything), so scale with IDP_WORKERS on each node
and with more nodes behind the load balancer.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
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
max_requests = 10_000
max_requests_jitter = 1_000
# The application writes JSON access logs with request ids; gunicorn's own access log would duplicate them.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("IDP_LOG_LEVEL", "info").lower()
forwarded_allow_ips = os.environ.get("IDP_FORWARDED_ALLOW_IPS", "127.0.0.1")
limit_request_line = 8190
limit_request_field_size = 8190


# Prometheus multiprocess mode: every worker writes its metrics under this directory, /metrics (or the
# master's metrics_bind server) adds them up. Set before any worker imports prometheus_client; emptied at
# each start so that a previous run's dead workers do not count.
_METRICS_DIR = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(),
                                                                            f"idp-metrics-{os.getpid()}"))


def on_starting(server: object) -> None:
    """Validate the settings once in the master: a bad value stops the start with one clear line."""
    from idp.errors import SettingsError
    from idp.settings import load_settings

    try:
        load_settings()
    except SettingsError as exc:
        print(f"Configuration error: {exc.setting}: {exc.message}", file=sys.stderr)
        sys.exit(2)
    shutil.rmtree(_METRICS_DIR, ignore_errors=True)
    os.makedirs(_METRICS_DIR, exist_ok=True)


def when_ready(server: object) -> None:
    """Serve every worker's metrics on ``metrics_bind`` from the master, when configured."""
    from idp.settings import load_settings

    bind = load_settings().metrics_bind
    if bind:
        from idp.metrics import serve_on

        serve_on(bind)


def post_worker_init(worker: object) -> None:
    """The worker loaded the app: compile its pages and freeze its start-up objects (``idp.ready_to_serve``)."""
    from idp import ready_to_serve

    frozen = ready_to_serve(worker.wsgi)  # type: ignore[attr-defined]
    worker.log.info("worker %s ready: pages compiled, %d start-up objects frozen", os.getpid(), frozen)  # type: ignore[attr-defined]


def child_exit(server: object, worker: object) -> None:
    """A worker that exits leaves its counters in the total; its live gauges are dropped."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
