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
from typing import Any

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
    assert all(rate["per_s"] > 0 and rate["cpu_ms_per_hash"] > 0 for rate in data["facts"]["argon2_rate"].values())
    # The stores' work per operation: a refresh writes its successor token (PostgreSQL) and its access token (Redis).
    stores = by_name["refresh grant"]["extra"]["stores_per_op"]
    assert stores["pg_rows_inserted"] > 0 and stores["pg_commits"] > 0 and stores["redis_commands"] > 0
    # The ratios of issue 15 under their stable keys; the smoke run measures discovery per CPU-second.
    ratio = data["ratios"]["discovery_per_cpu"]
    assert ratio["value"] > 0 and ratio["target"] == 5000 and isinstance(ratio["met"], bool)
    markdown = (out / "report.md").read_text()
    assert "## Targets (issue 15)" in markdown and "## Redis memory" in markdown
    assert "## What one operation costs the stores" in markdown


def test_ratios_compare_cpu_to_cpu_and_mark_each_target():
    from bench.load import Result
    from bench.report import ratios

    def result(target, name, completed, cpu_s, per_s=100.0, **extra):
        return Result(name=name, target=target, users=2, completed=completed, errors=0, elapsed_s=1.0, per_s=per_s,
                      latency=summary([0.01]), steps={}, server_cpu_s=cpu_s, generator_cpu_s=0.0, extra=extra)

    results = [result("idp 1w", "login (e-mail code)", 10, 0.3, hash_cpu_ms=20.0),  # 30 ms per login
               result("idp 1w", "refresh grant", 100, 0.2, per_s=400.0),  # 500 per CPU-s
               result("oidc-provider", "refresh grant", 100, 0.05),  # 2000 per CPU-s
               result("idp 2w", "refresh grant", 100, 0.2, per_s=760.0)]
    found = ratios(results, {"argon2_rate": {"1": {"cpu_ms_per_hash": 99.0}}})
    assert found["login_cpu_per_hash"]["value"] == 1.5 and found["login_cpu_per_hash"]["met"] is True
    assert found["refresh_vs_peer_per_cpu"]["value"] == 0.25 and found["refresh_vs_peer_per_cpu"]["met"] is False
    assert found["scaling_2w_over_1w"]["value"] == 1.9 and found["scaling_2w_over_1w"]["met"] is True
    assert "code_vs_peer_per_cpu" not in found  # not measured: absent, never a made-up value


def test_capacity_sizes_from_the_per_operation_figures_and_the_stated_assumptions():
    from bench import capacity

    def row(name, cpu_ms, **stores):
        # 1000 operations in cpu_ms seconds: cpu_ms milliseconds each
        return {"target": "idp 1w", "name": name, "completed": 1000, "server_cpu_s": cpu_ms,
                "extra": {"stores_per_op": stores}}

    data = {"results": [row("login (e-mail code)", 40.0, redis_commands=50, pg_commits=3),
                        row("login (trusted browser)", 30.0, redis_commands=30, pg_commits=2),
                        row("refresh grant", 2.0, redis_commands=5, pg_commits=1),
                        row("userinfo", 1.0, redis_commands=1)],
            "facts": {"argon2_rate": {"1": {"cpu_ms_per_hash": 20.0}},
                      "database_per_login": {"tables": {"audit_events": {"rows_per_login": 4, "bytes_per_login": 1000}}}}}
    a = {**capacity.ASSUMPTIONS, "accounts": 36_000_000, "peak_day_login_share": 0.1, "peak_hour_share": 0.1,
         "burst": 1.0, "trusted_share": 0.5, "refreshes_per_login": 2, "userinfo_per_login": 1,
         "average_day_login_share": 0.1}
    sized = capacity.size(data, a)
    assert sized["rates"]["logins_s"] == 100  # 36 M x 10 % x 10 % / 3600 s
    # 50 x 40 ms + 50 x 30 ms + 200 x 2 ms + 100 x 1 ms = 4 CPU-seconds per second
    assert abs(sized["idp_busy_cores"] - 4.0) < 1e-9 and abs(sized["hash_cores"] - 2.0) < 1e-9
    assert sized["redis_ops_s"] == 50 * 50 + 50 * 30 + 200 * 5 + 100 * 1
    assert sized["audit_rows_per_day"] == 3_600_000 * 4 and sized["audit_bytes_per_day"] == 3_600_000 * 1000
    assert "| refresh grant/s | 200.0 |" in capacity.markdown(data, a)


def test_compare_prints_each_ratio_and_the_gain_per_workload_of_two_reports(tmp_path: Path) -> None:
    """``python -m bench.compare`` builds the report's before/after tables from two report.json files."""
    from bench.compare import ratios_table, workloads_table

    def report(cpu_s: float, ratio: float, met: bool) -> dict[str, Any]:
        return {"ratios": {"refresh_vs_peer_per_cpu": {"value": ratio, "target": 0.5, "comparison": ">=",
                                                       "met": met}},
                "results": [{"name": "refresh grant", "target": "idp 1w", "completed": 1000,
                             "server_cpu_s": cpu_s, "per_server_cpu_s": round(1000 / cpu_s)}]}

    before, after = report(3.0, 0.37, False), report(2.0, 0.55, True)
    assert "| `refresh_vs_peer_per_cpu` | >= 0.5 | 0.37 | 0.55 | yes |" in ratios_table(before, after)
    assert "| refresh grant | idp 1w | 3.0 | 2.0 | 333 | 500 | 1.50 x |" in workloads_table(before, after)
