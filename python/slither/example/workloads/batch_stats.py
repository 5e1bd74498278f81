"""batch_stats: fault isolation and per-worker running statistics.

Datasets of numbers, plus poison pills (None inside, the string "NaN", empty) that make a batch raise,
and crash pills that kill the process running them with a real C-level fault (as a buggy extension
would). Each worker keeps a Welford accumulator in module globals and validates the whole batch before
touching it, so a failed batch leaves no trace; the host merges the workers' accumulators with Chan's
formula.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import threading
from typing import Any

from slither.example._measure import run_threads

SIZES = {"small": (80, 80, 35, 5, 2), "default": (800, 800, 350, 50, 5), "large": (4000, 4000, 1750, 50, 5)}


def generate(size: str = "default", seed: int = 42) -> list[dict[str, Any]]:
    small, medium, large, poison, crash = SIZES[size]
    rng = random.Random(seed)

    def values(lo: int, hi: int) -> list[float]:
        return [rng.randint(1, 1000) / 1.0 for _ in range(rng.randint(lo, hi))]

    items: list[dict[str, Any]] = []
    items += [{"kind": "small", "values": values(5, 10)} for _ in range(small)]
    items += [{"kind": "medium", "values": values(50, 100)} for _ in range(medium)]
    items += [{"kind": "large", "values": values(200, 500)} for _ in range(large)]
    pills = ([1.0, 2.0, None, 4.0], [10.0, "NaN", 30.0], [])
    items += [{"kind": "poison", "values": list(pills[i % 3])} for i in range(poison)]
    items += [{"kind": "crash", "values": [1.0, 2.0, 3.0]} for _ in range(crash)]
    rng.shuffle(items)
    for i, item in enumerate(items):
        item["id"] = i
    return items


def is_poison(item: dict[str, Any]) -> bool:
    return item["kind"] in ("poison", "crash")


def crashes(batch: list[dict[str, Any]]) -> bool:
    """Whether ``compute_stats`` dies on this batch: its first pill is a crash pill (a poison pill raises first)."""
    first = next((item for item in batch if is_poison(item)), None)
    return first is not None and first["kind"] == "crash"


def validate(values: list[Any]) -> None:
    if not values:
        raise ValueError("empty dataset: cannot compute statistics")
    for v in values:
        if v is None:
            raise ValueError("dataset contains None: corrupt input data")
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise TypeError(f"dataset contains a non-numeric value: {v!r}")
        if math.isnan(v) or math.isinf(v):
            raise ValueError(f"dataset contains {v}")


def crash_like_a_buggy_extension() -> None:
    import ctypes

    ctypes.string_at(0)  # reads address 0: SIGSEGV, as a C bug would


def describe(values: list[float]) -> dict[str, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return {"count": n, "mean": mean, "variance": var, "min": min(values), "max": max(values)}


# -- Welford / Chan ---------------------------------------------------------------------------
def welford(values: list[float], state: tuple[int, float, float] = (0, 0.0, 0.0)) -> tuple[int, float, float]:
    n, mean, m2 = state
    for x in values:
        n += 1
        d = x - mean
        mean += d / n
        m2 += d * (x - mean)
    return n, mean, m2


def chan(a: tuple[int, float, float], b: tuple[int, float, float]) -> tuple[int, float, float]:
    na, ma, m2a = a
    nb, mb, m2b = b
    n = na + nb
    if n == 0:
        return 0, 0.0, 0.0
    d = mb - ma
    return n, ma + d * nb / n, m2a + m2b + d * d * na * nb / n


def variance(state: tuple[int, float, float]) -> float:
    n, _, m2 = state
    return m2 / (n - 1) if n > 1 else 0.0


# -- worker side ------------------------------------------------------------------------------
_state: tuple[int, float, float] = (0, 0.0, 0.0)
_ids: list[int] = []
_batches = 0


def reset() -> int:
    global _state, _batches
    _state = (0, 0.0, 0.0)
    _ids.clear()
    _batches = 0
    return os.getpid()


def compute_stats(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validates the whole batch first, so a failing batch changes nothing; then folds it in."""
    global _state, _batches
    for item in batch:
        if item["kind"] == "crash":
            crash_like_a_buggy_extension()
        validate(item["values"])
    out = []
    for item in batch:
        _state = welford(item["values"], _state)
        _ids.append(item["id"])
        out.append({"id": item["id"], **describe(item["values"])})
    _batches += 1
    return out


def worker_state() -> dict[str, Any]:
    return {"pid": os.getpid(), "state": _state, "ids": list(_ids), "batches": _batches}


# -- threaded baselines -----------------------------------------------------------------------
class _Running:
    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0


def unsafe_threaded(items: list[dict[str, Any]], threads: int) -> tuple[int, float, float]:
    """One shared running accumulator; each update is a multi-step read-modify-write with no lock."""
    shared = _Running()

    def work(k: int) -> None:
        for item in items[k::threads]:
            if is_poison(item):
                continue
            for x in item["values"]:
                n = shared.n + 1
                d = x - shared.mean
                mean = shared.mean + d / n
                shared.m2 += d * (x - mean)
                shared.mean = mean
                shared.n = n

    run_threads(threads, work)
    return shared.n, shared.mean, shared.m2


def safe_threaded(items: list[dict[str, Any]], threads: int) -> tuple[int, float, float]:
    parts: list[tuple[int, float, float]] = [(0, 0.0, 0.0)] * threads

    def work(k: int) -> None:
        st: tuple[int, float, float] = (0, 0.0, 0.0)
        for item in items[k::threads]:
            if not is_poison(item):
                st = welford(item["values"], st)
        parts[k] = st

    run_threads(threads, work)
    total: tuple[int, float, float] = (0, 0.0, 0.0)
    for p in parts:
        total = chan(total, p)
    return total



def valid_values(items: list[dict[str, Any]]) -> list[float]:
    return [x for item in items if not is_poison(item) for x in item["values"]]


def stats_invariants(expected: tuple[int, float, float], observed: tuple[int, float, float]) -> list[dict]:
    def close(a: float, b: float) -> bool:
        return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)

    return [
        {"name": "values counted", "expected": expected[0], "observed": observed[0], "ok": expected[0] == observed[0]},
        {"name": "mean", "expected": round(expected[1], 6), "observed": round(observed[1], 6),
         "ok": close(expected[1], observed[1])},
        {"name": "variance", "expected": round(variance(expected), 4), "observed": round(variance(observed), 4),
         "ok": close(variance(expected), variance(observed))},
    ]


def crash_in_threads(items: list[dict[str, Any]], threads: int) -> tuple[list[dict], str]:
    """The same datasets, crash pills included, in threads of a child interpreter: one fault ends them all."""
    proc = subprocess.run([sys.executable, "-m", "slither.example.workloads.batch_stats", str(threads)],
                          input=json.dumps(items), capture_output=True, text=True, timeout=600)
    finished = sum(1 for line in proc.stdout.splitlines() if line.startswith("done "))
    valid = sum(1 for i in items if not is_poison(i))
    died = proc.returncode < 0
    signame = _signal_name(-proc.returncode) if died else f"exit code {proc.returncode}"
    invariants = [
        {"name": "process survived", "expected": True, "observed": not died, "ok": not died},
        {"name": "finished results lost with it", "expected": 0, "observed": finished if died else 0,
         "ok": not died},
        {"name": "valid datasets never processed", "expected": 0, "observed": max(valid - finished, 0) if died else 0,
         "ok": not died},
    ]
    return invariants, f"child interpreter ended by {signame}" if died else "child interpreter survived"


def _signal_name(sig: int) -> str:
    import signal

    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def baselines(items: list[dict[str, Any]], threads: int) -> list[tuple[str, Any]]:
    expected = welford(valid_values(items))

    def unsafe() -> tuple[list[dict], str]:
        return stats_invariants(expected, unsafe_threaded(items, threads)), "one shared Welford accumulator, no lock"

    def safe() -> tuple[list[dict], str]:
        return stats_invariants(expected, safe_threaded(items, threads)), "per-thread accumulators merged with Chan"

    def crash() -> tuple[list[dict], str]:
        return crash_in_threads(items, threads)

    return [("unsafe_threaded", unsafe), ("safe_threaded", safe), ("threads_with_crash_pill", crash)]


def _child_main(threads: int) -> None:
    """Child interpreter of ``crash_in_threads``: threads process datasets and print each result as it ends."""
    items = json.loads(sys.stdin.read())
    lock = threading.Lock()
    results: list[dict[str, Any]] = []

    def work(k: int) -> None:
        for item in items[k::threads]:
            if item["kind"] == "crash":
                crash_like_a_buggy_extension()
            try:
                validate(item["values"])
            except (TypeError, ValueError):
                continue
            r = describe(item["values"])
            with lock:
                results.append(r)
                print(f"done {item['id']}", flush=True)

    run_threads(threads, work)


if __name__ == "__main__":
    _child_main(int(sys.argv[1]))
