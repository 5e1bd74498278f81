"""Fault recovery: time from a SIGKILL to a ready replacement, and throughput under chaos."""

from __future__ import annotations

import contextlib
import statistics
import time

import slither
from core_v2_probe import time_replacement
from slither.chaos import Chaos, killing_workers


def replacement_times(kills: int) -> list[float]:
    out = []
    with slither.Pool(2) as pool:
        for _ in range(kills):
            out.append(time_replacement(pool) * 1000)
    return out


def chaos(n: int, kill: bool) -> tuple[float, int, bool]:
    with slither.Pool(2) as pool:
        with killing_workers(pool, every=0.1, seed=7) if kill else contextlib.nullcontext(Chaos()) as monkey:
            t0 = time.perf_counter()
            out = pool.dispatch("workloads:spin_batch", range(n), per="batch", batch_size=200,
                                on_error=slither.Retry(attempts=100, backoff=0.0, then="skip"))
        wall = time.perf_counter() - t0
        ok = sorted(out.indices + [f.index for f in out.failures]) == list(range(n)) and all(
            v == i + 1 for i, v in zip(out.indices, out.results))
        return n / wall, monkey.kills, ok


def run(quick: bool = False) -> dict:
    times = replacement_times(10 if quick else 50)
    n = 20_000 if quick else 100_000
    calm, _, _ = chaos(n, kill=False)
    rate, kills, ok = chaos(n, kill=True)
    return {
        "kills": len(times),
        "replacement_ms_median": statistics.median(times),
        "replacement_ms_p90": sorted(times)[int(len(times) * 0.9)],
        "chaos_items": n,
        "chaos_kills": kills,
        "chaos_items_per_s": rate,
        "calm_items_per_s": calm,
        "chaos_all_accounted": ok,
    }
