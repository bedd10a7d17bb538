"""The production gunicorn configuration preloads the app in the master and forks the workers from it.

A worker replaced by ``max_requests`` is then a fork, not a second start of the application. What must hold
on the real PostgreSQL and Redis: the master really holds the loaded app, replaced workers come back and
serve, and every worker talks to the stores over its own connections (``idp.after_fork``; redis-py's pools
start afresh in a new process), so that refresh chains run in parallel across replacements without one
broken answer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import free_port
from tests.oidc.conftest import flow, login, make_person, make_rp, redeem
from tests.resilience.harness import answers_200, idp_env, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _production_config_server(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "gunicorn.log"
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "idp:create_app()", "-c", str(ROOT / "config/gunicorn.conf.py")],
        env={**os.environ, **env, "IDP_ISSUER": url, "IDP_BIND": f"127.0.0.1:{port}", "IDP_WORKERS": "2",
             "IDP_MAX_REQUESTS": "20", "IDP_LOG_LEVEL": "info", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")},
        cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT)

    def up() -> bool:
        assert process.poll() is None, log.read_text()[-2000:]
        return answers_200(url + "/readyz")

    wait_until(up, timeout=40, what="gunicorn under config/gunicorn.conf.py")
    return process, url, log


def test_workers_forked_from_the_preloaded_app_are_replaced_and_keep_their_own_connections(
        pg_app: Any, postgres_url: str, redis_prefix: str, mailbox: Any, clock: Any, tmp_path: Path) -> None:
    rp = make_rp(pg_app, "web")
    person = make_person(pg_app)
    chains = []
    for _ in range(4):  # four token families of one person, one per client thread
        client = pg_app.test_client()
        f = flow(rp)
        chains.append(redeem(client, rp, login(pg_app, client, person, f)["code"], f).json["refresh_token"])
    env = idp_env(postgres_url=postgres_url, redis_prefix=redis_prefix, mailbox=mailbox, clock=clock,
                  clock_file=tmp_path / "clock")
    process, url, log = _production_config_server(env, tmp_path)
    try:
        maps = Path(f"/proc/{process.pid}/maps").read_text()
        assert "_argon2_cffi_bindings" in maps and "psycopg" in maps, "the master holds the loaded application"
        failures: list[str] = []

        def refresh_chain(token: str) -> None:
            for _ in range(15):
                answer = requests.post(url + "/token", auth=(rp.client_id, rp.secret), timeout=30,
                                       data={"grant_type": "refresh_token", "refresh_token": token})
                if answer.status_code != 200:
                    failures.append(f"refresh {answer.status_code} {answer.text[:200]}")
                    return
                token = answer.json()["refresh_token"]
                ready = requests.get(url + "/readyz", timeout=30)
                if ready.status_code != 200:
                    failures.append(f"readyz {ready.status_code} {ready.text[:200]}")

        threads = [threading.Thread(target=refresh_chain, args=(token,)) for token in chains]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not failures, failures
        boots = log.read_text().count("Booting worker")
        # 4 chains x 15 x 2 requests over 2 workers replaced every 20-22 requests, plus the start-up probes.
        assert boots >= 2 + 4, f"workers were replaced by max_requests ({boots} boots)"
        assert log.read_text().count("start-up objects frozen") == boots  # every fork became ready
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_a_bad_setting_stops_the_preloading_master_with_one_line(tmp_path: Path) -> None:
    """The settings are checked when gunicorn reads the config, before the master loads the app."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "gunicorn"), "idp:create_app()", "-c", str(ROOT / "config/gunicorn.conf.py")],
        env={**os.environ, "IDP_SMTP_PORT": "abc", "IDP_CONFIG": "", "IDP_BIND": f"127.0.0.1:{free_port()}",
             "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")},
        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Configuration error: IDP_SMTP_PORT" in result.stderr and "Traceback" not in result.stderr


def test_a_sighup_keeps_the_live_workers_metrics_and_a_new_start_forgets_a_dead_runs(tmp_path: Path) -> None:
    """The metrics directory is emptied once per start (a previous run's files would be added up), not when a
    SIGHUP makes the master read the config again (the requests counted so far stay counted)."""
    import signal

    from tests.conftest import TEST_SECRET

    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_999999.db").write_bytes(b"")  # a dead run's file
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "IDP_ENV": "development", "IDP_SECRET_KEY": TEST_SECRET, "IDP_CONFIG": "",
           "IDP_ISSUER": f"http://127.0.0.1:{port}", "IDP_DATABASE_URL": f"sqlite:///{tmp_path}/idp.sqlite3",
           "IDP_BIND": f"127.0.0.1:{port}", "IDP_WORKERS": "2", "IDP_METRICS_BIND": f"127.0.0.1:{metrics_port}",
           "PROMETHEUS_MULTIPROC_DIR": str(metrics), "IDP_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "idp:create_app()", "-c",
                                str(ROOT / "config/gunicorn.conf.py")], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def counted() -> float:
        text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("idp_http_request_duration_seconds_count") and 'route="/healthz"' in line)

    def healthy() -> bool:
        return answers_200(f"http://127.0.0.1:{port}/healthz")

    try:
        wait_until(healthy, timeout=40, what="gunicorn")
        assert not (metrics / "counter_999999.db").exists()
        for _ in range(20):
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        before = counted()
        assert before >= 20
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: healthy() and counted() >= before, timeout=30, what="the reloaded workers")
        for _ in range(5):
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert counted() >= before + 5
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=20)
