"""Work that must leave after the answer: small bounded pools of sender threads per process, one per queue.

``mail``: where waiting for SMTP inside the request would tell something (the forgotten-password page
must answer an existing account as fast as an unknown NIR). ``logout``: back-channel logouts of ended
sessions (a relying party that does not answer must not delay the reset mails). The work runs in its own
application context; failures are the job's to handle (it audits and cleans up). ``drain`` waits for the
jobs in flight (tests, and graceful shutdown hooks). Jobs live in memory: a worker restart loses those not
run yet (best effort, as the back-channel logout is).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from flask import Flask

log = logging.getLogger(__name__)

QUEUES = ("mail", "logout")


def _pools() -> dict[str, ThreadPoolExecutor]:
    return {name: ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"idp-outbox-{name}") for name in QUEUES}


_pool = _pools()
_pending: set[Future[None]] = set()
_lock = threading.Lock()


def _afresh_in_child() -> None:
    """A forked process (a gunicorn worker of a preloading master) gets its own pools: the parent's threads
    do not exist in it, and neither should the parent's jobs or a lock a parent thread may have held."""
    global _pool, _pending, _lock
    _pool = _pools()
    _pending = set()
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_afresh_in_child)


def send_later(app: Flask, job: Callable[[], None], *, queue: str = "mail") -> Future[None]:
    """Run ``job`` in a sender thread of ``queue``, inside an application context of ``app``."""

    def run() -> None:
        with app.app_context():
            try:
                job()
            except Exception:  # a background job has nobody to raise to: log it, never kill the pool
                log.exception("outbox job failed")

    future = _pool[queue].submit(run)
    with _lock:
        _pending.add(future)
    future.add_done_callback(_forget)
    return future


def _forget(future: Future[None]) -> None:
    with _lock:
        _pending.discard(future)


def drain(timeout: float = 30.0) -> None:
    """Wait until every job submitted so far has finished (or ``timeout`` seconds passed)."""
    with _lock:
        pending = list(_pending)
    wait(pending, timeout=timeout)
