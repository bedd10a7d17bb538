"""Closed-loop load generation and latency statistics.

A workload is a function run over and over by ``users`` threads (one virtual user each, with its own
state and connections) until the time is up or the count is reached. Each call records the latency
of its steps with :meth:`Timer.step`; the runner also reads the CPU seconds the server spent
(``cpu_probe``) and the generator's own CPU, so that throughput can be stated per server core.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


class Exhausted(Exception):
    """The workload has no more input (e.g. no authorization code left): the user stops."""


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    """count, mean, p50, p95, p99 and max, in milliseconds (``values`` in seconds)."""
    if not values:
        return {"count": 0, "mean_ms": 0.0, "p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    return {"count": len(values), "mean_ms": round(1000 * sum(values) / len(values), 2),
            "p50_ms": round(1000 * percentile(values, 50), 2), "p95_ms": round(1000 * percentile(values, 95), 2),
            "p99_ms": round(1000 * percentile(values, 99), 2), "max_ms": round(1000 * max(values), 2)}


class Timer:
    """Step latencies of one virtual user (merged by the runner at the end)."""

    def __init__(self) -> None:
        self.steps: dict[str, list[float]] = {}

    def step(self, name: str, started: float) -> float:
        """Record the step that began at ``started`` (``time.perf_counter()``); returns now."""
        now = time.perf_counter()
        self.steps.setdefault(name, []).append(now - started)
        return now


@dataclass
class Result:
    """What one workload run measured."""

    name: str
    target: str
    users: int
    completed: int
    errors: int
    elapsed_s: float
    per_s: float
    latency: dict[str, float]
    steps: dict[str, dict[str, float]]
    server_cpu_s: float
    generator_cpu_s: float
    first_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_server_cpu_s(self) -> float:
        """Completed operations per second of server CPU (= per fully busy core)."""
        return self.completed / self.server_cpu_s if self.server_cpu_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"name": self.name, "target": self.target, "users": self.users, "completed": self.completed,
                "errors": self.errors, "elapsed_s": round(self.elapsed_s, 3), "per_s": round(self.per_s, 1),
                "latency": self.latency, "steps": self.steps, "server_cpu_s": round(self.server_cpu_s, 3),
                "per_server_cpu_s": round(self.per_server_cpu_s, 1),
                "generator_cpu_s": round(self.generator_cpu_s, 3), "first_error": self.first_error,
                **({"extra": self.extra} if self.extra else {})}


def run_closed_loop(name: str, target: str, users: Sequence[Any], operation: Callable[[Any, Timer], None], *,
                    duration: float, max_count: int, cpu_probe: Callable[[], float] | None = None,
                    counters: Callable[[], dict[str, float]] | None = None, warmup: float = 0.0) -> Result:
    """Run ``operation(user, timer)`` in one thread per user; bounded by ``duration`` and ``max_count``.

    The first ``warmup`` seconds are run but not counted (connections, caches, JIT of the peer).
    ``counters`` (the stores' work counters) are read with the server CPU at both ends of the window;
    their difference per operation is ``extra["stores_per_op"]``."""
    lock = threading.Lock()
    state: dict[str, Any] = {"started": 0, "errors": 0, "first_error": "", "finished": 0}
    timers = [Timer() for _ in users]
    totals: list[list[float]] = [[] for _ in users]
    stop = threading.Event()
    measuring = threading.Event()

    def worker(index: int) -> None:
        # Throughput counts the operations that end inside the measured window, whenever they began
        # (a login takes seconds: counting only those begun inside it would under-count).
        user, timer = users[index], timers[index]
        while not stop.is_set():
            with lock:
                if state["started"] >= max_count:
                    return
                state["started"] += 1
            started = time.perf_counter()
            probe = Timer()
            try:
                operation(user, probe)
            except Exhausted:
                return
            except Exception as exc:
                if measuring.is_set() and not stop.is_set():
                    with lock:
                        state["errors"] += 1
                        state["first_error"] = state["first_error"] or f"{type(exc).__name__}: {exc}"[:300]
                time.sleep(0.01)  # an erroring server must not turn the generator into a busy loop
                continue
            with lock:
                state["finished"] += 1  # warm-up and tail included: what storage deltas divide by
            if measuring.is_set() and not stop.is_set():
                totals[index].append(time.perf_counter() - started)
                for step, values in probe.steps.items():
                    timer.steps.setdefault(step, []).extend(values)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(users))]
    for thread in threads:
        thread.start()
    if warmup:
        time.sleep(warmup)
    cpu_before = cpu_probe() if cpu_probe else 0.0
    counted_before = counters() if counters else {}
    gen_before = time.process_time()
    begin = time.perf_counter()
    measuring.set()
    deadline = begin + duration
    while time.perf_counter() < deadline and any(t.is_alive() for t in threads):
        time.sleep(0.05)
    stop.set()
    elapsed = time.perf_counter() - begin
    cpu_after = cpu_probe() if cpu_probe else 0.0
    counted_after = counters() if counters else {}
    generator = time.process_time() - gen_before
    for thread in threads:
        thread.join(timeout=60)
    all_totals = [v for values in totals for v in values]
    merged: dict[str, list[float]] = {}
    for timer in timers:
        for step, values in timer.steps.items():
            merged.setdefault(step, []).extend(values)
    completed = len(all_totals)
    extra: dict[str, Any] = {"finished_in_all": int(state["finished"])}
    if counters and completed:
        from bench.measure import per_operation

        extra["stores_per_op"] = per_operation(counted_before, counted_after, completed)
    return Result(name=name, target=target, users=len(users), completed=completed, errors=int(state["errors"]),
                  elapsed_s=elapsed, per_s=completed / elapsed if elapsed > 0 else 0.0,
                  latency=summary(all_totals), steps={k: summary(v) for k, v in merged.items()},
                  server_cpu_s=cpu_after - cpu_before, generator_cpu_s=generator,
                  first_error=str(state["first_error"]), extra=extra)
