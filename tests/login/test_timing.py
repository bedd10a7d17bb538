"""An unknown NIR costs the same time as a wrong password (no account enumeration by timing).

Measured with the production argon2id cost (the other tests use a cheap one), after warming both
paths up, as the median of interleaved rounds so that one slow request (GC, a busy core) cannot
decide the result."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest

from tests.conftest import csrf_from
from tests.login.conftest import NIR, UNKNOWN_NIR, bind, make_account, new_interaction


@pytest.fixture
def app_config() -> dict[str, Any]:
    """The default (production) argon2id parameters: the hash dominates a password step, as in production."""
    return {"argon2_time_cost": 2, "argon2_memory_cost": 19 * 1024,
            "max_failed_attempts": 100, "address_failure_limit": 1000}  # measure the password path, not the lock


def _one_attempt(app: Any, nir: str) -> float:
    client = app.test_client()
    bind(client, new_interaction(app))
    token = csrf_from(client.get("/connexion").data)
    started = time.perf_counter()
    response = client.post("/connexion", data={"csrf_token": token, "nir": nir, "password": "Pas-Le-Bon-2"})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    return elapsed


def test_unknown_nir_costs_the_same_time_as_a_wrong_password(app: Any) -> None:
    make_account(app)
    for nir in (NIR, UNKNOWN_NIR):  # warm-up: first dummy hash, first queries, templates
        _one_attempt(app, nir)
    samples: dict[str, list[float]] = {"known": [], "unknown": []}
    for _ in range(7):  # interleaved rounds
        samples["known"].append(_one_attempt(app, NIR))
        samples["unknown"].append(_one_attempt(app, UNKNOWN_NIR))
    known, unknown = statistics.median(samples["known"]), statistics.median(samples["unknown"])
    assert abs(known - unknown) < 0.35 * max(known, unknown), samples
