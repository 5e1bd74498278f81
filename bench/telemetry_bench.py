"""Telemetry costs nothing measurable without a subscriber: the same map with none, one, and after unsubscribing."""

from __future__ import annotations

import time

import slither


def _rate(pool, n, batch):
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        pool.map("workloads:inc", range(n), batch_size=batch)
        best = max(best, n / (time.perf_counter() - t0))
    return best


def run(quick: bool = False) -> dict:
    n, batch = (20_000, 100) if quick else (200_000, 100)
    with slither.Pool(2) as pool:
        none = _rate(pool, n, batch)
        events = []
        unsubscribe = pool.subscribe(events.append)
        subscribed = _rate(pool, n, batch)
        unsubscribe()
        after = _rate(pool, n, batch)
    return {"items": n, "batch_size": batch, "repeats": 3, "none_items_per_s": none,
            "subscribed_items_per_s": subscribed, "after_items_per_s": after, "events_seen": len(events)}
