"""Measurements that are not load: the pure argon2id rate, Redis memory per record, database
rows and bytes per login, the stores' work counters (Redis commands, PostgreSQL commits, rows and
WAL), and in-process profiles (pyinstrument) of the hot requests."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

# --- argon2id ----------------------------------------------------------------------------------


def _verify_loop(args: tuple[int, int, int, float, list[int]]) -> tuple[int, float]:
    from argon2 import PasswordHasher

    time_cost, memory_cost, parallelism, seconds, cores = args
    if cores:
        os.sched_setaffinity(0, set(cores))
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
    stored = hasher.hash("Banc-Essai-Tartine-42")
    done, deadline = 0, time.perf_counter() + seconds
    cpu = time.process_time()
    while time.perf_counter() < deadline:
        hasher.verify(stored, "Banc-Essai-Tartine-42")
        done += 1
    return done, time.process_time() - cpu


def argon2_rate(*, time_cost: int, memory_cost: int, parallelism: int, processes: int, seconds: float,
                cores: list[int] | None = None) -> dict[str, Any]:
    """Verifications per second of ``processes`` processes hashing with the IdP's parameters (a login
    verifies, which costs one hash), and the CPU one verification takes (``cpu_ms_per_hash``: process
    CPU time, so a busy machine slows the rate but not this figure). Process ``i`` runs on
    ``cores[i % len(cores)]`` when cores are given."""
    def args(index: int, length: float) -> tuple[int, int, int, float, list[int]]:
        pinned = [cores[index % len(cores)]] if cores else []
        return (time_cost, memory_cost, parallelism, length, pinned)

    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(_verify_loop, [args(i, 0.3) for i in range(processes)])  # warm the processes
        started = time.perf_counter()
        counts = pool.map(_verify_loop, [args(i, seconds) for i in range(processes)])
        elapsed = time.perf_counter() - started
    total = sum(done for done, _cpu in counts)
    cpu = sum(used for _done, used in counts)
    return {"processes": processes, "time_cost": time_cost, "memory_kib": memory_cost, "parallelism": parallelism,
            "cores": cores or [], "hashes": total, "seconds": round(elapsed, 2), "per_s": round(total / seconds, 2),
            "ms_per_hash_per_core": round(1000 * seconds * processes / total, 2) if total else 0.0,
            "cpu_ms_per_hash": round(1000 * cpu / total, 3) if total else 0.0}


# --- Redis ---------------------------------------------------------------------------------------
def redis_footprint(client: Any, prefix: str, sample: int = 300) -> dict[str, dict[str, float]]:
    """Key families under ``prefix`` (first segment after it): count and mean ``MEMORY USAGE`` bytes."""
    sizes: dict[str, list[int]] = defaultdict(list)
    counts: Counter[str] = Counter()
    for key in client.scan_iter(f"{prefix}*", count=1000):
        name = key.decode() if isinstance(key, bytes) else key
        family = name[len(prefix):].split(":", 1)[0]
        counts[family] += 1
        if len(sizes[family]) < sample:
            usage = client.memory_usage(key, samples=0)
            if usage is not None:
                sizes[family].append(int(usage))
    return {family: {"keys": counts[family], "mean_bytes": round(sum(v) / len(v), 1) if v else 0.0}
            for family, v in sorted(sizes.items())}


# --- PostgreSQL ----------------------------------------------------------------------------------
def table_snapshot(engine: Any) -> dict[str, dict[str, int]]:
    """Rows and total bytes (table + indexes + TOAST) of every table of the public schema."""
    from sqlalchemy import text

    result: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        names = [r[0] for r in conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))]
        for name in names:
            # The name comes from pg_tables, not from input; identifiers cannot be bound parameters.
            rows = conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()  # noqa: S608
            size = conn.execute(text("SELECT pg_total_relation_size(:t)"), {"t": f'public."{name}"'}).scalar_one()
            result[name] = {"rows": int(rows), "bytes": int(size)}
    return result


def per_login(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], logins: int) -> dict[str, Any]:
    """Rows and bytes added per login, by table (tables that did not change are left out)."""
    tables: dict[str, dict[str, float]] = {}
    for name, now in after.items():
        was = before.get(name, {"rows": 0, "bytes": 0})
        rows, size = now["rows"] - was["rows"], now["bytes"] - was["bytes"]
        if rows or size:
            tables[name] = {"rows_per_login": round(rows / logins, 2), "bytes_per_login": round(size / logins, 1)}
    return {"logins": logins, "tables": tables,
            "rows_per_login": round(sum(t["rows_per_login"] for t in tables.values()), 2),
            "bytes_per_login": round(sum(t["bytes_per_login"] for t in tables.values()), 1)}


# --- the stores' work counters --------------------------------------------------------------------
class StoreCounters:
    """Cumulative counters of Redis (commands) and PostgreSQL (commits, rows written and read, WAL bytes,
    WAL syncs, blocks read from disk) and the stores' CPU when they are the run's own processes.

    :meth:`read` is called at the start and the end of each measured window; the difference divided
    by the operations gives what one operation costs the stores (``docs/CAPACITY.md`` sizes from it).
    PostgreSQL's statistics are flushed by each backend about once a second: over a window of many
    seconds the error is small."""

    def __init__(self, redis_url: str, database_url: str,
                 cpu: dict[str, Callable[[], float]] | None = None) -> None:
        import redis
        from sqlalchemy import create_engine

        self._redis = redis.Redis.from_url(redis_url)
        self._engine = create_engine(database_url, pool_size=1, max_overflow=0)
        self._cpu = cpu or {}

    def read(self) -> dict[str, float]:
        """The counters now."""
        from sqlalchemy import text

        found: dict[str, float] = {"redis_commands": float(self._redis.info("stats")["total_commands_processed"])}
        with self._engine.connect() as conn:
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            row = conn.execute(text(
                "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, tup_returned, blks_read "
                "FROM pg_stat_database WHERE datname = current_database()")).one()
            wal = conn.execute(text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0'), "
                                    "(SELECT wal_sync FROM pg_stat_wal)")).one()
        found.update({"pg_commits": float(row[0]), "pg_rollbacks": float(row[1]), "pg_rows_inserted": float(row[2]),
                      "pg_rows_updated": float(row[3]), "pg_rows_deleted": float(row[4]),
                      "pg_rows_read": float(row[5]), "pg_blocks_read": float(row[6]),
                      "pg_wal_bytes": float(wal[0]), "pg_wal_syncs": float(wal[1] or 0)})
        for name, probe in self._cpu.items():
            found[f"{name}_cpu_s"] = probe()
        return found

    def close(self) -> None:
        """Release the connections."""
        self._redis.close()
        self._engine.dispose()


def per_operation(before: dict[str, float], after: dict[str, float], operations: int) -> dict[str, float]:
    """What one operation added to each counter (``*_cpu_s`` become ``*_cpu_ms``)."""
    if not operations:
        return {}
    found: dict[str, float] = {}
    for key, value in after.items():
        delta = (value - before.get(key, 0.0)) / operations
        if key.endswith("_cpu_s"):
            found[key[:-2] + "_ms"] = round(1000 * delta, 3)
        else:
            found[key] = round(delta, 3)
    return found


# --- profiles ------------------------------------------------------------------------------------
AREAS = [("argon2", "argon2id (argon2-cffi)"), ("cryptography", "RSA/AES (cryptography)"),
         ("joserfc", "JOSE signing (joserfc, RSA in C)"), ("authlib", "Authlib"), ("sqlalchemy", "SQLAlchemy"),
         ("psycopg", "PostgreSQL (psycopg, incl. round trips)"), ("redis", "Redis (client, incl. round trips)"),
         ("jinja2", "templates (Jinja2)"), ("werkzeug/test", "test client"), ("flask_wtf", "CSRF (Flask-WTF)"),
         ("wtforms", "CSRF (Flask-WTF)"), ("werkzeug", "Flask/Werkzeug"), ("flask", "Flask/Werkzeug"),
         ("smtplib", "SMTP (smtplib)"), ("flask_mail", "SMTP (smtplib)"), ("email", "SMTP (smtplib)"),
         ("/idp/", "IdP code"), ("logging", "logging")]


OTHER = "other (stdlib, bench driver)"


def _area(path: str) -> str:
    for needle, label in AREAS:
        if f"/{needle}/" in path or path.endswith(f"/{needle}.py") or (needle.startswith("/") and needle in path):
            return label
    return OTHER


def profile(name: str, operation: Callable[[], None], *, count: int) -> dict[str, Any]:
    """Run ``operation`` ``count`` times under pyinstrument; self time by library and the text tree."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    started = time.perf_counter()
    profiler.start()
    for _ in range(count):
        operation()
    session = profiler.stop()
    wall = time.perf_counter() - started
    by_area: Counter[str] = Counter()
    # Built-in (C) frames have no file: their time goes to the area of the Python code that called them.
    stack: list[tuple[Any, str]] = [(session.root_frame(), OTHER)]
    while stack:
        frame, inherited = stack.pop()
        if frame is None:
            continue
        # Standard-library frames (sockets, json, ssl) likewise count for the library that called them.
        own = _area(frame.file_path or "")
        area = inherited if own == OTHER else own
        stack.extend((child, area) for child in frame.children)
        if not frame.is_synthetic:  # synthetic "self time" children are already in total_self_time
            by_area[area] += frame.total_self_time
    total = sum(by_area.values()) or 1.0
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    return {"name": name, "count": count, "ms_per_op": round(1000 * wall / count, 2),
            "areas": [{"area": a, "share": round(100 * s / total, 1), "ms_per_op": round(1000 * s / count, 3)}
                      for a, s in by_area.most_common()],
            "text": text}
