"""What every request pays, made cheaper without changing what it does (issue 15): the session's signing
serializer made once per set of keys, the access log's timestamp made once per second, the HTTP histogram's
children bound once."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import itsdangerous
import pytest


def test_the_session_serializer_is_made_once_and_again_when_the_secret_key_changes(app: Any) -> None:
    interface = app.session_interface
    first = interface.get_signing_serializer(app)
    assert interface.get_signing_serializer(app) is first
    cookie = first.dumps({"csrf_token": "x"})
    app.secret_key = "another-secret-key-0123456789abcdefghijkl"
    second = interface.get_signing_serializer(app)
    assert second is not first
    assert second.loads(second.dumps({"a": 1})) == {"a": 1}
    with pytest.raises(itsdangerous.BadSignature):
        second.loads(cookie)  # a cookie signed with the old key is refused (no fallback configured)


def test_the_csrf_session_cookie_still_round_trips(client: Any) -> None:
    """A form page sets the CSRF session cookie; a POST with its token is accepted (the session is read back)."""
    from tests.conftest import csrf_from

    page = client.get("/logout")
    assert page.status_code == 200
    assert client.post("/logout", data={"csrf_token": "forged", "confirm": "1"}).status_code == 400
    response = client.post("/logout", data={"csrf_token": csrf_from(page.data), "confirm": "1"})
    assert response.status_code == 303


def test_the_json_log_timestamp_is_iso_8601_utc_with_milliseconds() -> None:
    from idp.observability import JsonFormatter

    formatter = JsonFormatter()
    for created in (1_764_633_600.0, 1_764_633_600.123456, 1_764_633_601.999, 1_764_633_601.5):
        record = logging.makeLogRecord({"msg": "m", "created": created})
        expected = datetime.fromtimestamp(int(created), UTC).isoformat().replace("+00:00", "")
        line = formatter.format(record)
        assert f'"ts": "{expected}.{int((created - int(created)) * 1000):03d}+00:00"' in line


def test_the_access_log_keeps_its_fields_and_redaction(client: Any, caplog: Any) -> None:
    with caplog.at_level(logging.INFO, logger="idp.access"):
        response = client.get("/healthz", headers={"X-Request-Id": "abc-123-def-456"})
        client.get("/reinitialisation/185017505600112")
    lines = [r for r in caplog.records if r.name == "idp.access"]
    assert lines[0].request_id == "abc-123-def-456" == response.headers["X-Request-Id"]
    assert (lines[0].method, lines[0].path, lines[0].status_code) == ("GET", "/healthz", 200)
    assert "185017505600112" not in str([vars(r) for r in lines])


def test_the_http_histogram_child_is_bound_once() -> None:
    from idp.metrics import HTTP_DURATION, request_timer

    child = request_timer("/healthz", "GET", "200")
    assert request_timer("/healthz", "GET", "200") is child
    assert child is HTTP_DURATION.labels(route="/healthz", method="GET", status="200")


def test_a_worker_ready_to_serve_has_every_page_compiled_and_its_start_up_objects_frozen(
        app: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """gunicorn's post_worker_init (config/gunicorn.conf.py) calls idp.ready_to_serve on the worker's app:
    no template is compiled by a person's request, and full garbage collections no longer walk the
    start-up objects (a ~0.1 s pause of the worker's threads each time before)."""
    import gc
    import runpy
    from types import SimpleNamespace

    lines: list[str] = []
    worker = SimpleNamespace(wsgi=app, log=SimpleNamespace(info=lambda msg, *args: lines.append(msg % args)))
    # The config sets PROMETHEUS_MULTIPROC_DIR when absent: set here, it is restored after the test (left in
    # this process's environment, it would put every server a later test starts in multiprocess mode).
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setenv("IDP_SETTINGS_CHECKED_BY", "test")  # the config marks the settings checked by its process
    config = runpy.run_path("config/gunicorn.conf.py")
    try:
        config["post_worker_init"](worker)
        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()  # the test process goes on collecting as usual
    names = app.jinja_env.list_templates(extensions=("html", "txt"))
    assert len(names) > 40
    cached = {template.name for template in app.jinja_env.cache.values()}
    assert set(names) <= cached
    assert frozen > 10_000, "the modules, the app and its caches are frozen"
    assert lines and f"{frozen} start-up objects frozen" in lines[0]
    assert app.test_client().get("/healthz").status_code == 200  # and the app serves as before


def test_another_wsgi_app_under_the_gunicorn_config_is_frozen_without_pages() -> None:
    """The bench runs a trivial WSGI function under config/gunicorn.conf.py (the gunicorn floor): the worker
    still boots (a worker that fails post_worker_init exits with status 3)."""
    import gc

    from idp import ready_to_serve

    try:
        assert ready_to_serve(lambda environ, start_response: [b""]) > 10_000
    finally:
        gc.unfreeze()
