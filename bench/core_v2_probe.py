"""One engine's measurements for the Core v2 comparison, run in a fresh child process; prints one JSON line.

    python bench/core_v2_probe.py ENGINE PART [--quick] [--workers N]

ENGINE is ``slither`` (whichever slither this interpreter imports: the orchestrator runs this file once under a
venv holding v2 and once under a venv holding v1) or ``mp`` (multiprocessing.Pool, spawn context, so its
workers are fresh interpreters like slither's). PART is one of:

- ``loop``: call round trip, item throughput (automatic batch size and one item per batch), 1 ms CPU items,
  20 short submits behind one long call, 100 KB echo;
- ``start``: cold start of 2 and of 64 workers, and a bare ``python -c pass`` with this interpreter;
- ``replace``: time from a worker's SIGKILL to its replacement being ready;
- ``scale:N``: host threads and memory with N idle workers.

ENGINE ``floor`` with PART ``floors`` measures the two floors (see floor.py) with the same sizes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads

ECHO_BYTES = 100_000
ECHO_CHUNK = 8


def echo_payloads(n: int) -> list[bytes]:
    """Distinct objects: a list of one object repeated would be pickled once per batch (pickle's memo)."""
    return [bytes([i % 251]) * ECHO_BYTES for i in range(n)]


def percentiles(samples: list[float]) -> dict:
    s = sorted(samples)
    return {"p50_us": s[len(s) // 2] * 1e6, "p99_us": s[int(len(s) * 0.99)] * 1e6, "n": len(s)}


# -- engines: the same few operations on slither and on multiprocessing.Pool --------------------------------
class Slither:
    def __init__(self, workers: int, startup_timeout: float = 600.0) -> None:
        import slither

        self.p = slither.Pool(workers, startup_timeout=startup_timeout)

    @staticmethod
    def describe() -> dict:
        import slither
        from slither import _slither

        return {"slither": os.path.dirname(slither.__file__), "v2_core": hasattr(_slither, "PROTOCOL")}

    def call(self, fn, arg):
        return self.p.call(fn, arg)

    def map(self, fn, items, chunk):
        return self.p.map(fn, items, batch_size=chunk)

    def submit(self, fn, arg):
        return self.p.submit(fn, arg)

    def pids(self) -> list[int]:
        return [_field(w, "pid") for w in self.p.workers_info()]

    def close(self):
        self.p.close()


class Mp:
    def __init__(self, workers: int, initializer=None, initargs=()) -> None:
        self.p = multiprocessing.get_context("spawn").Pool(workers, initializer=initializer, initargs=initargs)

    @staticmethod
    def describe() -> dict:
        return {"start_method": "spawn"}

    def call(self, fn, arg):
        return self.p.apply(fn, (arg,))

    def map(self, fn, items, chunk):
        return self.p.map(fn, items, chunksize=chunk)

    def submit(self, fn, arg):
        return self.p.apply_async(fn, (arg,))

    def pids(self) -> list[int]:
        return [p.pid for p in self.p._pool]

    def close(self):
        self.p.terminate()
        self.p.join()


# A collected Pool runs terminate() from its finalizer, which would wait for ever on the dead worker's lock: the
# abandoned ones stay referenced until the probe leaves with os._exit.
_ABANDONED: list = []


def _alarm(signum, frame):
    raise TimeoutError("no progress in 30 s")


def abandon(pool) -> None:
    """Stops a multiprocessing.Pool without terminate() (which can wait for ever on a dead worker's lock)."""
    from multiprocessing.pool import TERMINATE

    pool._worker_handler._state = TERMINATE  # no more replacements
    for proc in pool._pool:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for proc in list(pool._pool):
        proc.join(5)


def _field(obj, name):
    """v1's workers_info gives dicts, v2's frozen objects."""
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def _result(handle, timeout):
    return handle.result(timeout) if isinstance(handle, concurrent.futures.Future) else handle.get(timeout)


def _warm(engine, workers: int) -> None:
    engine.map(workloads.ident, list(range(workers * 4)), 1)
    for i in range(50):
        engine.call(workloads.ident, i)


# -- PART loop ----------------------------------------------------------------------------------------------
def part_loop(kind: str, workers: int, quick: bool) -> dict:
    n_call, n_auto, n_one, n_cpu, n_echo = (300, 20_000, 2_000, 200, 200) if quick else (2_000, 200_000, 10_000, 2_000, 1_000)
    long_s = 1.0 if quick else 2.0
    items = list(range(n_cpu))
    t0 = time.perf_counter()
    for x in items:
        workloads.cpu_1ms(x)
    serial_cpu = time.perf_counter() - t0

    engine = Slither(workers) if kind == "slither" else Mp(workers)
    out: dict = {"engine": engine.describe()}
    try:
        _warm(engine, workers)
        lat = []
        for i in range(n_call):
            t0 = time.perf_counter()
            engine.call(workloads.ident, i)
            lat.append(time.perf_counter() - t0)
        out["call"] = percentiles(lat)

        auto = list(range(n_auto))
        t0 = time.perf_counter()
        res = engine.map(workloads.inc, auto, None)
        out["auto_items_per_s"] = n_auto / (time.perf_counter() - t0)
        assert res[-1] == n_auto

        one = list(range(n_one))
        t0 = time.perf_counter()
        res = engine.map(workloads.inc, one, 1)
        out["one_per_batch_items_per_s"] = n_one / (time.perf_counter() - t0)
        assert res[-1] == n_one

        t0 = time.perf_counter()
        engine.map(workloads.cpu_1ms, items, 10)
        wall = time.perf_counter() - t0
        out["cpu_1ms"] = {"serial_s": serial_cpu, "wall_s": wall, "speedup": serial_cpu / wall,
                          "item_ms": serial_cpu / n_cpu * 1000}

        out["head_of_line"] = head_of_line(engine, long_s)

        payloads = echo_payloads(n_echo)
        t0 = time.perf_counter()
        res = engine.map(workloads.echo, payloads, ECHO_CHUNK)
        out["echo_mb_per_s"] = n_echo * ECHO_BYTES / 2**20 / (time.perf_counter() - t0)
        assert res[-1] == payloads[-1]
    finally:
        engine.close()
    return out


def head_of_line(engine, long_s: float) -> dict:
    """One long call on one of the 2 workers, then 20 short calls: how long until the last short result?"""
    long_handle = engine.submit(workloads.sleep, long_s)
    time.sleep(0.25)  # the long call is running by now
    t0 = time.perf_counter()
    shorts = [engine.submit(workloads.ident, i) for i in range(20)]
    for h in shorts:
        _result(h, 60)
    last = time.perf_counter() - t0
    long_done = long_handle.done() if isinstance(long_handle, concurrent.futures.Future) else long_handle.ready()
    _result(long_handle, 60)
    return {"last_short_ms": last * 1000, "long_s": long_s, "shorts_before_long": not long_done}


# -- the floors ---------------------------------------------------------------------------------------------
def part_floors(quick: bool) -> dict:
    import floor

    n_call, n_one, n_echo = (300, 2_000, 200) if quick else (2_000, 10_000, 1_000)
    ping = floor.ping_pong(n_call * 5)
    call = floor.call_latencies(n_call)
    return {
        "ping_pong": percentiles(ping),
        "call": percentiles(call),
        "one_per_roundtrip_items_per_s": floor.items_per_s(n_one, 1),
        "echo_mb_per_s": floor.echo_mb_per_s(n_echo, ECHO_BYTES, ECHO_CHUNK),
    }


# -- PART start ---------------------------------------------------------------------------------------------
def _announce(q) -> None:
    q.put(os.getpid())


def cold_start(kind: str, n: int) -> float:
    """Seconds from the constructor call until every one of n workers is ready for work."""
    if kind == "slither":
        t0 = time.perf_counter()
        engine = Slither(n)
        wall = time.perf_counter() - t0
    else:
        # multiprocessing.Pool returns before its workers have started: wait for each one's initializer.
        q = multiprocessing.get_context("spawn").SimpleQueue()
        t0 = time.perf_counter()
        engine = Mp(n, initializer=_announce, initargs=(q,))
        for _ in range(n):
            q.get()
        wall = time.perf_counter() - t0
    engine.close()
    return wall


def part_start(kind: str, quick: bool) -> dict:
    reps2, reps64 = (3, 1) if quick else (7, 2)
    bare = []
    for _ in range(reps2 + 3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - t0)
    two = [cold_start(kind, 2) for _ in range(reps2)]
    sixty_four = [cold_start(kind, 64) for _ in range(reps64)]
    return {"bare_python_s": statistics.median(bare), "start_2_s": statistics.median(two), "start_2_all": two,
            "start_64_s": statistics.median(sixty_four), "start_64_all": sixty_four}


# -- PART replace -------------------------------------------------------------------------------------------
def time_replacement(pool) -> float:
    """Seconds from a SIGKILL of worker 0 of an idle slither pool (v1 or v2) until its replacement is ready."""
    w = pool.workers_info()[0]
    gen = _field(w, "generation")
    t0 = time.perf_counter()
    os.kill(_field(w, "pid"), signal.SIGKILL)
    while True:
        now = pool.workers_info()[0]
        if _field(now, "generation") != gen and str(_field(now, "state")).lower().endswith("ready"):
            return time.perf_counter() - t0
        time.sleep(0.0002)


def part_replace(kind: str, quick: bool) -> dict:
    kills = 5 if quick else 20
    times = []
    if kind == "slither":
        engine = Slither(2)
        try:
            for _ in range(kills):
                engine.call(workloads.ident, 0)
                time.sleep(0.05)
                times.append(time_replacement(engine.p))
            engine.call(workloads.ident, 0)  # and it still runs work
        finally:
            engine.close()
    else:
        # An idle multiprocessing.Pool worker waits for tasks holding the task queue's lock; SIGKILLed there, it
        # takes the lock with it and the pool never hands out another task (and terminate() waits for ever).
        # So: a fresh pool per kill, a check that it still runs a task, and the processes killed by hand.
        kills = 3 if quick else 6
        wedged = hung = 0
        ctx = multiprocessing.get_context("spawn")
        signal.signal(signal.SIGALRM, _alarm)
        for _ in range(kills):
            q = ctx.SimpleQueue()
            engine = Mp(2, initializer=_announce, initargs=(q,))
            _ABANDONED.append(engine)
            signal.alarm(30)
            try:
                for _ in range(2):
                    q.get()
                engine.call(workloads.ident, 0)
                time.sleep(0.1)
                t0 = time.perf_counter()
                os.kill(engine.pids()[0], signal.SIGKILL)
                q.get()  # the replacement's initializer ran
                times.append(time.perf_counter() - t0)
                try:
                    engine.submit(workloads.ident, 1).get(2)
                except multiprocessing.TimeoutError:
                    wedged += 1
            except TimeoutError:
                hung += 1
            finally:
                signal.alarm(0)
                abandon(engine.p)
        if not times:
            return {"error": f"every one of {kills} tries hung"}
        ms = sorted(t * 1000 for t in times)
        return {"kills": kills, "median_ms": statistics.median(ms), "p90_ms": ms[int(len(ms) * 0.9)],
                "wedged_after_kill": wedged, "hung": hung}
    ms = sorted(t * 1000 for t in times)
    return {"kills": kills, "median_ms": statistics.median(ms), "p90_ms": ms[int(len(ms) * 0.9)]}


# -- PART scale:N -------------------------------------------------------------------------------------------
def _status_kb(pid: int | str, key: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _pss_kb(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def part_scale(kind: str, n: int) -> dict:
    threads_before = len(os.listdir("/proc/self/task"))
    rss_before = _status_kb("self", "VmRSS")
    t0 = time.perf_counter()
    if kind == "slither":
        engine = Slither(n)
    else:
        q = multiprocessing.get_context("spawn").SimpleQueue()
        engine = Mp(n, initializer=_announce, initargs=(q,))
        for _ in range(n):
            q.get()
    start_s = time.perf_counter() - t0
    try:
        # Exercise every path that may start a host thread: a map, a call, a submit.
        engine.map(workloads.inc, list(range(n * 4)), 1)
        engine.call(workloads.ident, 1)
        _result(engine.submit(workloads.ident, 1), 60)
        time.sleep(0.5)
        kids = _descendants(os.getpid())
        out = {
            "workers": n,
            "start_s": start_s,
            "host_threads": len(os.listdir("/proc/self/task")),
            "host_threads_added": len(os.listdir("/proc/self/task")) - threads_before,
            "host_rss_mb": _status_kb("self", "VmRSS") / 1024,
            "host_rss_added_mb": (_status_kb("self", "VmRSS") - rss_before) / 1024,
            "child_processes": len(kids),
            "children_pss_mb": sum(_pss_kb(k) for k in kids) / 1024,
        }
    finally:
        engine.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("engine", choices=["slither", "mp", "floor"])
    ap.add_argument("part")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    if a.engine == "floor":
        out = part_floors(a.quick)
    elif a.part == "loop":
        out = part_loop(a.engine, a.workers, a.quick)
    elif a.part == "start":
        out = part_start(a.engine, a.quick)
    elif a.part == "replace":
        out = part_replace(a.engine, a.quick)
    elif a.part.startswith("scale:"):
        out = part_scale(a.engine, int(a.part.split(":", 1)[1]))
    else:
        raise SystemExit(f"unknown part {a.part!r}")
    print("RESULT " + json.dumps(out), flush=True)
    if a.engine == "mp" and a.part == "replace":
        os._exit(0)  # multiprocessing's exit handlers would terminate() the abandoned pools, and wait for ever
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
