"""The store: host reads/s against a Lock-guarded dict and a Manager dict; a worker's read latency (small,
1 KiB and 1 MiB values) for slither v2, slither v1, a ``multiprocessing.Manager().dict()`` proxy and a
plain dict inside the worker (the floor); host writes/s into tables of 1k, 100k and 1M keys, v1 and v2.

v1 is measured in the same run by another interpreter that has slither v1 installed: pass its path with
``--v1-python`` or ``SLITHER_V1_PYTHON`` (build it from the v1 commit into its own venv). Without one,
the v1 rows say "not measured".

    python bench/store_bench.py [--quick] [--v1-python PATH] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time

import slither

SIZES = {"small": {"a": 1, "b": [1, 2, 3]}, "1 KiB": b"x" * 1024, "1 MiB": b"x" * (1 << 20)}
TABLES = (1_000, 100_000, 1_000_000)


def _percentiles(lat: list[float]) -> tuple[float, float]:
    lat.sort()
    return lat[len(lat) // 2] * 1e6, lat[int(len(lat) * 0.99)] * 1e6


def _timed_reads(get, n: int) -> tuple[float, float]:
    get()
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        get()
        lat.append(time.perf_counter() - t0)
    return _percentiles(lat)


def _reads_per_s(get, threads: int, seconds: float) -> float:
    counts = [0] * threads
    stop = threading.Event()

    def reader(k):
        n = 0
        while not stop.is_set():
            for _ in range(100):
                get("k")
            n += 100
        counts[k] = n

    ts = [threading.Thread(target=reader, args=(k,)) for k in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


# -- inside a worker ------------------------------------------------------------------------------
def _worker_store_reads(n):
    from slither.worker import store

    return {size: _timed_reads(lambda s=size: store.get("read", s), n if size != "1 MiB" else max(50, n // 20))
            for size in SIZES}


def _worker_random_reads(n):
    """Random keys of a 100,000-key table: almost every read is a first read of its key."""
    import random

    from slither.worker import store

    keys = [random.randrange(100_000) for _ in range(n + 1)]
    it = iter(keys)
    return _timed_reads(lambda: store.get("wide", next(it)), n)


def _worker_stale_reads(n):
    """A read right after the table changed: v2 maps the new image (one round trip), v1 asks as always."""
    from slither.worker import store

    lat = []
    for i in range(n):
        store.put("stale", "other", i)
        t0 = time.perf_counter()
        store.get("stale", "k")
        lat.append(time.perf_counter() - t0)
    return _percentiles(lat)


def _worker_big_stale_reads(n):
    """A read right after each write into a 1M-key table (the worker writes, then reads another key)."""
    from slither.worker import store

    store.get("big", 0)
    lat = []
    for i in range(n):
        store.put("big", -1, i)
        t0 = time.perf_counter()
        store.get("big", i)
        lat.append(time.perf_counter() - t0)
    return _percentiles(lat)


def _worker_dict_reads(n):
    d = dict(SIZES)
    return {size: _timed_reads(lambda s=size: d[s], n) for size in SIZES}


def _worker_manager_reads(args):
    proxy, n = args
    return {size: _timed_reads(lambda s=size: proxy.get(s), n if size != "1 MiB" else max(50, n // 20))
            for size in SIZES}


# -- host writes ----------------------------------------------------------------------------------
def _writes_per_s(keys: int, seconds: float) -> dict:
    st = slither.Store()
    st.reload("w", {i: i for i in range(keys)})
    n = 0
    t0 = time.perf_counter()
    while True:
        st.put("w", n % keys, -n)
        n += 1
        elapsed = time.perf_counter() - t0
        if (n >= 20 and elapsed >= seconds) or n >= 200_000:
            return {"writes_per_s": n / elapsed, "writes": n}


def measure(quick: bool = False) -> dict:
    """Every measurement that depends on the slither this interpreter imports."""
    n = 500 if quick else 5000
    st = slither.Store()
    st.reload("read", SIZES)
    st.put("stale", "k", SIZES["small"])
    st.reload("wide", dict.fromkeys(range(100_000), SIZES["small"]))
    out: dict = {"version": getattr(slither, "__version__", "?"), "pid": os.getpid()}
    with slither.Pool(1, store=st) as pool:
        out["worker_us"] = pool.call(_worker_store_reads, n)
        out["worker_random_us"] = pool.call(_worker_random_reads, n)
        out["worker_stale_us"] = pool.call(_worker_stale_reads, n // 5)
        if not quick:
            st.reload("big", dict.fromkeys(range(1_000_000), 0))
            # v1 copies the whole table at each of these writes: keep the count small.
            out["worker_big_stale_us"] = pool.call(_worker_big_stale_reads, 20)
            st.reload("big", {})
    out["writes"] = {}
    for keys in TABLES:
        if quick and keys > 100_000:
            continue
        out["writes"][keys] = _writes_per_s(keys, 0.3 if quick else 2.0)
    return out


def _measure_v1(python: str, quick: bool) -> dict | None:
    cmd = [python, os.path.abspath(__file__), "--measure-only"] + (["--quick"] if quick else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False, v1_python: str | None = None, v1_label: str | None = None) -> dict:
    v1_python = v1_python or os.environ.get("SLITHER_V1_PYTHON")
    started = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": os.getloadavg()[0],
               "v1": v1_label or v1_python}
    seconds = 0.3 if quick else 2.0
    n = 500 if quick else 5000
    st = slither.Store()
    st.put("t", "k", SIZES["small"])
    locked = {"k": SIZES["small"]}
    lock = threading.Lock()

    def locked_get(key):
        with lock:
            return locked[key]

    out: dict = {"host": {}}
    out["v2"] = measure(quick)
    out["v1"] = _measure_v1(v1_python, quick) if v1_python else None
    with multiprocessing.Manager() as mgr:
        md = mgr.dict(SIZES)
        for threads in (1, 2):
            out["host"][threads] = {
                "slither.Store": _reads_per_s(lambda k: st.get("t", k), threads, seconds),
                "dict + threading.Lock": _reads_per_s(locked_get, threads, seconds),
                "Manager().dict()": _reads_per_s(lambda k: md.get("small"), threads, seconds),
            }
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as p:
            out["worker_manager_us"] = p.apply(_worker_manager_reads, ((md, n),))
    with slither.Pool(1) as pool:
        out["worker_dict_us"] = pool.call(_worker_dict_reads, n)
    out["run"] = {**started, "load_after": os.getloadavg()[0]}
    return out


def _cell(pair) -> str:
    return "not measured" if pair is None else f"{pair[0]:.1f} / {pair[1]:.1f}"


def markdown(r: dict) -> str:
    v1, v2 = r.get("v1"), r["v2"]
    lines = ["## Store", ""]
    if "run" in r:
        run = r["run"]
        lines += [f"Measured by `bench/store_bench.py` on {run['date']} (load average {run['load_before']:.2f} "
                  f"before, {run['load_after']:.2f} after); slither v1 ({run['v1'] or 'not available'}) ran in "
                  "its own interpreter in the same run.", ""]
    lines += ["Host reads per second (a small dict value; readers in the same interpreter):", "",
             "| readers | slither.Store | dict + threading.Lock | Manager().dict() |", "|---|---|---|---|"]
    for threads, v in r["host"].items():
        lines.append(f"| {threads} | {v['slither.Store']:,.0f} | {v['dict + threading.Lock']:,.0f} | "
                     f"{v['Manager().dict()']:,.0f} |")
    lines += ["", "A worker's read, p50 / p99 in µs (`store.get` of one key; every slither and Manager read returns "
              "a fresh copy, the plain dict returns the object itself):", "",
              "| value | slither v2 | slither v1 | Manager().dict() proxy | plain dict in the worker (floor) |",
              "|---|---|---|---|---|"]
    for size in SIZES:
        lines.append(f"| {size} | {_cell(v2['worker_us'][size])} | {_cell(v1 and v1['worker_us'][size])} | "
                     f"{_cell(r['worker_manager_us'][size])} | {_cell(r['worker_dict_us'][size])} |")
    lines.append(f"| small, a random key of a 100,000-key table | {_cell(v2['worker_random_us'])} | "
                 f"{_cell(v1 and v1['worker_random_us'])} | | |")
    lines.append(f"| small, right after the table changed | {_cell(v2['worker_stale_us'])} | "
                 f"{_cell(v1 and v1['worker_stale_us'])} | | |")
    if "worker_big_stale_us" in v2:
        lines.append(f"| small, right after each of 20 writes into a 1,000,000-key table | "
                     f"{_cell(v2['worker_big_stale_us'])} | {_cell(v1 and v1.get('worker_big_stale_us'))} | | |")
    lines += ["", "Host writes per second (`put` of one key into a table of N keys):", "",
              "| keys | slither v2 | slither v1 | v2 / v1 |", "|---|---|---|---|"]
    for keys, w in v2["writes"].items():
        old = v1 and v1["writes"].get(str(keys), v1["writes"].get(keys))
        ratio = f"{w['writes_per_s'] / old['writes_per_s']:,.0f}×" if old else ""
        before = f"{old['writes_per_s']:,.1f}" if old else "not measured"
        lines.append(f"| {int(keys):,} | {w['writes_per_s']:,.0f} | {before} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--v1-python", help="an interpreter with slither v1 installed (default: $SLITHER_V1_PYTHON)")
    ap.add_argument("--v1-label", help="how to name v1 in the report (default: the interpreter's path)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure_only:
        print(json.dumps(measure(args.quick)))
        return
    r = run(args.quick, args.v1_python, args.v1_label)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    print(markdown(r))


if __name__ == "__main__":
    main()
