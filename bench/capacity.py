"""Size a national deployment from the per-operation figures of ``make bench`` (``docs/CAPACITY.md``).

``python -m bench.capacity [bench/results/report.json] [--write docs/CAPACITY.md]`` prints the sizing
tables, or rewrites the part of ``docs/CAPACITY.md`` between its ``capacity:begin``/``capacity:end``
markers. The assumptions (:data:`ASSUMPTIONS`) are stated, with their reasoning, in the document; every
other number comes from the report: server CPU per operation (1 worker on its own core), Redis commands
and CPU, PostgreSQL commits, rows, WAL bytes and CPU per operation, Redis bytes per key, database bytes
per row.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- capacity:begin -->", "<!-- capacity:end -->"

# The deployment sized (reasons in docs/CAPACITY.md, "Assumptions").
ASSUMPTIONS: dict[str, float] = {
    "accounts": 40_000_000,
    "peak_day_login_share": 0.10,  # accounts that log in on the busiest day
    "average_day_login_share": 0.04,  # on an ordinary day (for storage per year)
    "peak_hour_share": 0.125,  # of the day's logins in its busiest hour
    "burst": 2.0,  # busiest minute / mean of the busiest hour
    "trusted_share": 0.4,  # logins that skip the e-mail code (trusted browser)
    "refreshes_per_login": 3.0,  # 10-minute access tokens, ~30-minute RP sessions
    "userinfo_per_login": 1.0,
    "cpu_utilisation": 0.6,  # cores sized to run at most this busy at the burst rate
    "session_minutes": 40.0,  # mean life of a browser session (30-minute idle timeout after ~10 minutes of use)
    "interaction_minutes": 2.0,  # mean time from /authorize to the end of the login
    "access_token_ttl_s": 600.0,
    "refresh_family_days": 30.0,  # refresh_token_ttl: rows kept this long, then purged
    "audit_retention_days": 365.0,
    "index_entry_bytes": 64.0,  # one member of a Redis set/zset index (session and token indexes)
    "redis_ops_per_core": 100_000.0,  # commands/s one Redis core serves (small values, no persistence fsync)
    "node_cores": 16.0,  # cores of one IdP node
}


def _result(data: dict[str, Any], target: str, name: str) -> dict[str, Any] | None:
    return next((r for r in data["results"] if r["target"] == target and r["name"] == name and r["completed"]), None)


def per_op(data: dict[str, Any], name: str, target: str = "idp 1w") -> dict[str, float]:
    """Server CPU (ms) and the stores' work for one operation, from the 1-worker row."""
    found = _result(data, target, name)
    if found is None:
        raise SystemExit(f"the report has no '{name}' row on {target}: run the full `make bench`")
    stores = found.get("extra", {}).get("stores_per_op", {})
    return {"cpu_ms": 1000 * found["server_cpu_s"] / found["completed"], **stores}


def rates(a: dict[str, float]) -> dict[str, float]:
    """Operations per second at the sizing point (the busiest minute) and per day."""
    peak_day = a["accounts"] * a["peak_day_login_share"]
    logins = peak_day * a["peak_hour_share"] / 3600 * a["burst"]
    return {"peak_day_logins": peak_day, "average_day_logins": a["accounts"] * a["average_day_login_share"],
            "peak_hour_logins_s": logins / a["burst"], "logins_s": logins,
            "login (e-mail code)": logins * (1 - a["trusted_share"]), "login (trusted browser)": logins * a["trusted_share"],
            "refresh grant": logins * a["refreshes_per_login"], "userinfo": logins * a["userinfo_per_login"]}


def size(data: dict[str, Any], a: dict[str, float] = ASSUMPTIONS) -> dict[str, Any]:
    """Every sized figure (numbers; :func:`markdown` presents them)."""
    r = rates(a)
    ops = {name: per_op(data, name) for name in ("login (e-mail code)", "login (trusted browser)", "refresh grant",
                                                  "userinfo")}
    mix = {name: r[name] for name in ops}

    def total(key: str) -> float:
        return sum(rate * ops[name].get(key, 0.0) for name, rate in mix.items())

    idp_cpu = total("cpu_ms") / 1000
    facts = data.get("facts", {})
    hash_ms = float(facts.get("argon2_rate", {}).get("1", {}).get("cpu_ms_per_hash", 0.0))
    redis = facts.get("redis", {})

    def mean(family: str) -> float:
        return float(redis.get(family, {}).get("mean_bytes", 0.0))

    live_sessions = r["peak_hour_logins_s"] * a["session_minutes"] * 60
    live_interactions = r["peak_hour_logins_s"] * a["interaction_minutes"] * 60
    live_tokens = (r["peak_hour_logins_s"] * (1 + a["refreshes_per_login"])) * a["access_token_ttl_s"]
    redis_bytes = {
        "browser sessions": live_sessions * (mean("session") + a["index_entry_bytes"]),
        "login interactions": live_interactions * mean("interaction"),
        "access tokens": live_tokens * (mean("at") + 2 * a["index_entry_bytes"]),
    }
    database = facts.get("database_per_login", {}).get("tables", {})

    def bytes_per_row(table: str) -> float:
        row = database.get(table, {})
        return row["bytes_per_login"] / row["rows_per_login"] if row.get("rows_per_login") else 0.0

    audit_rows_per_login = float(database.get("audit_events", {}).get("rows_per_login", 0.0))
    token_rows_per_day = r["average_day_logins"] * (1 + a["refreshes_per_login"])
    audit_rows_per_day = r["average_day_logins"] * audit_rows_per_login
    per_day_ops = {name: r["average_day_logins"] * (rate / r["logins_s"]) for name, rate in mix.items()}
    wal_per_day = sum(n * ops[name].get("pg_wal_bytes", 0.0) for name, n in per_day_ops.items())
    return {
        "rates": r, "ops": ops, "hash_ms": hash_ms,
        "idp_cores": idp_cpu / a["cpu_utilisation"], "idp_busy_cores": idp_cpu,
        "hash_cores": r["logins_s"] * hash_ms / 1000,
        "idp_nodes": math.ceil(idp_cpu / a["cpu_utilisation"] / a["node_cores"]),
        "redis_ops_s": total("redis_commands"), "redis_cpu_cores": total("redis_cpu_ms") / 1000,
        "redis_bytes": redis_bytes, "redis_total_bytes": sum(redis_bytes.values()),
        "pg_commits_s": total("pg_commits"), "pg_rows_written_s": total("pg_rows_inserted") + total("pg_rows_updated"),
        "pg_wal_bytes_s": total("pg_wal_bytes"), "pg_wal_syncs_s": total("pg_wal_syncs"),
        "pg_cpu_cores": total("postgres_cpu_ms") / 1000,
        "audit_rows_per_day": audit_rows_per_day, "audit_bytes_per_day": audit_rows_per_day * bytes_per_row("audit_events"),
        "audit_rows_retained": audit_rows_per_day * a["audit_retention_days"],
        "audit_bytes_retained": audit_rows_per_day * a["audit_retention_days"] * bytes_per_row("audit_events"),
        "token_rows_per_day": token_rows_per_day,
        "token_bytes_per_day": token_rows_per_day * bytes_per_row("oidc_refresh_tokens"),
        "token_rows_retained": token_rows_per_day * a["refresh_family_days"],
        "token_bytes_retained": token_rows_per_day * a["refresh_family_days"] * bytes_per_row("oidc_refresh_tokens"),
        "wal_bytes_per_day": wal_per_day,
    }


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}".replace(",", " ")


def _bytes(value: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


def markdown(data: dict[str, Any], a: dict[str, float] = ASSUMPTIONS) -> str:
    """The sizing tables (the generated part of docs/CAPACITY.md)."""
    s = size(data, a)
    r = s["rates"]
    started = data.get("facts", {}).get("started", "?")
    lines = [f"Generated by `python -m bench.capacity` from `make bench` run {started} (1-worker rows, server on a "
             "core of its own).", "",
             "**Load at the sizing point** (the busiest minute of the busiest hour of the busiest day):", "",
             "| quantity | value |", "| --- | --- |",
             f"| logins on the peak day | {_n(r['peak_day_logins'])} |",
             f"| logins/s, peak-hour mean | {_n(r['peak_hour_logins_s'], 1)} |",
             f"| logins/s, busiest minute | {_n(r['logins_s'], 1)} |",
             *[f"| {name}/s | {_n(r[name], 1)} |" for name in s["ops"]], "",
             "**Per operation** (measured):", "",
             "| operation | IdP CPU ms | Redis cmds | Redis CPU ms | PG commits | PG rows written | WAL bytes | PG CPU ms |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, op in s["ops"].items():
        written = op.get("pg_rows_inserted", 0) + op.get("pg_rows_updated", 0)
        lines.append(f"| {name} | {op['cpu_ms']:.2f} | {op.get('redis_commands', 0):.1f} | "
                     f"{op.get('redis_cpu_ms', 0):.2f} | {op.get('pg_commits', 0):.2f} | {written:.2f} | "
                     f"{_n(op.get('pg_wal_bytes', 0))} | {op.get('postgres_cpu_ms', 0):.2f} |")
    lines += ["", "**Resources at the sizing point:**", "",
              "| resource | need | of which | one unit | units |", "| --- | --- | --- | --- | --- |",
              f"| IdP (gunicorn) CPU | {s['idp_busy_cores']:.1f} busy cores -> {s['idp_cores']:.1f} cores at "
              f"{a['cpu_utilisation']:.0%} | argon2id {s['hash_cores']:.1f} cores | {a['node_cores']:.0f}-core node | "
              f"{s['idp_nodes']} nodes |",
              f"| Redis commands | {_n(s['redis_ops_s'])}/s | Redis CPU {s['redis_cpu_cores']:.2f} cores (measured) | "
              f"~{_n(a['redis_ops_per_core'])}/s per core | "
              f"{math.ceil(s['redis_ops_s'] / a['redis_ops_per_core'])} shard(s) |",
              f"| Redis memory | {_bytes(s['redis_total_bytes'])} | "
              + ", ".join(f"{k} {_bytes(v)}" for k, v in s["redis_bytes"].items()) + " | - | - |",
              f"| PostgreSQL commits | {_n(s['pg_commits_s'])}/s | WAL syncs {_n(s['pg_wal_syncs_s'])}/s | - | - |",
              f"| PostgreSQL writes | {_n(s['pg_rows_written_s'])} rows/s, WAL {_bytes(s['pg_wal_bytes_s'])}/s | "
              f"PG CPU {s['pg_cpu_cores']:.1f} cores (measured) | - | - |",
              "", "**PostgreSQL per ordinary day and retained** (average day, "
              f"{_n(r['average_day_logins'])} logins):", "",
              "| table | rows/day | bytes/day | retention | rows kept | bytes kept |",
              "| --- | --- | --- | --- | --- | --- |",
              f"| audit_events | {_n(s['audit_rows_per_day'])} | {_bytes(s['audit_bytes_per_day'])} | "
              f"{a['audit_retention_days']:.0f} days | {_n(s['audit_rows_retained'])} | "
              f"{_bytes(s['audit_bytes_retained'])} |",
              f"| oidc_refresh_tokens | {_n(s['token_rows_per_day'])} | {_bytes(s['token_bytes_per_day'])} | "
              f"{a['refresh_family_days']:.0f} days (family life) | {_n(s['token_rows_retained'])} | "
              f"{_bytes(s['token_bytes_retained'])} |",
              f"| WAL | - | {_bytes(s['wal_bytes_per_day'])} | archived with the backups | - | - |", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the tables, or rewrite them in docs/CAPACITY.md."""
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument("report", nargs="?", type=Path, default=ROOT / "bench/results/report.json")
    parser.add_argument("--write", type=Path, help="the document whose generated part is replaced")
    args = parser.parse_args(argv)
    text = markdown(json.loads(args.report.read_text()))
    if args.write is None:
        print(text)
        return 0
    document = args.write.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(document):
        raise SystemExit(f"{args.write} has no {BEGIN} ... {END} section")
    args.write.write_text(pattern.sub(lambda _m: f"{BEGIN}\n{text}\n{END}", document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
