"""``make bench``: start everything on 127.0.0.1, run the workloads, write the reports.

Order: seed -> IdP with 1 worker (scaling subset) -> IdP with 2 workers (every workload, database and
Redis footprints) -> pure argon2id rate -> node oidc-provider peer -> in-process profiles ->
``bench/results/report.md`` and ``report.json``. Every phase is bounded by ``--duration`` and
``--max-count``; services are stopped, the database dropped and the Redis keys deleted at the end.

``--smoke`` is the tiny mode the test suite runs (a few seconds, one worker, no peer, no profile).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bench import flows, infra, measure, report
from bench.flows import CodePool, IdpJourney, Target, VirtualUser
from bench.load import Result, Timer, run_closed_loop
from bench.seed import Seeded, make_app, seed

ALL_WORKLOADS = ("login", "login_trusted", "refresh", "code", "userinfo", "jwks", "discovery")
SCALING = ("login", "refresh", "code")
PEER_WORKLOADS = ("refresh", "code", "userinfo", "jwks", "discovery")
# Settings that differ from the defaults, and why (shown in the report).
BENCH_SETTINGS = {
    "email_code_quota": (1_000_000, "each virtual user logs in many times an hour; the quota check still runs"),
    "authorization_code_ttl": (600, "codes made in the SSO phase are exchanged in the next phase"),
}
log = logging.getLogger("bench")


@dataclass
class Options:
    """Command-line options."""

    duration: float = 15.0
    warmup: float = 2.0
    users: int = 20
    max_count: int = 200_000
    workloads: tuple[str, ...] = ALL_WORKLOADS
    workers: tuple[int, ...] = (1, 2)
    peer: bool = True
    profile: bool = True
    hash_seconds: float = 5.0
    out: Path = infra.ROOT / "bench/results"
    smoke: bool = False


@dataclass
class Run:
    """Everything measured, for the report."""

    options: Options
    results: list[Result] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, result: Result, **extra: Any) -> Result:
        """Keep a result (and print one line)."""
        result.extra.update(extra)
        self.results.append(result)
        print(f"  {result.target:<14} {result.name:<22} {result.per_s:9.1f}/s  p95 {result.latency['p95_ms']:8.1f} ms"
              f"  errors {result.errors}" + (f"  ({result.first_error})" if result.first_error else ""), flush=True)
        return result


def parse(argv: list[str] | None) -> Options:
    """Options from the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured per workload")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds run before measuring")
    parser.add_argument("--users", type=int, default=20, help="concurrent virtual users (closed loop)")
    parser.add_argument("--max-count", type=int, default=200_000, help="upper bound of operations per workload")
    parser.add_argument("--workloads", default=",".join(ALL_WORKLOADS), help="comma-separated subset")
    parser.add_argument("--workers", default="1,2", help="gunicorn worker counts to run (scaling)")
    parser.add_argument("--no-peer", action="store_true", help="skip node oidc-provider")
    parser.add_argument("--no-profile", action="store_true", help="skip the pyinstrument profiles")
    parser.add_argument("--hash-seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=infra.ROOT / "bench/results")
    parser.add_argument("--smoke", action="store_true", help="tiny mode for the test suite")
    args = parser.parse_args(argv)
    workloads = tuple(w for w in args.workloads.split(",") if w)
    unknown = set(workloads) - set(ALL_WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    options = Options(duration=args.duration, warmup=args.warmup, users=args.users, max_count=args.max_count,
                      workloads=workloads, workers=tuple(sorted({int(w) for w in args.workers.split(",")})),
                      peer=not args.no_peer, profile=not args.no_profile, hash_seconds=args.hash_seconds,
                      out=args.out, smoke=args.smoke)
    if args.smoke:
        options.duration, options.warmup, options.users, options.workers = 1.0, 0.2, 2, (1,)
        options.workloads, options.peer, options.profile, options.hash_seconds = ("refresh", "discovery"), False, False, 0.5
    return options


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    options = parse(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    run = Run(options)
    run.facts["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "node": _node_version(),
                            "platform": platform.platform()}
    run.facts["started"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    with infra.postgres_database() as database_url, infra.redis_prefix() as prefix:
        sink = infra.SmtpSink().start()
        try:
            _run_idp(run, database_url, prefix, sink)
        finally:
            sink.stop()
    _run_hash_rate(run)
    if options.peer:
        _run_peer(run)
    markdown, data = report.build(run.results, run.facts, options_dict(options))
    (options.out / "report.json").write_text(json.dumps(data, indent=2, ensure_ascii=False))
    (options.out / "report.md").write_text(markdown)
    print(f"reports: {options.out / 'report.md'} and report.json")
    return 0


def options_dict(options: Options) -> dict[str, Any]:
    """The options as JSON."""
    return {"duration_s": options.duration, "warmup_s": options.warmup, "users": options.users,
            "max_count": options.max_count, "workloads": list(options.workloads), "workers": list(options.workers),
            "peer": options.peer, "profile": options.profile, "smoke": options.smoke,
            "settings_changed": {k: {"value": v, "why": why} for k, (v, why) in BENCH_SETTINGS.items()}}


def _node_version() -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True,  # noqa: S607 - node from PATH
                              timeout=10).stdout.strip()
    except OSError:
        return "absent"


# --- the IdP -----------------------------------------------------------------------------------
def _settings(port: int, database_url: str, prefix: str, sink: infra.SmtpSink, secret_key: str) -> dict[str, Any]:
    return {"env": "development", "issuer": f"http://127.0.0.1:{port}", "secret_key": secret_key,
            "database_url": database_url, "redis_url": infra.REDIS_URL, "redis_prefix": prefix,
            "smtp_host": sink.host, "smtp_port": sink.port, "log_level": "INFO",
            **{k: v for k, (v, _why) in BENCH_SETTINGS.items()}}


def _quiet_app_logs(path: Path) -> None:
    """The in-process app logs like the servers do (same cost), into a file instead of the console."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_idp", False) and isinstance(handler, logging.StreamHandler):
            handler.setStream(open(path, "a"))  # noqa: SIM115 - lives as long as the process


def _run_idp(run: Run, database_url: str, prefix: str, sink: infra.SmtpSink) -> None:
    options = run.options
    port, secret_key = infra.free_port(), secrets.token_urlsafe(32)
    settings = _settings(port, database_url, prefix, sink, secret_key)
    app = make_app(settings)
    _quiet_app_logs(options.out / "inprocess.log")
    started = time.perf_counter()
    seeded = seed(app, options.users)
    run.facts["seed_s"] = round(time.perf_counter() - started, 2)
    from idp.extensions import settings as current_settings

    with app.app_context():
        s = current_settings()
        run.facts["argon2"] = {"time_cost": s.argon2_time_cost, "memory_kib": s.argon2_memory_cost,
                               "parallelism": s.argon2_parallelism}
    env = infra.idp_environment(port=port, database_url=database_url, prefix=prefix, sink=sink, secret_key=secret_key,
                                overrides={f"IDP_{k.upper()}": str(v) for k, (v, _w) in BENCH_SETTINGS.items()})
    primed = False
    for workers in options.workers:
        server = infra.IdpServer(env, port, workers, options.out / "gunicorn.log").start()
        try:
            target = Target("idp", server.url, seeded.client_id, seeded.client_secret)
            if not primed:
                _prime(run, target, sink, seeded.users)
                primed = True
            last = workers == max(options.workers)
            selected = [w for w in options.workloads if last or w in SCALING]
            _idp_workloads(run, app, target, sink, seeded, server, workers, selected, prefix=prefix,
                           measure_storage=last)
        finally:
            server.stop()
    if options.profile:
        _profiles(run, app, seeded, sink)


def _prime(run: Run, target: Target, sink: infra.SmtpSink, users: list[VirtualUser]) -> None:
    """One login per user, ticking "J'utilise mon ordinateur personnel": trusted cookie, session, tokens."""
    journey = IdpJourney(target, sink)
    started = time.perf_counter()
    with ThreadPoolExecutor(min(len(users), 8)) as pool:
        list(pool.map(lambda u: journey.login(u, Timer(), tick_trusted=True), users))
    missing = [u.index for u in users if not (u.trusted_cookie and u.session_cookie and u.refresh_token)]
    if missing:
        raise RuntimeError(f"priming logins left users without cookies or tokens: {missing}")
    run.facts["prime_s"] = round(time.perf_counter() - started, 2)


def _idp_workloads(run: Run, app: Any, target: Target, sink: infra.SmtpSink, seeded: Seeded, server: infra.IdpServer,
                   workers: int, selected: list[str], *, prefix: str, measure_storage: bool) -> None:
    users = seeded.users
    journey = IdpJourney(target, sink)
    label = f"idp {workers}w"
    go = partial(_closed, run, label, users, server.cpu_seconds)
    print(f"IdP, {workers} gunicorn worker(s), {len(users)} users:", flush=True)
    engine = _engine(app) if measure_storage else None
    if "login" in selected:
        before = measure.table_snapshot(engine) if engine is not None else None
        result = go("login (e-mail code)", lambda u, t: journey.login(u, t), workers=workers)
        if before is not None and engine is not None and result.completed:
            finished = int(result.extra.get("finished_in_all", result.completed))
            run.facts["database_per_login"] = measure.per_login(before, measure.table_snapshot(engine), finished)
    if "login_trusted" in selected:
        go("login (trusted browser)", lambda u, t: journey.login(u, t, use_trusted=True), workers=workers)
    if "refresh" in selected:
        go("refresh grant", partial(flows.refresh, target), workers=workers)
    if "code" in selected:
        pool = CodePool()
        go("authorize (SSO)", partial(flows.authorize_with_session, target, pool), workers=workers)
        go("code exchange", partial(flows.exchange_code, target, pool), workers=workers, warmup=0.0)
    for name in ("userinfo", "jwks", "discovery"):
        if name in selected:
            go(name, partial(getattr(flows, name), target), workers=workers)
    if measure_storage:
        _redis_footprint(run, target, prefix)
    if engine is not None:
        engine.dispose()


def _closed(run: Run, target: str, users: list[VirtualUser], cpu: Callable[[], float], name: str,
            operation: Callable[[Any, Timer], None], *, workers: int = 1, warmup: float | None = None) -> Result:
    options = run.options
    result = run_closed_loop(name, target, users, operation, duration=options.duration, max_count=options.max_count,
                             cpu_probe=cpu, warmup=options.warmup if warmup is None else warmup)
    return run.add(result, workers=workers)


def _engine(app: Any) -> Any:
    from sqlalchemy import create_engine

    return create_engine(app.config["SQLALCHEMY_DATABASE_URI"])


def _redis_footprint(run: Run, target: Target, prefix: str) -> None:
    """Redis memory by key family, with a few fresh interactions (finished ones are consumed)."""
    import redis
    import requests

    for _ in range(20):
        _verifier, challenge = flows.pkce()
        requests.get(target.base_url + "/authorize", params=flows.authorization_params(target, challenge),
                     allow_redirects=False, timeout=30)
    client = redis.Redis.from_url(infra.REDIS_URL)
    try:
        run.facts["redis"] = measure.redis_footprint(client, prefix)
    finally:
        client.close()


# --- pure argon2id -----------------------------------------------------------------------------
def _run_hash_rate(run: Run) -> None:
    argon = run.facts.get("argon2", {"time_cost": 2, "memory_kib": 19 * 1024, "parallelism": 1})
    cores = os.cpu_count() or 1
    print("argon2id alone:", flush=True)
    rates = {}
    for processes in sorted({1, cores}):
        rates[processes] = measure.argon2_rate(time_cost=argon["time_cost"], memory_cost=argon["memory_kib"],
                                               parallelism=argon["parallelism"], processes=processes,
                                               seconds=run.options.hash_seconds)
        print(f"  {processes} process(es): {rates[processes]['per_s']}/s", flush=True)
    run.facts["argon2_rate"] = {str(k): v for k, v in rates.items()}


# --- the peer ----------------------------------------------------------------------------------
def _run_peer(run: Run) -> None:
    options = run.options
    peer = infra.PeerServer(infra.free_port(), options.out / "peer.log").start()
    try:
        target = Target("oidc-provider", peer.url, peer.client_id, peer.client_secret, userinfo_path="/me")
        users = [VirtualUser(index=i) for i in range(options.users)]
        minted = peer.mint(refresh=len(users))
        for user, token in zip(users, minted["refresh_tokens"], strict=True):
            user.refresh_token = token
        print(f"node oidc-provider (1 process), {len(users)} users:", flush=True)
        go = partial(_closed, run, "oidc-provider", users, peer.cpu_seconds)
        if "refresh" in options.workloads:
            go("refresh grant", partial(flows.refresh, target))
        if "code" in options.workloads:
            pool = CodePool()
            codes = peer.mint(codes=min(options.max_count, int((options.duration + 1) * 2500)))
            for code in codes["codes"]:
                pool.add(code, codes["code_verifier"])
            go("code exchange", partial(flows.exchange_code, target, pool), warmup=0.0)
        if not any(u.access_token for u in users):
            flows_refresh_all(target, users)
        for name in ("userinfo", "jwks", "discovery"):
            if name in options.workloads:
                go(name, partial(getattr(flows, name), target))
    finally:
        peer.stop()


def flows_refresh_all(target: Target, users: list[VirtualUser]) -> None:
    """One refresh per user (gives each an access token)."""
    for user in users:
        flows.refresh(target, user, Timer())


# --- profiles ----------------------------------------------------------------------------------
def _profiles(run: Run, app: Any, seeded: Seeded, sink: infra.SmtpSink) -> None:
    """pyinstrument on the Flask app in this process (no HTTP server): where a request's time goes."""
    from bench import inprocess

    print("profiles (in-process, pyinstrument):", flush=True)
    found = inprocess.profiles(app, seeded, sink, count=30 if not run.options.smoke else 3)
    for item in found:
        (run.options.out / f"profile-{item['slug']}.txt").write_text(item.pop("text"))
        print(f"  {item['name']}: {item['ms_per_op']} ms per operation", flush=True)
    run.facts["profiles"] = found


if __name__ == "__main__":
    sys.exit(main())
