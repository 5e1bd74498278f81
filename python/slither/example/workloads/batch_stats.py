"""batch_stats: fault isolation and running statistics.

Datasets of numbers, plus poison pills (None inside, the string "NaN", empty) that make their dataset
raise, and crash pills that kill the process running them with a real C-level fault (as a buggy
extension would). Each dataset's result carries its own Welford state (count, mean, M2), so the host can
merge the results with Chan's formula into the statistics of every valid dataset; the threaded baselines
fold the same datasets into a running accumulator instead.
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

SIZES = {"small": (200, 200, 100, 5, 2), "default": (800, 800, 350, 50, 5), "large": (4000, 4000, 1750, 50, 5)}

RACE_PASSES = 5
"""The unsafe baseline runs this many times; the report counts the passes that broke an invariant."""


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


def is_pill(item: dict[str, Any]) -> bool:
    return item["kind"] in ("poison", "crash")


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


def expected(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The serial reference: one Welford pass over the values of every valid dataset, in input order."""
    state = welford([x for item in items if not is_pill(item) for x in item["values"]])
    kinds: dict[str, int] = {}
    for item in items:
        kinds[item["kind"]] = kinds.get(item["kind"], 0) + 1
    return {"state": state, "valid": sum(1 for i in items if not is_pill(i)),
            "poison": kinds.get("poison", 0), "crash": kinds.get("crash", 0), "kinds": kinds}


def stats_invariants(ref: dict[str, Any], observed: tuple[int, float, float]) -> list[dict[str, Any]]:
    """Count exactly; mean and variance within a relative 1e-9 (summation order moves the last digits)."""
    exp = ref["state"]

    def close(a: float, b: float) -> bool:
        return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)

    return [
        {"name": "values counted (n)", "expected": exp[0], "observed": observed[0], "ok": exp[0] == observed[0]},
        {"name": "mean", "expected": round(exp[1], 9), "observed": round(observed[1], 9),
         "ok": close(exp[1], observed[1])},
        {"name": "variance", "expected": round(variance(exp), 6), "observed": round(variance(observed), 6),
         "ok": close(variance(exp), variance(observed))},
    ]


# -- worker side ------------------------------------------------------------------------------
_dump_file: Any = None


def capture_crash_dumps(directory: str) -> None:
    """Pool ``init``: this worker's fatal-error dump goes to a file of its own instead of stderr."""
    global _dump_file
    import faulthandler

    from slither.worker import info

    me = info()
    _dump_file = open(os.path.join(directory, f"w{me['index']}-pid{me['pid']}.txt"), "w")  # noqa: SIM115
    faulthandler.enable(file=_dump_file)


def dataset_stats(item: dict[str, Any]) -> dict[str, Any]:
    """One dataset's statistics and Welford state; raises on a poison pill, dies on a crash pill."""
    if item["kind"] == "crash":
        crash_like_a_buggy_extension()
    validate(item["values"])
    return {"id": item["id"], "state": welford(item["values"]), **describe(item["values"])}


# -- threaded baselines -----------------------------------------------------------------------
# Each thread does what a slither worker does per dataset: validate it (a pill raises, and is counted as
# failed) and fold its values into the running statistics. Crash pills are held back from these two:
# in threads they would kill this very process (the third baseline shows that, in a child interpreter).
def unsafe_threaded(items: list[dict[str, Any]], threads: int) -> tuple[tuple[int, float, float], int, int]:
    """One shared running accumulator, updated with the textbook read-modify-write and no lock."""
    stats = {"n": 0, "mean": 0.0, "m2": 0.0}
    failed = [0]
    results: list[dict[str, Any]] = []

    def work(k: int) -> None:
        for item in items[k::threads]:
            try:
                validate(item["values"])
            except (TypeError, ValueError):
                failed[0] += 1
                continue
            results.append({"id": item["id"], **describe(item["values"])})
            for x in item["values"]:
                stats["n"] += 1
                delta = x - stats["mean"]
                stats["mean"] += delta / stats["n"]
                stats["m2"] += delta * (x - stats["mean"])

    run_threads(threads, work)
    return (stats["n"], stats["mean"], stats["m2"]), failed[0], len(results)


def safe_threaded(items: list[dict[str, Any]], threads: int) -> tuple[tuple[int, float, float], int, int]:
    """A Welford accumulator and a result list per thread, merged after the threads finish."""
    parts: list[tuple[tuple[int, float, float], int, list[dict[str, Any]]]] = [((0, 0.0, 0.0), 0, [])] * threads

    def work(k: int) -> None:
        st: tuple[int, float, float] = (0, 0.0, 0.0)
        failed = 0
        results = []
        for item in items[k::threads]:
            try:
                validate(item["values"])
            except (TypeError, ValueError):
                failed += 1
                continue
            results.append({"id": item["id"], **describe(item["values"])})
            st = welford(item["values"], st)
        parts[k] = (st, failed, results)

    run_threads(threads, work)
    total: tuple[int, float, float] = (0, 0.0, 0.0)
    for p, _, _ in parts:
        total = chan(total, p)
    return total, sum(f for _, f, _ in parts), sum(len(r) for _, _, r in parts)


def crash_in_threads(items: list[dict[str, Any]], threads: int) -> tuple[list[dict[str, Any]], str]:
    """The same datasets, crash pills included, in threads of a child interpreter: one fault ends them all."""
    proc = subprocess.run([sys.executable, "-m", "slither.example.workloads.batch_stats", str(threads)],
                          input=json.dumps(items), capture_output=True, text=True, timeout=600)
    finished = sum(1 for line in proc.stdout.splitlines() if line.startswith("done "))
    valid = sum(1 for i in items if not is_pill(i))
    died = proc.returncode < 0
    signame = _signal_name(-proc.returncode) if died else f"exit status {proc.returncode}"
    lost = valid - finished if died else 0
    invariants = [
        {"name": "process survived", "expected": True, "observed": not died, "ok": not died},
        {"name": "valid datasets lost (results printed before the crash survive)", "expected": 0,
         "observed": lost, "ok": lost == 0},
    ]
    return invariants, (f"child interpreter ended by {signame} after {finished} of {valid} valid datasets"
                        if died else "child interpreter survived")


def _signal_name(sig: int) -> str:
    import signal

    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def baselines(items: list[dict[str, Any]], ref: dict[str, Any], threads: int) -> list[tuple[str, Any]]:
    no_crash = [i for i in items if i["kind"] != "crash"]
    held_back = len(items) - len(no_crash)

    def checks(state: tuple[int, float, float], failed: int, results: int) -> list[dict[str, Any]]:
        return [{"name": "datasets with a result (valid ones)", "expected": ref["valid"], "observed": results,
                 "ok": results == ref["valid"]},
                {"name": "datasets failed (poison pills)", "expected": ref["poison"], "observed": failed,
                 "ok": failed == ref["poison"]}, *stats_invariants(ref, state)]

    def unsafe() -> tuple[list[dict[str, Any]], str]:
        return checks(*unsafe_threaded(no_crash, threads)), (
            f"one shared Welford accumulator, no lock; {held_back} crash pills held back")

    def safe() -> tuple[list[dict[str, Any]], str]:
        return checks(*safe_threaded(no_crash, threads)), (
            f"per-thread accumulators merged with Chan; {held_back} crash pills held back")

    return [(f"unsafe_threaded ({threads} threads)", unsafe), (f"safe_threaded ({threads} threads)", safe),
            (f"threads_with_crash_pills ({threads} threads)", lambda: crash_in_threads(items, threads))]


def _child_main(threads: int) -> None:
    """Child interpreter of ``crash_in_threads``: threads process datasets and print each result as it ends."""
    items = json.loads(sys.stdin.read())
    lock = threading.Lock()

    def work(k: int) -> None:
        for item in items[k::threads]:
            if item["kind"] == "crash":
                crash_like_a_buggy_extension()
            try:
                validate(item["values"])
            except (TypeError, ValueError):
                continue
            describe(item["values"])
            with lock:
                print(f"done {item['id']}", flush=True)

    run_threads(threads, work)


if __name__ == "__main__":
    _child_main(int(sys.argv[1]))
