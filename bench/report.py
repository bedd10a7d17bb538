"""The markdown and JSON reports: targets first, then each measurement with how it was made.

``report.json`` carries the ratios of issue 15 under stable keys (``ratios``: ``login_cpu_per_hash``,
``login_trusted_cpu_per_hash``, ``refresh_vs_peer_per_cpu``, ``code_vs_peer_per_cpu``,
``scaling_2w_over_1w``, ...), each with its target and whether it is met, so that runs can be compared.
"""

from __future__ import annotations

import re
from typing import Any

from bench.flows import HASHING_STEP
from bench.load import Result

P95_TARGET_MS = 20.0
RP_WORKLOADS = ("refresh grant", "authorize (SSO)", "code exchange", "userinfo", "jwks", "discovery",
                "fixed bytes (gunicorn floor)")
CPU_BOUND = ("login (e-mail code)", "refresh grant", "code exchange")
PEER = "oidc-provider"
KEYCLOAK = "idp 1w kc-argon2"
# Keycloak 26 sizing guide, per vCPU: 15 password logins/s and 120 refresh grants/s (context, not a target).
KEYCLOAK_SIZING = {"logins_per_vcpu_s": 15, "refresh_per_vcpu_s": 120}
_PLAIN = re.compile(r"^idp (\d+)w$")


def _find(results: list[Result], target: str, name: str) -> Result | None:
    return next((r for r in results if r.target == target and r.name == name), None)


def _idp_targets(results: list[Result]) -> list[str]:
    """The plain worker-count rows ("idp 1w", "idp 2w"), fewest workers first."""
    found = {r.target for r in results if _PLAIN.match(r.target)}
    return sorted(found, key=lambda t: int(_PLAIN.match(t).group(1)))  # type: ignore[union-attr]


def _latency_target(results: list[Result]) -> str | None:
    return next((r.target for r in results if r.target.startswith("idp 1w @")), None)


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows), ""]


def _cpu_ms(result: Result) -> float:
    return 1000 * result.server_cpu_s / result.completed if result.completed else 0.0


def _ms_per_op(result: Result) -> str:
    return f"{_cpu_ms(result):.2f}" if result.completed else "-"


def _ratio(key: str, value: float, target: float, at_least: bool, what: str, **more: Any) -> dict[str, Any]:
    met = value >= target if at_least else value <= target
    return {"key": key, "value": round(value, 3), "target": target, "comparison": ">=" if at_least else "<=",
            "met": met, "what": what, **more}


def _hash_cpu(facts: dict[str, Any], key: str) -> float:
    return float(facts.get("argon2_rate", {}).get(key, {}).get("cpu_ms_per_hash", 0.0))


def ratios(results: list[Result], facts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The targets of issue 15 as ratios (a key is absent when the run did not measure it)."""
    found: dict[str, dict[str, Any]] = {}
    one = "idp 1w"
    for target, hash_key, suffix in ((one, "1", ""), (KEYCLOAK, "keycloak-1", "_keycloak_argon2")):
        for name, key, limit in (("login (e-mail code)", "login_cpu_per_hash", 1.5),
                                 ("login (trusted browser)", "login_trusted_cpu_per_hash", 1.25)):
            login = _find(results, target, name)
            # The hash measured right after these rows when there is one, else the one of the end of the run.
            hash_ms = float(login.extra.get("hash_cpu_ms", 0.0)) if login else 0.0
            hash_ms = hash_ms or _hash_cpu(facts, hash_key)
            if login and login.completed and hash_ms:
                found[key + suffix] = _ratio(
                    key + suffix, _cpu_ms(login) / hash_ms, limit, False,
                    f"server CPU per {name} on {target} / CPU of one argon2id verification",
                    login_cpu_ms=round(_cpu_ms(login), 2), hash_cpu_ms=hash_ms)
    for name, key in (("refresh grant", "refresh_vs_peer_per_cpu"), ("code exchange", "code_vs_peer_per_cpu")):
        mine, peer = _find(results, one, name), _find(results, PEER, name)
        if mine and peer and peer.per_server_cpu_s:
            found[key] = _ratio(key, mine.per_server_cpu_s / peer.per_server_cpu_s, 0.5, True,
                                f"{name} per server CPU-second, IdP 1 worker / node oidc-provider (Redis adapter)",
                                idp_per_cpu_s=round(mine.per_server_cpu_s, 1),
                                peer_per_cpu_s=round(peer.per_server_cpu_s, 1))
    for name, limit in (("userinfo", 1500.0), ("discovery", 5000.0), ("jwks", 5000.0)):
        mine = _find(results, one, name)
        if mine and mine.completed:
            found[f"{name}_per_cpu"] = _ratio(f"{name}_per_cpu", mine.per_server_cpu_s, limit, True,
                                              f"{name} per server CPU-second, IdP 1 worker")
    floor = _find(results, "gunicorn floor", "fixed bytes (gunicorn floor)")
    if floor and floor.completed:
        found["gunicorn_floor_per_cpu"] = {
            "key": "gunicorn_floor_per_cpu", "value": round(floor.per_server_cpu_s, 1), "target": 5000.0,
            "comparison": ">=", "met": floor.per_server_cpu_s >= 5000.0,
            "what": "context: fixed bytes from gunicorn (the IdP's configuration, 1 worker) per server CPU-second, "
                    "the ceiling of any endpoint"}
    idp = _idp_targets(results)
    if len(idp) >= 2:
        speedups, efficiency = {}, {}
        for name in CPU_BOUND:
            first, last = _find(results, idp[0], name), _find(results, idp[-1], name)
            if first and last and first.per_s and first.per_server_cpu_s:
                speedups[name] = round(last.per_s / first.per_s, 3)
                efficiency[name] = round(last.per_server_cpu_s / first.per_server_cpu_s, 3)
        if speedups:
            found["scaling_2w_over_1w"] = _ratio(
                "scaling_2w_over_1w", min(speedups.values()), 1.8, True,
                "throughput 2 workers / 1 worker, the lowest of the CPU-bound workloads", by_workload=speedups)
            found["scaling_cpu_efficiency_2w"] = _ratio(
                "scaling_cpu_efficiency_2w", min(efficiency.values()), 0.9, True,
                "operations per server CPU-second, 2 workers / 1 worker (1.0: a second worker costs nothing "
                "per operation)", by_workload=efficiency)
    latency = _latency_target(results)
    if latency:
        worst = worst_non_hashing_p95(results, latency)
        if worst:
            found["p95_non_hashing_ms"] = _ratio(
                "p95_non_hashing_ms", worst[1], P95_TARGET_MS, False,
                f"worst p95 of the non-hashing steps at {latency.split('@')[1]} concurrent users on 1 worker",
                step=worst[0], concurrency=int(latency.split("@")[1]))
    return found


def worst_non_hashing_p95(results: list[Result], target: str) -> tuple[str, float] | None:
    """The slowest p95 among the steps that hash no password (logins' other steps and RP calls)."""
    candidates: list[tuple[str, float]] = []
    for result in results:
        if result.target != target:
            continue
        for step, stats in result.steps.items():
            if step != HASHING_STEP and not step.endswith("*") and stats["count"]:
                candidates.append((f"{result.name}: {step}", stats["p95_ms"]))
    return max(candidates, key=lambda c: c[1]) if candidates else None


def _target_rows(found: dict[str, dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for key, item in found.items():
        rows.append([f"`{key}`", item["what"], f"{item['comparison']} {item['target']:g}", f"{item['value']:g}",
                     "yes" if item["met"] else "**no**"])
    return rows


def build(results: list[Result], facts: dict[str, Any], options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(markdown, JSON document)."""
    found = ratios(results, facts)
    data = {"options": options, "facts": facts, "ratios": found, "results": [r.as_dict() for r in results]}
    lines = ["# Benchmark of the identity provider", ""]
    lines += _header(facts, options)
    lines += ["## Targets (issue 15)", "",
              "Ratios of CPU to CPU (process CPU time of the server and of the hash), so that they hold on a noisy "
              "machine; the keys are those of `report.json` (`ratios`).", ""]
    lines += _table(["key", "what", "target", "measured", "met"], _target_rows(found))
    lines += _keycloak(results)
    lines += _logins(results, facts)
    lines += _rp(results)
    lines += _stores(results)
    lines += _peer(results)
    lines += _scaling(results, facts)
    lines += _storage(facts)
    lines += _profiles(facts)
    lines += _method(results, facts, options)
    return "\n".join(lines) + "\n", data


def _keycloak(results: list[Result]) -> list[str]:
    rows = []
    for target, name, sizing in (("idp 1w", "login (e-mail code)", "logins_per_vcpu_s"),
                                 (KEYCLOAK, "login (e-mail code)", "logins_per_vcpu_s"),
                                 ("idp 1w", "login (trusted browser)", "logins_per_vcpu_s"),
                                 (KEYCLOAK, "login (trusted browser)", "logins_per_vcpu_s"),
                                 ("idp 1w", "refresh grant", "refresh_per_vcpu_s")):
        result = _find(results, target, name)
        if result and result.completed:
            rows.append([name, target, f"{result.per_server_cpu_s:.1f}", KEYCLOAK_SIZING[sizing],
                         f"{result.per_server_cpu_s / KEYCLOAK_SIZING[sizing]:.1f} x"])
    if not rows:
        return []
    return ["Against Keycloak's published sizing (per vCPU; context, not a target of this issue):", "",
            *_table(["workload", "server", "per server CPU-s", "Keycloak per vCPU", "ratio"], rows)]


def _header(facts: dict[str, Any], options: dict[str, Any]) -> list[str]:
    machine = facts.get("machine", {})
    argon = facts.get("argon2", {})
    cores = facts.get("cores", {})
    if cores.get("pinned"):
        placement = (f"Cores (`taskset`, `sched_setaffinity`): the 1-worker IdP and node oidc-provider on core(s) "
                     f"{cores.get('server')} alone; the load generator, the SMTP sink, "
                     + ("the run's own PostgreSQL and redis-server" if cores.get("private_services")
                        else "(not pinned: the machine's PostgreSQL and Redis)")
                     + f" on core(s) {cores.get('rest')}; the 2-worker IdP on every core {cores.get('cpus')}, "
                     "so it shares the generator's core (see the scaling section).")
    else:
        placement = "No pinning: the servers, the stores and the load generator share every core."
    lines = [f"Run {facts.get('started', '')}: {machine.get('cpus')} CPUs, Python {machine.get('python')}, "
             f"node {machine.get('node')}; {options['users']} concurrent virtual users (closed loop), "
             f"{options['duration_s']} s measured per workload after {options['warmup_s']} s of warm-up; "
             f"argon2id t={argon.get('time_cost')}, m={argon.get('memory_kib')} KiB, p={argon.get('parallelism')} "
             "(the production defaults). Everything on 127.0.0.1: gunicorn (config/gunicorn.conf.py, gthread, "
             "4 threads per worker), PostgreSQL, Redis, the SMTP sink and the load generator. " + placement, ""]
    if options.get("smoke"):
        lines += ["**Smoke mode**: tiny durations, numbers are meaningless.", ""]
    return lines


def _logins(results: list[Result], facts: dict[str, Any]) -> list[str]:
    lines = ["## Web logins", ""]
    rows = []
    for result in results:
        if result.name.startswith("login"):
            lat = result.latency
            hash_ms = float(result.extra.get("hash_cpu_ms", 0.0))
            rows.append([result.name, result.target, f"{result.per_s:.1f}", lat["p50_ms"], lat["p95_ms"], lat["p99_ms"],
                         _ms_per_op(result), f"{hash_ms:.2f}" if hash_ms else "-",
                         f"{_cpu_ms(result) / hash_ms:.2f}" if hash_ms and result.completed else "-", result.errors])
    if rows:
        lines += _table(["workload", "server", "logins/s", "p50 ms", "p95 ms", "p99 ms", "server CPU ms/login",
                         "hash CPU ms (nearby)", "login / hash", "errors"], rows)
    for result in results:
        if result.name.startswith("login") and result.steps:
            lines += [f"Steps of **{result.name}** on {result.target} (`*`: not a server step):", ""]
            lines += _table(["step", "p50 ms", "p95 ms", "p99 ms"],
                            [[s, v["p50_ms"], v["p95_ms"], v["p99_ms"]] for s, v in result.steps.items()])
    rates = facts.get("argon2_rate", {})
    if rates:
        lines += ["Pure argon2id (verify, `multiprocessing` pool on the same machine, servers stopped; one process "
                  "on the server's core; `CPU ms per hash`: process CPU time, the denominator of the login "
                  "ratios):", ""]
        lines += _table(["run", "parameters", "processes", "hashes/s", "wall ms per hash per core", "CPU ms per hash"],
                        [[k, f"t={v['time_cost']}, m={v['memory_kib']} KiB", v["processes"], v["per_s"],
                          v["ms_per_hash_per_core"], v.get("cpu_ms_per_hash", "-")] for k, v in rates.items()])
    return lines


def _rp(results: list[Result]) -> list[str]:
    rows = []
    for result in results:
        if result.name in RP_WORKLOADS:
            lat = result.latency
            rows.append([result.name, result.target, result.users, f"{result.per_s:.0f}", lat["p50_ms"], lat["p95_ms"],
                         lat["p99_ms"], _ms_per_op(result), f"{result.per_server_cpu_s:.0f}", result.errors])
    if not rows:
        return []
    return ["## Relying-party endpoints", "",
            "`server CPU ms/op`: CPU of the server processes (gunicorn master + workers, or node) per operation; "
            "`per CPU-s`: operations per second of server CPU, i.e. per fully busy core (PostgreSQL and Redis "
            "not included: their share is in the next table). `idp 1w @N`: the latency rows, N users.", "",
            *_table(["workload", "server", "users", "ops/s", "p50 ms", "p95 ms", "p99 ms", "server CPU ms/op",
                     "per CPU-s", "errors"], rows)]


_STORE_COLUMNS = [("redis_commands", "Redis cmds"), ("redis_cpu_ms", "Redis CPU ms"), ("pg_commits", "PG commits"),
                  ("pg_rows_inserted", "rows ins"), ("pg_rows_updated", "rows upd"), ("pg_rows_read", "rows read"),
                  ("pg_wal_bytes", "WAL bytes"), ("pg_wal_syncs", "WAL syncs"), ("postgres_cpu_ms", "PG CPU ms")]


def _stores(results: list[Result]) -> list[str]:
    rows = []
    for result in results:
        per_op = result.extra.get("stores_per_op")
        if per_op and not result.target.startswith("idp 1w @"):
            rows.append([result.name, result.target, *[per_op.get(k, "-") for k, _ in _STORE_COLUMNS]])
    if not rows:
        return []
    return ["## What one operation costs the stores", "",
            "Counter deltas over the measured window divided by the operations completed in it: Redis "
            "`total_commands_processed`; PostgreSQL `pg_stat_database` (commits, rows inserted/updated/read) and "
            "`pg_stat_wal` (WAL bytes, syncs); CPU of the run's own redis-server and PostgreSQL processes. "
            "`docs/CAPACITY.md` sizes a deployment from these.", "",
            *_table(["workload", "server", *[label for _, label in _STORE_COLUMNS]], rows)]


def _peer(results: list[Result]) -> list[str]:
    rows = []
    idp = _idp_targets(results)
    for name in RP_WORKLOADS:
        peer = _find(results, PEER, name)
        if peer is None or not peer.per_s:
            continue
        cells: list[Any] = [name, f"{peer.per_s:.0f}", f"{peer.per_server_cpu_s:.0f}"]
        for target in idp:
            mine = _find(results, target, name)
            cells += [f"{mine.per_s:.0f} ({mine.per_s / peer.per_s:.2f} x)" if mine else "-"]
        one = _find(results, idp[0], name) if idp else None
        cells += [f"{one.per_server_cpu_s / peer.per_server_cpu_s:.2f} x"
                  if one and peer.per_server_cpu_s else "-"]
        rows.append(cells)
    if not rows:
        return []
    return ["## Side by side with node oidc-provider", "",
            "Same load generator, same users, same client authentication (client_secret_basic), RS256 ID tokens, "
            "rotated refresh tokens. The peer runs in one node process (one core, the IdP's core) with a Redis "
            "adapter in the shape its documentation gives for production (`bench/peer/provider.mjs`, ioredis, the "
            "run's Redis): both pay round trips to their store. Its codes and refresh tokens are minted in its "
            "store, the IdP's come from real logins. Ratios are IdP / peer.", "",
            *_table(["workload", "peer ops/s", "peer per CPU-s", *[f"IdP {t[4:]}" for t in idp],
                     "per CPU-s ratio (IdP 1 worker)"], rows)]


def _scaling(results: list[Result], facts: dict[str, Any]) -> list[str]:
    idp = _idp_targets(results)
    if len(idp) < 2:
        return []
    rows = []
    for name in ("login (e-mail code)", "refresh grant", "authorize (SSO)", "code exchange"):
        first, last = _find(results, idp[0], name), _find(results, idp[-1], name)
        if first and last and first.per_s and first.per_server_cpu_s:
            rows.append([name, f"{first.per_s:.1f}", f"{last.per_s:.1f}", f"{last.per_s / first.per_s:.2f} x",
                         f"{first.per_server_cpu_s:.0f}", f"{last.per_server_cpu_s:.0f}",
                         f"{last.per_server_cpu_s / first.per_server_cpu_s:.2f}"])
    cores = facts.get("cores", {})
    note = ("On this machine the 1-worker rows have a core to themselves while the load generator and the stores "
            "use the other; with 2 workers there is no third core: the workers share "
            f"{len(cores.get('cpus', []))} cores with the generator and the stores, so the throughput ratio is "
            "bounded by the CPU left to the server and says little about the IdP. The CPU-efficiency columns "
            "(operations per server CPU-second) tell whether a second worker costs more per operation (lock "
            "waits, shared state): 1.0 means workers scale linearly when each has its own core.")
    return ["## Scaling from 1 to 2 workers", "", note, "",
            *_table(["workload", f"{idp[0]} ops/s", f"{idp[-1]} ops/s", "speed-up", f"{idp[0]} per CPU-s",
                     f"{idp[-1]} per CPU-s", "CPU efficiency"], rows)]


def _storage(facts: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    redis = facts.get("redis")
    if redis:
        session = redis.get("session", {}).get("mean_bytes", 0.0)
        index = redis.get("sessions-of", {})
        per_account_index = index.get("mean_bytes", 0.0)
        lines += ["## Redis memory", "",
                  f"Per browser session: **{session:.0f} bytes** (`session:<id>`), plus the account's session index "
                  f"(`sessions-of:<account>`, {per_account_index:.0f} bytes for one account's set). Per login "
                  f"interaction: **{redis.get('interaction', {}).get('mean_bytes', 0.0):.0f} bytes** "
                  "(`interaction:<id>`, measured on fresh interactions; consumed at the end of a login). "
                  "`MEMORY USAGE` of every key family at the end of the run:", "",
                  *_table(["key family", "keys", "mean bytes"],
                          [[k, v["keys"], v["mean_bytes"]] for k, v in redis.items()])]
    database = facts.get("database_per_login")
    if database:
        lines += ["## Database per login", "",
                  f"Over {database['logins']} full logins (each ends with a code exchange that stores a refresh "
                  f"token): **{database['rows_per_login']} rows and {database['bytes_per_login']:.0f} bytes per login** "
                  "(`count(*)` and `pg_total_relation_size` deltas, table + indexes + TOAST; pages are allocated "
                  "8 KiB at a time, so bytes are an average).", "",
                  *_table(["table", "rows per login", "bytes per login"],
                          [[k, v["rows_per_login"], v["bytes_per_login"]] for k, v in database["tables"].items()])]
    return lines


def _profiles(facts: dict[str, Any]) -> list[str]:
    found = facts.get("profiles")
    if not found:
        return []
    lines = ["## Where the time goes (pyinstrument, in-process)", "",
             "Each request run through Flask's test client in the bench process (no HTTP server, one at a time), "
             "self time grouped by library; the full trees are in `bench/results/profile-*.txt`.", ""]
    for item in found:
        lines += [f"**{item['name']}**: {item['ms_per_op']} ms per operation", ""]
        lines += _table(["area", "share %", "ms per op"],
                        [[a["area"], a["share"], a["ms_per_op"]] for a in item["areas"] if a["share"] >= 1.0])
    return lines


def _method(results: list[Result], facts: dict[str, Any], options: dict[str, Any]) -> list[str]:
    generator = sum(r.generator_cpu_s for r in results)
    server = sum(r.server_cpu_s for r in results)
    changed = options.get("settings_changed", {})
    return ["## Method and caveats", "",
            f"- Load generator: Python threads in the bench process, one per virtual user (requests for the "
            f"browser, keep-alive http.client for the RP calls). It used {generator:.1f} CPU-s against "
            f"{server:.1f} CPU-s for the servers (pinned away from the 1-worker server's core when the machine "
            "has 2 cores or more).",
            "- Settings changed from the defaults: " + "; ".join(f"`{k}={v['value']}` ({v['why']})"
                                                                   for k, v in changed.items()) + ".",
            "- The accounts answered \"Ne plus me rappeler\" to the biometric offer, so a login is identify -> code -> "
            "done (identify -> done with a trusted browser).",
            "- `authorize (SSO)` makes the codes (GET /authorize with a live browser session) that `code exchange` "
            "then redeems; the exchange phase ends when the codes run out.",
            "- The rows at Keycloak's parameters (`idp 1w kc-argon2`, t=5, m=7168 KiB, p=1) use accounts hashed at "
            "those parameters and the IdP set to them (`IDP_ARGON2_*`).",
            f"- Seeding took {facts.get('seed_s', '?')} s, priming logins {facts.get('prime_s', '?')} s.", ""]
