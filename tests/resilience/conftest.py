"""Fixtures of the resilience tests: applications wired to dependencies the test can break."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from idp import create_app
from idp.extensions import db
from tests.accounts.test_rfi_http import registry  # noqa: F401 (the fake REST registry, shared fixture)
from tests.conftest import base_config
from tests.resilience.harness import RedisProcess

UNAVAILABLE = "Service momentanément indisponible"


@pytest.fixture
def own_redis(tmp_path: Any) -> Iterator[RedisProcess]:
    """A private redis-server (AOF, fsync always) that the test may stop, stall and restart."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisProcess(directory).start()
    yield server
    server.stop()


@pytest.fixture
def make_app(tmp_path: Any, clock: Any, mailbox: Any) -> Iterator[Callable[..., Any]]:
    """Build an IdP on a fresh SQLite file with setting overrides (e.g. ``redis_url``, ``smtp_port``)."""
    built: list[Any] = []

    def build(**overrides: Any) -> Any:
        overrides.setdefault("database_url", f"sqlite:///{tmp_path}/idp-{len(built)}.sqlite3")
        overrides.setdefault("redis_url", "memory://")
        application = create_app(base_config(clock, mailbox, **overrides))
        with application.app_context():
            db.create_all()
        built.append(application)
        return application

    yield build
    for application in built:
        with application.app_context():
            db.session.remove()
            db.engine.dispose()


def text_of(response: Any) -> str:
    """The body of a response with HTML entities decoded."""
    return html.unescape(response.get_data(as_text=True))


def assert_unavailable_page(response: Any) -> None:
    """A 503 French page "Service momentanément indisponible", no traceback."""
    body = text_of(response)
    assert response.status_code == 503, (response.status_code, body[:300])
    assert UNAVAILABLE in body
    assert response.headers.get("Retry-After")
    assert "Traceback" not in body
