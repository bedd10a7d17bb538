"""The HTTP registry client against a real local HTTP server started by the test."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from idp.nir import Nir
from idp.rfi_adapter import IdentityNotFound, RegistryUnavailable, get_rfi
from idp.rfi_adapter.http import CircuitBreaker, HttpRfiAdapter
from tests.accounts.conftest import demo_records


class Registry:
    """A fake REST registry: ``mode`` decides every answer; ``hits`` counts requests."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.hits = 0
        self.records = {r["nir"]: r for r in demo_records()}
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                registry.hits += 1
                nir = self.path.rsplit("/", 1)[-1]
                if registry.mode == "slow":
                    time.sleep(0.6)
                if registry.mode == "500":
                    return self._send(500, b'{"error":"boom"}')
                if registry.mode == "malformed":
                    return self._send(200, b'{"nir": "2850369')
                if registry.mode == "incomplete":
                    return self._send(200, json.dumps({"nir": nir}).encode())
                if not self.path.startswith("/individus/") or nir not in registry.records:
                    return self._send(404, b'{"error":"not_found"}')
                return self._send(200, json.dumps(registry.records[nir]).encode())

            def _send(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def log_message(self, *args: Any) -> None:  # keep request lines (with NIRs) out of the logs
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def registry() -> Iterator[Registry]:
    server = Registry()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def adapter(registry: Registry) -> HttpRfiAdapter:
    return HttpRfiAdapter(registry.url, connect_timeout=0.5, read_timeout=0.2, retries=1, backoff=0.01,
                          breaker=CircuitBreaker("rfi-test", threshold=2, reset_seconds=30))


KNOWN = demo_records()[2]["nir"]  # born in Corsica (2A)


def test_found_identity_is_parsed(any_app: Any, registry: Registry, adapter: HttpRfiAdapter) -> None:
    with any_app.app_context():
        identity = adapter.lookup(Nir.parse(KNOWN))
    assert identity.family_name == "SANTONI" and identity.birthplace == "2A004"
    assert registry.hits == 1


def test_not_found_is_distinct_and_not_retried(any_app: Any, registry: Registry, adapter: HttpRfiAdapter) -> None:
    with any_app.app_context(), pytest.raises(IdentityNotFound):
        adapter.lookup(Nir.parse("1010199999999"))
    assert registry.hits == 1
    with any_app.app_context():
        assert adapter.breaker.state() == "closed"


@pytest.mark.parametrize("mode", ["slow", "500", "malformed", "incomplete"])
def test_failures_are_registry_unavailable(any_app: Any, registry: Registry, adapter: HttpRfiAdapter,
                                           mode: str) -> None:
    registry.mode = mode
    with any_app.app_context(), pytest.raises(RegistryUnavailable) as excinfo:
        adapter.lookup(Nir.parse(KNOWN))
    assert "momentanément indisponible" in excinfo.value.description
    # timeouts and 5xx are retried once; a malformed answer is not worth retrying
    assert registry.hits == (2 if mode in ("slow", "500") else 1)


def test_timeout_is_bounded_by_the_read_timeout(any_app: Any, registry: Registry, adapter: HttpRfiAdapter) -> None:
    registry.mode = "slow"
    started = time.monotonic()
    with any_app.app_context(), pytest.raises(RegistryUnavailable):
        adapter.lookup(Nir.parse(KNOWN))
    assert time.monotonic() - started < 1.0  # 2 attempts x 0.2 s + backoff, not 2 x 0.6 s


def test_circuit_opens_then_fails_fast_then_recovers(any_app: Any, clock: Any, registry: Registry,
                                                     adapter: HttpRfiAdapter) -> None:
    registry.mode = "500"
    with any_app.app_context():
        for _ in range(2):
            with pytest.raises(RegistryUnavailable):
                adapter.lookup(Nir.parse(KNOWN))
        assert adapter.breaker.state() == "open"
        hits = registry.hits
        with pytest.raises(RegistryUnavailable):  # open: no request reaches the registry
            adapter.lookup(Nir.parse(KNOWN))
        assert registry.hits == hits

        clock.advance(31)  # half-open: one trial request; it fails and the breaker opens again
        with pytest.raises(RegistryUnavailable):
            adapter.lookup(Nir.parse(KNOWN))
        assert registry.hits > hits and adapter.breaker.state() == "open"

        registry.mode = "ok"
        clock.advance(31)
        assert adapter.lookup(Nir.parse(KNOWN)).family_name == "SANTONI"  # the trial succeeds: closed
        assert adapter.breaker.state() == "closed"
        assert adapter.lookup(Nir.parse(KNOWN)).family_name == "SANTONI"


def test_breaker_state_is_shared_by_every_worker(any_app: Any, registry: Registry) -> None:
    """Two adapters (two workers) share the Redis breaker: one worker's failures open it for both."""
    def worker() -> HttpRfiAdapter:
        return HttpRfiAdapter(registry.url, connect_timeout=0.5, read_timeout=0.2, retries=0, backoff=0.01,
                              breaker=CircuitBreaker("rfi-shared", threshold=2, reset_seconds=30))

    first, second = worker(), worker()
    registry.mode = "500"
    with any_app.app_context():
        for _ in range(2):
            with pytest.raises(RegistryUnavailable):
                first.lookup(Nir.parse(KNOWN))
        hits = registry.hits
        registry.mode = "ok"
        with pytest.raises(RegistryUnavailable):
            second.lookup(Nir.parse(KNOWN))
    assert registry.hits == hits


@pytest.fixture
def app_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    if "registry" in request.fixturenames and request.node.name.startswith("test_configured"):
        server = request.getfixturevalue("registry")
        return {"rfi_backend": "http", "rfi_url": server.url + "/", "rfi_read_timeout": 0.2, "rfi_retries": 1}
    return {}


def test_configured_http_backend_is_used_by_the_app(registry: Registry, app: Any) -> None:
    with app.app_context():
        assert isinstance(get_rfi(), HttpRfiAdapter)
        assert get_rfi().lookup(Nir.parse(KNOWN)).given_name == "Paul Antoine"
