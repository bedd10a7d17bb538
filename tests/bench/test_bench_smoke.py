"""The benchmark harness works end to end in its tiny mode (``make bench`` runs the full one).

gunicorn on a throw-away PostgreSQL database and Redis prefix, two virtual users, one second per
workload: the numbers mean nothing, the test proves that every part runs and that the reports are
written with what the full run reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.load import percentile, summary

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([], 50, 0.0),
    ([0.5], 99, 0.5),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50, 5),
    ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95, 10),
    (list(range(1, 101)), 99, 99),
])
def test_percentile_is_the_nearest_rank(values, q, expected):
    assert percentile(values, q) == expected


def test_summary_is_in_milliseconds():
    assert summary([0.001, 0.002, 0.003])["p50_ms"] == 2.0


def test_smoke_run_writes_both_reports(tmp_path, postgres_url, redis_server):
    out = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    data = json.loads((out / "report.json").read_text())
    by_name = {r["name"]: r for r in data["results"]}
    for name in ("refresh grant", "discovery"):
        assert by_name[name]["completed"] > 0 and by_name[name]["errors"] == 0, by_name[name]
        assert by_name[name]["latency"]["p95_ms"] > 0
        assert by_name[name]["server_cpu_s"] > 0
    assert {"session", "interaction"} <= set(data["facts"]["redis"])
    assert all(rate["per_s"] > 0 for rate in data["facts"]["argon2_rate"].values())
    assert any(t["target"].startswith("refresh grants") for t in data["targets"])
    markdown = (out / "report.md").read_text()
    assert "## Targets (issue 8)" in markdown and "## Redis memory" in markdown
