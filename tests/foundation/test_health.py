"""Liveness and readiness: /readyz follows the database and a real Redis server going away and back."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import redis

from idp import create_app
from tests.conftest import base_config, free_port


def test_healthz_answers_while_the_process_is_up(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_is_ok_when_database_and_redis_answer(any_app):
    response = any_app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"] == {"database": "ok", "redis": "ok"}


def _start_redis(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                                "127.0.0.1", "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = redis.Redis(port=port, socket_connect_timeout=0.2)
    for _ in range(100):
        try:
            probe.ping()
            return process
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_readyz_is_503_while_redis_is_down_and_200_once_it_is_back(tmp_path, clock):
    port = free_port()
    server = _start_redis(port)
    try:
        app = create_app(base_config(clock, None, database_url=f"sqlite:///{tmp_path}/r.db",
                                     redis_url=f"redis://127.0.0.1:{port}/0"))
        client = app.test_client()
        assert client.get("/readyz").status_code == 200

        server.terminate()
        server.wait(5)
        down = client.get("/readyz")
        assert down.status_code == 503
        assert down.json["checks"]["redis"] == "down"
        assert down.json["checks"]["database"] == "ok"

        server = _start_redis(port)
        assert client.get("/readyz").status_code == 200
    finally:
        server.kill()


def test_readyz_is_503_when_the_database_is_unreachable(clock):
    app = create_app(base_config(clock, None, database_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
                                 redis_url="memory://"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"] == {"database": "down", "redis": "ok"}
