"""The store: host reads/s (1 and 2 reader threads) against a Lock-guarded dict and a Manager dict, and a
worker's read latency against a Manager proxy's."""

from __future__ import annotations

import multiprocessing
import threading
import time

import slither


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


def _worker_latency_slither(n):
    from slither.worker import store

    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        store.get("t", "k")
        lat.append(time.perf_counter() - t0)
    lat.sort()
    return lat[len(lat) // 2] * 1e6, lat[int(len(lat) * 0.99)] * 1e6


def _worker_latency_manager(args):
    proxy, n = args
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        proxy.get("k")
        lat.append(time.perf_counter() - t0)
    lat.sort()
    return lat[len(lat) // 2] * 1e6, lat[int(len(lat) * 0.99)] * 1e6


def run(quick: bool = False) -> dict:
    seconds = 0.3 if quick else 2.0
    n = 500 if quick else 5000
    st = slither.Store()
    st.put("t", "k", {"a": 1, "b": [1, 2, 3]})
    locked = {"k": {"a": 1, "b": [1, 2, 3]}}
    lock = threading.Lock()

    def locked_get(key):
        with lock:
            return locked[key]

    out: dict = {"host": {}}
    with multiprocessing.Manager() as mgr:
        md = mgr.dict({"k": {"a": 1, "b": [1, 2, 3]}})
        for threads in (1, 2):
            out["host"][threads] = {
                "slither.Store": _reads_per_s(lambda k: st.get("t", k), threads, seconds),
                "dict + threading.Lock": _reads_per_s(locked_get, threads, seconds),
                "Manager().dict()": _reads_per_s(md.get, threads, seconds),
            }
        with slither.Pool(1, store=st) as pool:
            out["worker_slither_us"] = pool.call(_worker_latency_slither, n)
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as p:
            out["worker_manager_us"] = p.apply(_worker_latency_manager, ((md, n),))
    return out


def markdown(r: dict) -> str:
    lines = ["## Store", "", "Host reads per second (a small dict value; readers in the same interpreter):", "",
             "| readers | slither.Store | dict + threading.Lock | Manager().dict() |", "|---|---|---|---|"]
    for threads, v in r["host"].items():
        lines.append(f"| {threads} | {v['slither.Store']:,.0f} | {v['dict + threading.Lock']:,.0f} | "
                     f"{v['Manager().dict()']:,.0f} |")
    s50, s99 = r["worker_slither_us"]
    m50, m99 = r["worker_manager_us"]
    lines += ["", f"A worker's read: slither p50 {s50:.1f} µs, p99 {s99:.1f} µs; Manager proxy p50 {m50:.1f} µs, "
              f"p99 {m99:.1f} µs. slither's store copies on read (a fresh object per read), which a plain dict does not."]
    return "\n".join(lines)
