"""``make bench``: start everything on 127.0.0.1, run the workloads, write the reports.

Order: private PostgreSQL and redis-server (pinned with the load generator to the first core(s)) ->
seed -> IdP with 1 worker on the last core (every workload, database and Redis footprints, the
low-concurrency latency rows) -> IdP with 1 worker at Keycloak's argon2id parameters (logins) ->
IdP with 2 workers on every core (scaling subset) -> pure argon2id rate (the server's core) -> node
oidc-provider on the server's core, its store in the same Redis -> in-process profiles ->
``bench/results/report.md`` and ``report.json`` (the ratios of issue 15 under stable keys). Every phase
is bounded by ``--duration`` and ``--max-count``; services are stopped, the database dropped and the
Redis keys deleted at the end.

``--smoke`` is the tiny mode the test suite runs (a few seconds, one worker, no peer, no profile,
the machine's PostgreSQL and Redis).
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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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
LATENCY = ("login", "refresh", "code")
# Keycloak's default password policy: argon2id, 5 iterations, 7 MiB, 1 lane (its sizing guide's logins/s).
KEYCLOAK_ARGON2 = {"time_cost": 5, "memory_kib": 7 * 1024, "parallelism": 1}
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
    keycloak_argon2: bool = True
    latency_users: int = 2
    hash_seconds: float = 5.0
    out: Path = infra.ROOT / "bench/results"
    shared_services: bool = False
    pin: bool = True
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
    parser.add_argument("--no-keycloak-argon2", action="store_true",
                        help="skip the login rows at Keycloak's argon2id parameters (t=5, 7 MiB)")
    parser.add_argument("--latency-users", type=int, default=2,
                        help="concurrency of the latency rows (p95 at a load the server sustains; 0: skip)")
    parser.add_argument("--hash-seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=infra.ROOT / "bench/results")
    parser.add_argument("--shared-services", action="store_true",
                        help="use the machine's PostgreSQL and Redis (BENCH_POSTGRES_URL, BENCH_REDIS_URL) "
                             "instead of private, pinned ones")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores (taskset)")
    parser.add_argument("--smoke", action="store_true", help="tiny mode for the test suite")
    args = parser.parse_args(argv)
    workloads = tuple(w for w in args.workloads.split(",") if w)
    unknown = set(workloads) - set(ALL_WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    options = Options(duration=args.duration, warmup=args.warmup, users=args.users, max_count=args.max_count,
                      workloads=workloads, workers=tuple(sorted({int(w) for w in args.workers.split(",")})),
                      peer=not args.no_peer, profile=not args.no_profile, keycloak_argon2=not args.no_keycloak_argon2,
                      latency_users=args.latency_users, hash_seconds=args.hash_seconds, out=args.out,
                      shared_services=args.shared_services or not infra.PrivatePostgres.available(),
                      pin=not args.no_pin, smoke=args.smoke)
    if args.smoke:
        options.duration, options.warmup, options.users, options.workers = 1.0, 0.2, 2, (1,)
        options.workloads, options.peer, options.profile, options.hash_seconds = ("refresh", "discovery"), False, False, 0.5
        options.keycloak_argon2, options.latency_users, options.shared_services = False, 0, True
    return options


@dataclass
class Services:
    """Where the stores are for this run, and the cores."""

    database_url: str
    redis_url: str
    prefix: str
    cores: infra.Cores
    counters: Any = None  # measure.StoreCounters


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    options = parse(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    run = Run(options)
    cores = infra.Cores(enabled=options.pin)
    cores.pin_self()
    run.facts["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "node": _node_version(),
                            "platform": platform.platform()}
    run.facts["cores"] = {**cores.describe(), "private_services": not options.shared_services}
    run.facts["started"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    with _stores(options, cores) as (admin_url, redis_url, cpu), \
            infra.postgres_database(admin_url) as database_url, infra.redis_prefix(redis_url) as prefix:
        services = Services(database_url, redis_url, prefix, cores, measure.StoreCounters(redis_url, database_url, cpu))
        sink = infra.SmtpSink().start()
        try:
            _run_idp(run, services, sink)
        finally:
            sink.stop()
            services.counters.close()
        _run_hash_rate(run, cores)
        if options.peer:
            _run_peer(run, services)
        if options.peer and "jwks" in options.workloads:
            _run_floor(run, services)
    markdown, data = report.build(run.results, run.facts, options_dict(options))
    (options.out / "report.json").write_text(json.dumps(data, indent=2, ensure_ascii=False))
    (options.out / "report.md").write_text(markdown)
    print(f"reports: {options.out / 'report.md'} and report.json")
    return 0


@contextmanager
def _stores(options: Options, cores: infra.Cores) -> Iterator[tuple[str, str, dict[str, Callable[[], float]]]]:
    """(PostgreSQL admin URL, Redis URL, CPU probes of the stores): private pinned processes, or the
    machine's services (whose CPU is not counted)."""
    if options.shared_services:
        yield infra.POSTGRES_ADMIN_URL, infra.REDIS_URL, {}
        return
    with infra.private_services(cores) as (postgres, redis_server):
        yield postgres.admin_url, redis_server.url, {"postgres": postgres.cpu_seconds, "redis": redis_server.cpu_seconds}


def options_dict(options: Options) -> dict[str, Any]:
    """The options as JSON."""
    return {"duration_s": options.duration, "warmup_s": options.warmup, "users": options.users,
            "max_count": options.max_count, "workloads": list(options.workloads), "workers": list(options.workers),
            "peer": options.peer, "profile": options.profile, "smoke": options.smoke,
            "keycloak_argon2": options.keycloak_argon2, "latency_users": options.latency_users,
            "shared_services": options.shared_services, "pin": options.pin,
            "settings_changed": {k: {"value": v, "why": why} for k, (v, why) in BENCH_SETTINGS.items()}}


def _node_version() -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True,  # noqa: S607 - node from PATH
                              timeout=10).stdout.strip()
    except OSError:
        return "absent"


# --- the IdP -----------------------------------------------------------------------------------
def _settings(port: int, services: Services, sink: infra.SmtpSink, secret_key: str) -> dict[str, Any]:
    return {"env": "development", "issuer": f"http://127.0.0.1:{port}", "secret_key": secret_key,
            "database_url": services.database_url, "redis_url": services.redis_url, "redis_prefix": services.prefix,
            "smtp_host": sink.host, "smtp_port": sink.port, "log_level": "INFO",
            **{k: v for k, (v, _why) in BENCH_SETTINGS.items()}}


def _quiet_app_logs(path: Path) -> None:
    """The in-process app logs like the servers do (same cost), into a file instead of the console."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_idp", False) and isinstance(handler, logging.StreamHandler):
            handler.setStream(open(path, "a"))  # noqa: SIM115 - lives as long as the process


def _argon2_overrides(argon: dict[str, int]) -> dict[str, Any]:
    return {"argon2_time_cost": argon["time_cost"], "argon2_memory_cost": argon["memory_kib"],
            "argon2_parallelism": argon["parallelism"]}


def _run_idp(run: Run, services: Services, sink: infra.SmtpSink) -> None:
    options, cores = run.options, services.cores
    port, secret_key = infra.free_port(), secrets.token_urlsafe(32)
    settings = _settings(port, services, sink, secret_key)
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
    env = infra.idp_environment(port=port, database_url=services.database_url, redis_url=services.redis_url,
                                prefix=services.prefix, sink=sink, secret_key=secret_key,
                                overrides={f"IDP_{k.upper()}": str(v) for k, (v, _w) in BENCH_SETTINGS.items()})
    log_path = options.out / "gunicorn.log"
    primed = False
    for workers in options.workers:
        # One worker: the last core to itself. More: every core (the load generator and the stores too).
        server = infra.IdpServer(env, port, workers, log_path, cores=cores,
                                 on=cores.server if workers == 1 else cores.all).start()
        try:
            target = Target("idp", server.url, seeded.client_id, seeded.client_secret)
            if not primed:
                _prime(run, target, sink, seeded.users)
                primed = True
            first = workers == min(options.workers)
            selected = [w for w in options.workloads if first or w in SCALING]
            _idp_workloads(run, app, target, sink, seeded, server, workers, selected, services,
                           measure_storage=first)
            if first and options.latency_users:
                _latency_rows(run, target, sink, seeded, server, services)
        finally:
            server.stop()
        if workers == 1 and options.keycloak_argon2 and {"login", "login_trusted"} & set(options.workloads):
            _keycloak_rows(run, settings, env, port, sink, services, seeded)
    if options.profile:
        _profiles(run, app, seeded, sink)


def _keycloak_rows(run: Run, settings: dict[str, Any], env: dict[str, str], port: int, sink: infra.SmtpSink,
                   services: Services, seeded: Seeded) -> None:
    """The login rows again with accounts hashed at Keycloak's parameters and the IdP set to them."""
    from idp.extensions import db

    kc_app = make_app({**settings, **_argon2_overrides(KEYCLOAK_ARGON2)})
    with kc_app.app_context():
        from bench.seed import add_account

        base = 1000 + run.options.users  # NIRs distinct from the first accounts
        users = [add_account(base + i) for i in range(run.options.users)]
        db.session.remove()
    kc_env = {**env, **{f"IDP_{k.upper()}": str(v) for k, v in _argon2_overrides(KEYCLOAK_ARGON2).items()}}
    server = infra.IdpServer(kc_env, port, 1, run.options.out / "gunicorn.log", cores=services.cores,
                             on=services.cores.server).start()
    try:
        target = Target("idp", server.url, seeded.client_id, seeded.client_secret)
        _prime(run, target, sink, users, fact="prime_keycloak_s")
        journey = IdpJourney(target, sink)
        go = partial(_closed, run, KEYCLOAK_TARGET, users, server.cpu_seconds, services)
        print(f"IdP, 1 worker, argon2id t={KEYCLOAK_ARGON2['time_cost']} m={KEYCLOAK_ARGON2['memory_kib']} KiB:",
              flush=True)
        if "login" in run.options.workloads:
            _hash_nearby(run, go("login (e-mail code)", lambda u, t: journey.login(u, t)), KEYCLOAK_ARGON2,
                         services.cores)
        if "login_trusted" in run.options.workloads:
            _hash_nearby(run, go("login (trusted browser)", lambda u, t: journey.login(u, t, use_trusted=True)),
                         KEYCLOAK_ARGON2, services.cores)
    finally:
        server.stop()


def _hash_nearby(run: Run, result: Result, argon: dict[str, int], cores: infra.Cores) -> None:
    """The CPU of one verification measured right after the login rows, on the server's core with the
    server idle: the ratio's two terms then see the same background load (a busy machine slows the CPU
    of memory-bound argon2id too)."""
    rate = measure.argon2_rate(time_cost=argon["time_cost"], memory_cost=argon["memory_kib"],
                               parallelism=argon["parallelism"], processes=1,
                               seconds=max(1.0, run.options.hash_seconds / 2),
                               cores=cores.server if cores.pinned else None)
    result.extra["hash_cpu_ms"] = rate["cpu_ms_per_hash"]


KEYCLOAK_TARGET = "idp 1w kc-argon2"


def _latency_rows(run: Run, target: Target, sink: infra.SmtpSink, seeded: Seeded, server: infra.IdpServer,
                  services: Services) -> None:
    """The same workloads at a concurrency one worker sustains: p95 there is service time, not queueing."""
    options = run.options
    users = seeded.users[:options.latency_users]
    journey = IdpJourney(target, sink)
    label = f"idp 1w @{len(users)}"
    go = partial(_closed, run, label, users, server.cpu_seconds, services)
    print(f"IdP, 1 worker, {len(users)} users (latency rows):", flush=True)
    if "login" in options.workloads:
        go("login (e-mail code)", lambda u, t: journey.login(u, t))
    if "refresh" in options.workloads:
        go("refresh grant", partial(flows.refresh, target))
    if "code" in options.workloads:
        pool = CodePool()
        go("authorize (SSO)", partial(flows.authorize_with_session, target, pool))
        go("code exchange", partial(flows.exchange_code, target, pool), warmup=0.0)


def _prime(run: Run, target: Target, sink: infra.SmtpSink, users: list[VirtualUser], *,
           fact: str = "prime_s") -> None:
    """One login per user, ticking "J'utilise mon ordinateur personnel": trusted cookie, session, tokens."""
    journey = IdpJourney(target, sink)
    started = time.perf_counter()
    with ThreadPoolExecutor(min(len(users), 8)) as pool:
        list(pool.map(lambda u: journey.login(u, Timer(), tick_trusted=True), users))
    missing = [u.index for u in users if not (u.trusted_cookie and u.session_cookie and u.refresh_token)]
    if missing:
        raise RuntimeError(f"priming logins left users without cookies or tokens: {missing}")
    run.facts[fact] = round(time.perf_counter() - started, 2)


def _idp_workloads(run: Run, app: Any, target: Target, sink: infra.SmtpSink, seeded: Seeded, server: infra.IdpServer,
                   workers: int, selected: list[str], services: Services, *, measure_storage: bool) -> None:
    users = seeded.users
    journey = IdpJourney(target, sink)
    label = f"idp {workers}w"
    go = partial(_closed, run, label, users, server.cpu_seconds, services)
    print(f"IdP, {workers} gunicorn worker(s), {len(users)} users:", flush=True)
    engine = _engine(app) if measure_storage else None
    argon = run.facts["argon2"]
    if "login" in selected:
        before = measure.table_snapshot(engine) if engine is not None else None
        result = go("login (e-mail code)", lambda u, t: journey.login(u, t), workers=workers)
        if before is not None and engine is not None and result.completed:
            finished = int(result.extra.get("finished_in_all", result.completed))
            run.facts["database_per_login"] = measure.per_login(before, measure.table_snapshot(engine), finished)
        if workers == 1:
            _hash_nearby(run, result, argon, services.cores)
    if "login_trusted" in selected:
        result = go("login (trusted browser)", lambda u, t: journey.login(u, t, use_trusted=True), workers=workers)
        if workers == 1:
            _hash_nearby(run, result, argon, services.cores)
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
        _redis_footprint(run, target, services)
    if engine is not None:
        engine.dispose()


def _closed(run: Run, target: str, users: list[VirtualUser], cpu: Callable[[], float], services: Services | None,
            name: str, operation: Callable[[Any, Timer], None], *, workers: int = 1,
            warmup: float | None = None) -> Result:
    options = run.options
    counters = services.counters.read if services is not None and services.counters is not None else None
    result = run_closed_loop(name, target, users, operation, duration=options.duration, max_count=options.max_count,
                             cpu_probe=cpu, counters=counters, warmup=options.warmup if warmup is None else warmup)
    return run.add(result, workers=workers)


def _engine(app: Any) -> Any:
    from sqlalchemy import create_engine

    return create_engine(app.config["SQLALCHEMY_DATABASE_URI"])


def _redis_footprint(run: Run, target: Target, services: Services) -> None:
    """Redis memory by key family, with a few fresh interactions (finished ones are consumed)."""
    import redis
    import requests

    for _ in range(20):
        _verifier, challenge = flows.pkce()
        requests.get(target.base_url + "/authorize", params=flows.authorization_params(target, challenge),
                     allow_redirects=False, timeout=30)
    client = redis.Redis.from_url(services.redis_url)
    try:
        run.facts["redis"] = measure.redis_footprint(client, services.prefix)
    finally:
        client.close()


# --- pure argon2id -----------------------------------------------------------------------------
def _run_hash_rate(run: Run, cores: infra.Cores) -> None:
    """argon2id alone, servers stopped: one process on the server's core (the CPU of one verification,
    the denominator of the login ratios), one per core (the machine's rate), and Keycloak's parameters."""
    argon = run.facts.get("argon2", {"time_cost": 2, "memory_kib": 19 * 1024, "parallelism": 1})
    print("argon2id alone:", flush=True)
    rates: dict[str, Any] = {}
    plans = [("1", argon, 1, cores.server), (str(len(cores.all)), argon, len(cores.all), cores.all)]
    if run.options.keycloak_argon2:
        plans.append(("keycloak-1", KEYCLOAK_ARGON2, 1, cores.server))
    for key, params, processes, on in plans:
        if key in rates:
            continue
        rates[key] = measure.argon2_rate(time_cost=params["time_cost"], memory_cost=params["memory_kib"],
                                         parallelism=params["parallelism"], processes=processes,
                                         seconds=run.options.hash_seconds, cores=on if cores.pinned else None)
        print(f"  {key}: {rates[key]['per_s']}/s, {rates[key]['cpu_ms_per_hash']} ms CPU per hash", flush=True)
    run.facts["argon2_rate"] = rates


# --- the peer ----------------------------------------------------------------------------------
def _run_peer(run: Run, services: Services) -> None:
    options = run.options
    peer = infra.PeerServer(infra.free_port(), options.out / "peer.log", redis_url=services.redis_url,
                            prefix=services.prefix + "peer:", cores=services.cores).start()
    try:
        target = Target("oidc-provider", peer.url, peer.client_id, peer.client_secret, userinfo_path="/me")
        users = [VirtualUser(index=i) for i in range(options.users)]
        minted = peer.mint(refresh=len(users))
        for user, token in zip(users, minted["refresh_tokens"], strict=True):
            user.refresh_token = token
        print(f"node oidc-provider (1 process), {len(users)} users:", flush=True)
        go = partial(_closed, run, "oidc-provider", users, peer.cpu_seconds, None)
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


FLOOR_NAME = "fixed bytes (gunicorn floor)"


def _run_floor(run: Run, services: Services) -> None:
    """gunicorn with the IdP's configuration on a WSGI app that returns fixed bytes (bench/floor.py),
    1 worker on the server's core: what any endpoint costs at least."""
    port = infra.free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("IDP_")}, "IDP_LOG_LEVEL": "warning",
           "IDP_ENV": "development", "IDP_SECRET_KEY": secrets.token_urlsafe(32)}  # on_starting validates settings
    server = infra.IdpServer(env, port, 1, run.options.out / "gunicorn.log", cores=services.cores,
                             on=services.cores.server, application="bench.floor:app", health="/").start()
    try:
        target = Target("wsgi floor", server.url, "-", "-", jwks_path="/")
        users = [VirtualUser(index=i) for i in range(run.options.users)]
        print("gunicorn floor (fixed bytes), 1 worker:", flush=True)
        _closed(run, "gunicorn floor", users, server.cpu_seconds, None, FLOOR_NAME, partial(flows.jwks, target))
    finally:
        server.stop()


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
