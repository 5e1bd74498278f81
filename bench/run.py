"""slither's benchmarks against serial, threads, multiprocessing, ProcessPoolExecutor, loky, mpire and Pebble.

    nox -s bench            (or: python bench/run.py [--quick] [--workers N])
    nox -s bench -- --v1-python /tmp/v1/bin/python     (adds bench/core_v2.py: v2 against the landed v1)

Writes docs/benchmarks.md and docs/benchmarks.json (and docs/benchmarks-core-v2.json with --v1-python; without
it, the Core v2 section already in docs/benchmarks.md is kept as it is). Every number is measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import core_v2  # noqa: E402
import faults  # noqa: E402
import floor  # noqa: E402
import peers  # noqa: E402
import ray_bench  # noqa: E402
import store_bench  # noqa: E402
import telemetry_bench  # noqa: E402
import workloads  # noqa: E402
from machine import machine, use_bytecode  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def scenario_a(engine, n, chunks):
    best = (0.0, None)
    items = list(range(n))
    for chunk in chunks:
        out, wall = timed(lambda c=chunk: engine.map(workloads.inc, items, c))
        assert out[-1] == n, engine.name
        rate = n / wall
        if rate > best[0]:
            best = (rate, chunk)
    return {"items_per_s": best[0], "best_chunk": best[1]}


def scenario_b(engine, n):
    for i in range(50):
        engine.call(workloads.ident, i)
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        engine.call(workloads.ident, i)
        lat.append(time.perf_counter() - t0)
    lat.sort()
    return {"p50_us": lat[len(lat) // 2] * 1e6, "p99_us": lat[int(len(lat) * 0.99)] * 1e6}


def scenario_c(engine, n, serial_s):
    items = list(range(n))
    _, wall = timed(lambda: engine.map(workloads.cpu_1ms, items, 10))
    return {"wall_s": wall, "speedup": serial_s / wall}


def scenario_d(engine, n, size):
    # Distinct objects: ``[b"x" * size] * n`` is one object n times, which pickle sends once per batch (its memo),
    # so an engine that pickles a batch as one list moved an eighth of the bytes the figure claimed.
    payloads = [bytes([i % 251]) * size for i in range(n)]
    out, wall = timed(lambda: engine.map(workloads.echo, payloads, 8))
    assert len(out) == n and out[-1] == payloads[-1]
    return {"mb_per_s": n * size / 2**20 / wall}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes: checks the harness, numbers mean little")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(HERE.parent / "docs" / "benchmarks.md"))
    ap.add_argument("--v1-python", default=os.environ.get("SLITHER_V1_PYTHON"),
                    help="also run bench/core_v2.py against the landed v1 in this interpreter (see bench/v1_venv.sh)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of bench/core_v2.py")
    args = ap.parse_args()
    use_bytecode(*[p for p in (sys.executable, args.v1_python) if p])
    q = args.quick
    na, nb, nc, nd, size = (20_000, 200, 200, 200, 100_000) if q else (200_000, 2_000, 2_000, 2_000, 100_000)
    chunks = [1000, 5000] if q else [500, 2000, 10_000, 50_000]
    w = args.workers
    results: dict = {"machine": machine(), "workers": w, "quick": q, "engines": {}}

    serial_c = timed(lambda: [workloads.cpu_1ms(x) for x in range(nc)])[1]
    results["serial_cpu_s"] = serial_c
    results["c_items"] = nc
    for cls in peers.ENGINES:
        engine, missing = peers.open_engine(cls, w)
        if engine is None:
            results["engines"][cls.name] = {"missing": missing}
            print(f"{cls.name}: {missing}", flush=True)
            continue
        try:
            r = {"a": scenario_a(engine, na, chunks if cls.name not in ("serial", "threads") else [1])}
            r["b"] = scenario_b(engine, nb)
            r["c"] = scenario_c(engine, nc, serial_c)
            r["d"] = scenario_d(engine, nd, size)
            if cls.name == "slither":
                auto = timed(lambda: engine.p.map(workloads.inc, list(range(na))))[1]
                r["a_auto_items_per_s"] = na / auto
        finally:
            engine.close()
        results["engines"][cls.name] = r
        print(f"{cls.name}: {json.dumps(r)}", flush=True)

    lat = sorted(floor.call_latencies(nb))
    results["floor"] = {
        "a": {"items_per_s": max(floor.items_per_s(na, c) for c in chunks)},
        "b": {"p50_us": lat[len(lat) // 2] * 1e6, "p99_us": lat[int(len(lat) * 0.99)] * 1e6},
        "d": {"mb_per_s": floor.echo_mb_per_s(nd, size)},
    }
    print("floor:", json.dumps(results["floor"]), flush=True)
    results["faults"] = faults.run(quick=q)
    print("faults:", json.dumps(results["faults"]), flush=True)
    results["telemetry"] = telemetry_bench.run(quick=q)
    print("telemetry:", json.dumps(results["telemetry"]), flush=True)
    results["store"] = store_bench.run(quick=q)
    print("store:", json.dumps(results["store"]), flush=True)
    results["ray"] = ray_bench.run(quick=q)
    print("ray:", json.dumps(results["ray"]), flush=True)
    results["machine"]["load_after"] = os.getloadavg()[0]

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    kept = core_v2.existing_section(out)
    out.write_text(render(results))
    if args.v1_python:
        cv = core_v2.run(args.v1_python, args.rounds, q)
        cv["machine"]["load_after"] = os.getloadavg()[0]
        out.with_name("benchmarks-core-v2.json").write_text(json.dumps(cv, indent=2))
        core_v2.splice(out, core_v2.markdown(cv))
    elif kept:
        core_v2.splice(out, kept)
    print(f"wrote {out}")
    return 0


def _fmt(x: float, unit: str = "") -> str:
    if x >= 100:
        return f"{x:,.0f}{unit}"
    return f"{x:.2f}{unit}"


def render(r: dict) -> str:
    m = r["machine"]
    eng = {k: v for k, v in r["engines"].items() if "missing" not in v}
    peers_only = {k: v for k, v in eng.items() if k not in ("slither", "serial", "threads")}
    s = eng.get("slither")
    fl = r["floor"]
    lines = [
        "# Benchmarks",
        "",
        "Measured by `nox -s bench` (`python bench/run.py`); every number below comes from one run on the machine",
        "described here. Numbers from a busy or different machine will differ; the ratios are what to compare.",
        "",
        f"- machine: {m['cores']} cores, {m['cpu']}, Python {m['python']}, {m['os']}",
        f"- run: {m['date']}, {r['workers']} workers per engine, load average {m['load_before']:.2f} before and "
        f"{m.get('load_after', 0):.2f} after{' (QUICK run: small sizes)' if r['quick'] else ''}",
        "",
        "## Throughput and latency",
        "",
        "| engine | (a) x+1 items/s (best chunk) | (b) call p50 µs | (b) p99 µs | (c) speedup over serial | (d) 100 KB echo MB/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, v in r["engines"].items():
        if "missing" in v:
            lines.append(f"| {name} | {v['missing']} | | | | |")
            continue
        lines.append(
            f"| {name} | {_fmt(v['a']['items_per_s'])} (chunk {v['a']['best_chunk']}) | {_fmt(v['b']['p50_us'])} | "
            f"{_fmt(v['b']['p99_us'])} | {v['c']['speedup']:.2f}× | {_fmt(v['d']['mb_per_s'])} |"
        )
    lines.append(f"| bare pipe (floor) | {_fmt(fl['a']['items_per_s'])} | {_fmt(fl['b']['p50_us'])} | "
                 f"{_fmt(fl['b']['p99_us'])} | | {_fmt(fl['d']['mb_per_s'])} |")
    if s:
        lines += ["", f"slither with its automatic batch size (`batch_size=None`): {_fmt(s['a_auto_items_per_s'])} items/s.",
                  "", "## Targets (2 workers)", "", "| target | measured | verdict |", "|---|---|---|"]
        best_peer_name, best_peer = max(peers_only.items(), key=lambda kv: kv[1]["a"]["items_per_s"])
        ra = s["a"]["items_per_s"] / best_peer["a"]["items_per_s"]
        rb = s["b"]["p50_us"] / fl["b"]["p50_us"]
        rc = s["c"]["speedup"]
        rd = s["d"]["mb_per_s"] / fl["d"]["mb_per_s"]
        for label, val, ok in [
            (f"(a) ≥ 2× the best peer ({best_peer_name})", f"{ra:.2f}×", ra >= 2),
            ("(b) p50 within 1.5× of the bare pipe", f"{rb:.2f}×", rb <= 1.5),
            ("(c) ≥ 1.85× serial", f"{rc:.2f}×", rc >= 1.85),
            ("(d) ≥ 0.8× the bare pipe", f"{rd:.2f}×", rd >= 0.8),
        ]:
            lines.append(f"| {label} | {val} | {'PASS' if ok else 'MISS'} |")
    f = r["faults"]
    lines += [
        "",
        "## Fault recovery",
        "",
        f"- time from a worker's SIGKILL to its replacement being ready: median {f['replacement_ms_median']:.1f} ms, "
        f"p90 {f['replacement_ms_p90']:.1f} ms over {f['kills']} kills",
        f"- chaos run ({f['chaos_items']:,} items of pure-Python work (`workloads.spin_batch`) through `dispatch(per=\"batch\", on_error=Retry(...))`, a random worker SIGKILLed "
        f"every 100 ms, {f['chaos_kills']} kills): {_fmt(f['chaos_items_per_s'])} items/s against "
        f"{_fmt(f['calm_items_per_s'])} items/s without kills ({f['chaos_items_per_s'] / f['calm_items_per_s']:.2f}×); "
        f"every item accounted for: {f['chaos_all_accounted']}",
    ]
    t = r["telemetry"]
    lines += [
        "",
        "## Telemetry overhead",
        "",
        f"The same `map` ({t['items']:,} items, batch size {t['batch_size']}), best of {t['repeats']}:",
        f"no subscriber {_fmt(t['none_items_per_s'])} items/s; with a subscriber {_fmt(t['subscribed_items_per_s'])} "
        f"items/s; after unsubscribing {_fmt(t['after_items_per_s'])} items/s.",
    ]
    lines += ["", store_bench.markdown(r["store"])]
    lines += ["", ray_bench.markdown(r["ray"])]
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        "pip install nox && nox -s bench        # builds slither in release mode, installs loky, mpire, Pebble",
        "python bench/run.py --quick             # a fast smoke run (numbers not meaningful)",
        "bench/v1_venv.sh /tmp/v1 && python bench/core_v2.py --v1-python /tmp/v1/bin/python   # v2 against the landed v1",
        "```",
        "",
        "Each engine gets the same worker count; (a) sweeps chunk sizes per engine and keeps its best; (b) times",
        f"single calls one after another; (c) uses chunks of 10 (one item took {r['serial_cpu_s'] / r['c_items'] * 1000:.2f} ms "
        "serially in this run); (d) echoes distinct 100 KB `bytes` objects, 8 per chunk. The floor",
        "is the same loop over one bare pipe between two Python processes (no pool; for (d) the same chunks of 8",
        "distinct objects per round trip). The raw numbers are in `docs/benchmarks.json`. The Core v2 section",
        "(below, if present) comes from `bench/core_v2.py`, run with `--v1-python` (here or on its own).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
