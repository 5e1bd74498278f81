"""Moving numpy arrays to workers and back: slither's shared-memory path against the other pools, one run.

    python bench/buffers.py [--sizes 64K,1M,16M,256M] [--workers 2] [--json out.json] [--rss]

For each size, float64 arrays are echoed by one call at a time (round trip: to the worker and back) and by a
map over 8 distinct arrays; MB/s counts each array's bytes once per round trip. Engines: slither,
multiprocessing.Pool, ProcessPoolExecutor, loky, joblib (loky backend, its automatic memory-mapping of
large inputs on), a memcpy of the same bytes in this process (the ceiling), and the least copying any round
trip between two processes can do (``two_copies``: one copy each way through shared memory already mapped). ``--rss`` also measures the
peak RSS of a fresh host process that sends a 1 GiB array to a worker and gets it back, per engine.
Nothing here is asserted; numbers are printed (and written as JSON) as measured.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

SIZES = {"64K": 64 << 10, "1M": 1 << 20, "16M": 16 << 20, "256M": 256 << 20}


def echo(x: Any) -> Any:
    return x


class Slither:
    name = "slither"

    def __init__(self, workers: int) -> None:
        import slither

        self.pool = slither.Pool(workers)

    def call(self, a):
        return self.pool.call(echo, a)

    def map(self, arrays):
        return self.pool.map(echo, arrays, batch_size=1)

    def close(self):
        self.pool.close()


class MpPool:
    name = "multiprocessing.Pool"

    def __init__(self, workers: int) -> None:
        self.pool = multiprocessing.get_context("fork").Pool(workers)

    def call(self, a):
        return self.pool.apply(echo, (a,))

    def map(self, arrays):
        return self.pool.map(echo, arrays, chunksize=1)

    def close(self):
        self.pool.terminate()
        self.pool.join()


class Executor:
    name = "ProcessPoolExecutor"

    def __init__(self, workers: int) -> None:
        self.ex = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))

    def call(self, a):
        return self.ex.submit(echo, a).result()

    def map(self, arrays):
        return list(self.ex.map(echo, arrays))

    def close(self):
        self.ex.shutdown()


class Loky(Executor):
    name = "loky"

    def __init__(self, workers: int) -> None:
        from loky import get_reusable_executor

        self.ex = get_reusable_executor(workers)

    def close(self):
        pass


class Joblib:
    name = "joblib (memmapping)"

    def __init__(self, workers: int) -> None:
        from joblib import Parallel, delayed

        self.par = Parallel(n_jobs=workers, backend="loky")  # max_nbytes="1M": inputs over 1 MB are memory-mapped
        self.delayed = delayed

    def call(self, a):
        return self.par([self.delayed(echo)(a)])[0]

    def map(self, arrays):
        return self.par(self.delayed(echo)(a) for a in arrays)

    def close(self):
        pass


ENGINES = [Slither, MpPool, Executor, Loky, Joblib]


def _reps(nbytes: int) -> int:
    return max(3, min(200, (512 << 20) // nbytes))


def memcpy(nbytes: int) -> float:
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    reps = _reps(nbytes)
    t = time.perf_counter()
    for _ in range(reps):
        np.copyto(dst, src)
    return nbytes * reps / (time.perf_counter() - t) / 1e6


def two_copies(nbytes: int) -> float:
    """MB/s of the least a round trip between two processes can copy: this process writes the array into shared
    memory that both have mapped (pages present), a forked child copies it into a second such segment, a pipe
    carries the turn. No pickling, no pool, no page faults: the rate a pool moving each array once each way
    could reach here, at best."""
    import mmap

    src = np.ones(nbytes // 8)
    there = np.frombuffer(mmap.mmap(-1, nbytes), dtype=np.float64)
    back = np.frombuffer(mmap.mmap(-1, nbytes), dtype=np.float64)
    there[:] = 0
    back[:] = 0
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        while os.read(go_r, 1) == b"g":
            np.copyto(back, there)
            os.write(done_w, b"d")
        os._exit(0)

    def round_trip() -> None:
        np.copyto(there, src)
        os.write(go_w, b"g")
        os.read(done_r, 1)

    try:
        round_trip()
        reps = _reps(nbytes)
        t = time.perf_counter()
        for _ in range(reps):
            round_trip()
        return nbytes * reps / (time.perf_counter() - t) / 1e6
    finally:
        os.write(go_w, b"q")
        os.waitpid(pid, 0)
        for fd in (go_r, go_w, done_r, done_w):
            os.close(fd)


def measure(engine: Any, nbytes: int) -> dict[str, float]:
    a = np.ones(nbytes // 8)
    engine.call(a)  # warm up (code paths hot)
    reps = _reps(nbytes)
    t = time.perf_counter()
    for _ in range(reps):
        b = engine.call(a)
    call = nbytes * reps / (time.perf_counter() - t) / 1e6
    assert b.shape == a.shape
    del b
    arrays = [np.full(nbytes // 8, float(i)) for i in range(8)]
    # Warm every worker, not only the one the calls went to: a worker's first task imports this module (and
    # numpy), about 0.1 s, which would otherwise land in the first timed map.
    engine.map(arrays)
    # Small maps take about a millisecond: as many maps as calls, so that one hiccup is not the figure.
    rounds = max(1, _reps(nbytes) // 8) if nbytes >= 1 << 20 else _reps(nbytes)
    t = time.perf_counter()
    for _ in range(rounds):
        out = engine.map(arrays)
    mapped = nbytes * 8 * rounds / (time.perf_counter() - t) / 1e6
    assert len(out) == 8 and out[3][0] == 3.0
    return {"call_MBps": round(call, 1), "map8_MBps": round(mapped, 1)}


def set_threshold(t: int) -> None:
    from slither._worker import buffers

    buffers.THRESHOLD = t


def threshold_probe(workers: int) -> list[dict[str, Any]]:
    """Round trips of one bytes-typed array per size, all in band against all through segments."""
    import slither
    from slither._worker import buffers

    default = buffers.THRESHOLD
    rows = []
    sizes = [16 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 4 << 20]
    for label, t in (("in band", 1 << 62), ("segment", 1)):
        set_threshold(t)
        with slither.Pool(workers, init=set_threshold, init_args=(t,)) as pool:
            for n in sizes:
                a = np.ones(n // 8)
                for _ in range(20):
                    pool.call(echo, a)
                reps = max(50, min(2000, (256 << 20) // n))
                t0 = time.perf_counter()
                for _ in range(reps):
                    pool.call(echo, a)
                us = (time.perf_counter() - t0) / reps * 1e6
                rows.append({"path": label, "bytes": n, "round_trip_us": round(us, 1)})
                print(f"{label:8} {n >> 10:>6} KiB  {us:9.1f} us per round trip", flush=True)
    buffers.THRESHOLD = default
    return rows


def rss_child(engine_name: str) -> None:
    """In a fresh process: send a 1 GiB array to a worker and get it back; print the peak RSS (bytes)."""
    engine = next(e for e in ENGINES if e.name == engine_name)(1)
    engine.call(np.ones(8))
    a = np.ones((1 << 30) // 8)
    b = engine.call(a)
    assert b.nbytes == a.nbytes and float(b.sum()) == a.size  # every page of the result touched
    # VmHWM, not ru_maxrss: the latter survives exec, so it would report the launching process's peak.
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    engine.close()
    print(json.dumps({"engine": engine_name, "peak_rss_bytes": peak}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="64K,1M,16M,256M")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--engines", default=",".join(e.name for e in ENGINES))
    ap.add_argument("--json")
    ap.add_argument("--rss", action="store_true")
    ap.add_argument("--rss-child")
    ap.add_argument("--threshold-probe", action="store_true")
    ap.add_argument("--rss-only", action="store_true", help="only the peak RSS measurement")
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return
    if args.threshold_probe:
        rows = threshold_probe(args.workers)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"threshold_probe": rows, "load_at_start": os.getloadavg()}, f, indent=1)
        return
    wanted = args.engines.split(",")
    sizes = [(s, SIZES[s]) for s in args.sizes.split(",")]
    print(f"load average at start: {os.getloadavg()}, cpus: {os.cpu_count()}, python {sys.version.split()[0]}")
    result: dict[str, Any] = {"workers": args.workers, "load_at_start": os.getloadavg(), "rows": []}
    ceiling = {} if args.rss_only else {label: round(memcpy(n), 1) for label, n in sizes}
    for label in ceiling:
        result["rows"].append({"engine": "memcpy (ceiling)", "size": label, "call_MBps": ceiling[label]})
        print(f"{'memcpy (ceiling)':22} {label:>5}  {ceiling[label]:>9.1f} MB/s")
    for label, n in ([] if args.rss_only else sizes):
        rate = round(two_copies(n), 1)
        result["rows"].append({"engine": "two copies, 2 processes", "size": label, "call_MBps": rate})
        print(f"{'two copies, 2 processes':22} {label:>5}  {rate:>9.1f} MB/s", flush=True)
    for cls in ENGINES:
        if cls.name not in wanted or args.rss_only:
            continue
        try:
            engine = cls(args.workers)
        except ImportError as exc:
            print(f"{cls.name}: not installed ({exc})")
            continue
        try:
            for label, n in sizes:
                row = {"engine": cls.name, "size": label, **measure(engine, n)}
                result["rows"].append(row)
                print(f"{cls.name:22} {label:>5}  call {row['call_MBps']:>9.1f} MB/s  map8 {row['map8_MBps']:>9.1f} MB/s",
                      flush=True)
        finally:
            engine.close()
    if args.rss:
        result["rss"] = []
        result["rss_bound_bytes"] = 2 * (1 << 30) + (200 << 20)
        for name in ("slither", "multiprocessing.Pool", "loky"):
            out = subprocess.run([sys.executable, __file__, "--rss-child", name], capture_output=True, text=True,
                                 timeout=600)
            line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-300:]
            print(f"peak RSS, 1 GiB there and back, {name}: {line}", flush=True)
            try:
                result["rss"].append(json.loads(line))
            except ValueError:
                result["rss"].append({"engine": name, "error": line})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
