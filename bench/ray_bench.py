"""The Ray backend against the local one: start-up, per-call overhead, and map throughput (same machine)."""

from __future__ import annotations

import time

import slither


def _measure(backend: str, calls: int, items: int) -> dict:
    t0 = time.perf_counter()
    pool = slither.Pool(2, backend=backend)
    start = time.perf_counter() - t0
    try:
        for i in range(20):
            pool.call("workloads:ident", i)
        lat = []
        for i in range(calls):
            t = time.perf_counter()
            pool.call("workloads:ident", i)
            lat.append(time.perf_counter() - t)
        lat.sort()
        data = list(range(items))
        t = time.perf_counter()
        pool.map("workloads:inc", data, batch_size=5000)
        rate = items / (time.perf_counter() - t)
    finally:
        pool.close()
    return {"startup_s": start, "call_p50_us": lat[len(lat) // 2] * 1e6, "call_p99_us": lat[int(len(lat) * 0.99)] * 1e6,
            "map_items_per_s": rate}


def run(quick: bool = False) -> dict:
    try:
        import ray
    except ImportError:
        return {"missing": 'Ray is not installed (pip install "slither[ray]")'}
    calls, items = (200, 20_000) if quick else (1000, 200_000)
    out = {"local": _measure("local", calls, items)}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        out["ray"] = _measure("ray", calls, items)
    finally:
        ray.shutdown()
    return out


def markdown(r: dict) -> str:
    if "missing" in r:
        return f"## Ray backend\n\n{r['missing']}: not measured."
    lines = ["## Ray backend", "", "The same pool API with `backend=\"ray\"` (a local Ray on this machine) against the "
             "local backend:", "", "| backend | start-up s | call p50 µs | call p99 µs | map x+1 items/s (batch 5000) |",
             "|---|---|---|---|---|"]
    for name in ("local", "ray"):
        v = r[name]
        lines.append(f"| {name} | {v['startup_s']:.2f} | {v['call_p50_us']:,.0f} | {v['call_p99_us']:,.0f} | "
                     f"{v['map_items_per_s']:,.0f} |")
    lo, ra = r["local"], r["ray"]
    lines += ["", f"Per-call overhead on Ray: {ra['call_p50_us'] / lo['call_p50_us']:.1f}× the local backend's p50; "
              f"start-up {ra['startup_s'] / max(lo['startup_s'], 1e-9):.0f}× longer (not counting `ray.init`)."]
    return "\n".join(lines)
