"""Warm start (issue 17): fresh interpreters vs ``Pool(preload=...)`` vs multiprocessing's forkserver with
``set_forkserver_preload`` of the same modules, all in one run.

    python bench/warm.py [--rounds 3] [--kills 10] [--quick] [--no-docs]

Every worker's ``init`` imports numpy and scikit-learn (``init_ml`` below). Measured, each in a fresh child
process (so no engine finds another's warm caches or a forkserver already running), engines interleaved
round by round:

- ``start2`` / ``start16``: cold start of 2 and of 16 workers, from the constructor call to every worker's
  init done (slither: the constructor returns; multiprocessing: every initializer reported on a queue);
- ``replace``: from a worker's SIGKILL to its replacement's init done, ``--kills`` times;
- ``memory``: with 2 workers ready, each worker's resident (RSS) and private (USS) memory, and the RSS of the
  extra process that forks them (the template, the forkserver).

Engines: ``fresh`` = ``slither.Pool(init=init_ml)``; ``preload`` = the same plus
``preload=["numpy", "sklearn.linear_model"]``; ``forkserver`` = ``multiprocessing.get_context("forkserver")``
with ``set_forkserver_preload`` of the same modules and ``Pool(initializer=...)``. A multiprocessing.Pool
worker killed while idle takes its task queue's lock with it, so that engine gets a new pool for each kill
(its forkserver stays up, as it would in a program) and its processes are killed by hand.

Writes docs/benchmarks-warm.json and the "Warm start" section of docs/benchmarks.md (unless --no-docs).
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs"
BEGIN, END = "<!-- warm:begin -->", "<!-- warm:end -->"
PRELOAD = ["numpy", "sklearn.linear_model"]
ENGINES = ("fresh", "preload", "forkserver")
PARTS = ("start2", "start16", "replace", "memory")
MB = 1 << 20


def init_ml() -> None:
    """Every engine's worker init: the imports a scikit-learn scoring worker needs."""
    import numpy  # noqa: F401
    import sklearn.linear_model  # noqa: F401


def announce_ml(queue) -> None:
    init_ml()
    queue.put(os.getpid())


# -- probes (one engine, one part, in a fresh process) ---------------------------------------------------
def _slither_pool(engine: str, n: int):
    import slither

    extra = {"preload": PRELOAD} if engine == "preload" else {}
    return slither.Pool(n, init="warm:init_ml", **extra)


def _memory(workers: list[int], forker: int | None) -> dict:
    import psutil

    time.sleep(0.3)
    infos = [psutil.Process(pid).memory_full_info() for pid in workers]
    return {"worker_rss_mb": statistics.mean(i.rss for i in infos) / MB,
            "worker_uss_mb": statistics.mean(i.uss for i in infos) / MB,
            "forker_rss_mb": psutil.Process(forker).memory_info().rss / MB if forker else 0.0}


def probe_slither(engine: str, part: str, kills: int) -> dict:
    from core_v2_probe import time_replacement  # bench/ is on sys.path here

    if part == "memory":
        import psutil

        with _slither_pool(engine, 2) as pool:
            pids = [w.pid for w in pool.workers_info()]
            return _memory(pids, psutil.Process(pids[0]).ppid() if engine == "preload" else None)
    if part.startswith("start"):
        n = int(part[len("start"):])
        t0 = time.perf_counter()
        pool = _slither_pool(engine, n)
        took = time.perf_counter() - t0
        with pool:
            assert pool.map(abs, [-1, -2]) == [1, 2]
        return {"seconds": took}
    times = []
    with _slither_pool(engine, 2) as pool:
        for _ in range(kills):
            pool.call(abs, 0)
            time.sleep(0.05)
            times.append(time_replacement(pool))
        assert pool.call(abs, -3) == 3
    return {"ms": [t * 1000 for t in times]}


# Pools whose killed worker took the task queue's lock: kept referenced, so no finalizer waits on that lock.
_ABANDONED: list = []


def _alarm(*_):
    raise TimeoutError


def probe_forkserver(part: str, kills: int) -> dict:
    import warm
    from core_v2_probe import abandon  # stops a pool without terminate(); bench/ is on sys.path here

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    signal.signal(signal.SIGALRM, _alarm)
    if part == "memory":
        from multiprocessing import forkserver

        q = ctx.SimpleQueue()
        pool = ctx.Pool(2, initializer=warm.announce_ml, initargs=(q,))
        for _ in range(2):
            q.get()
        out = _memory([p.pid for p in pool._pool], forkserver._forkserver._forkserver_pid)
        pool.close()
        pool.join()
        return out
    if part.startswith("start"):
        n = int(part[len("start"):])
        q = ctx.SimpleQueue()
        signal.alarm(300)
        t0 = time.perf_counter()
        pool = ctx.Pool(n, initializer=warm.announce_ml, initargs=(q,))
        for _ in range(n):
            q.get()
        took = time.perf_counter() - t0
        signal.alarm(0)
        assert pool.map(abs, [-1, -2]) == [1, 2]
        pool.close()
        pool.join()
        return {"seconds": took}
    times, hung = [], 0
    for _ in range(kills):
        q = ctx.SimpleQueue()
        pool = ctx.Pool(2, initializer=warm.announce_ml, initargs=(q,))
        _ABANDONED.append(pool)
        signal.alarm(60)
        try:
            for _ in range(2):
                q.get()
            pool.apply(abs, (0,))
            time.sleep(0.05)
            t0 = time.perf_counter()
            os.kill(pool._pool[0].pid, signal.SIGKILL)
            q.get()  # the replacement's initializer ran
            times.append(time.perf_counter() - t0)
        except TimeoutError:
            hung += 1
        finally:
            signal.alarm(0)
            abandon(pool)  # core_v2_probe's: stops the pool without terminate()
    return {"ms": [t * 1000 for t in times], "hung": hung}


def run_probe(engine: str, part: str, kills: int) -> None:
    sys.path.insert(0, str(HERE))
    try:
        out = probe_forkserver(part, kills) if engine == "forkserver" else probe_slither(engine, part, kills)
    except Exception as exc:  # reported, not hidden: the table shows the failure
        out = {"error": f"{type(exc).__name__}: {exc}"}
    print("RESULT " + json.dumps(out), flush=True)
    sys.stderr.flush()
    os._exit(0)  # multiprocessing's exit handlers would wait on the abandoned pools' locks


# -- the run ---------------------------------------------------------------------------------------------
def probe(engine: str, part: str, kills: int, timeout: float = 900) -> dict:
    """Runs one probe in its own session and kills whatever it left behind (multiprocessing's forkserver and
    the workers of an abandoned pool outlive it and would hold its output pipes open)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--probe", engine, part, "--kills", str(kills)]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=HERE, start_new_session=True)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout} s"}
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        out.seek(0)
        err.seek(0)
        for line in out.read().splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT "):])
        return {"error": f"exit {proc.returncode}: {err.read().strip()[-400:]}"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--probe", nargs=2, metavar=("ENGINE", "PART"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="1 round, 3 kills: a smoke run, not for the docs")
    ap.add_argument("--no-docs", action="store_true")
    a = ap.parse_args()
    if a.probe:
        return run_probe(a.probe[0], a.probe[1], a.kills)
    rounds, kills = (1, 3) if a.quick else (a.rounds, a.kills)
    load = os.getloadavg()
    raw: dict[str, dict[str, list]] = {e: {p: [] for p in PARTS} for e in ENGINES}
    errors: list[str] = []
    for r in range(rounds):
        for part in PARTS:
            for engine in ENGINES:
                got = probe(engine, part, kills)
                if "error" in got:
                    errors.append(f"round {r + 1} {engine} {part}: {got['error']}")
                    continue
                raw[engine][part].extend(got["ms"] if part == "replace" else [got] if part == "memory"
                                         else [got["seconds"]])
                print(f"round {r + 1} {part:8} {engine:10} {_short(got)}", file=sys.stderr, flush=True)
    summary = {e: _summary(raw[e]) for e in ENGINES}
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_at_start": load,
        "rounds": rounds,
        "kills_per_round": kills,
        "preload": PRELOAD,
        "summary": summary,
        "raw": raw,
        "errors": errors,
    }
    table = render(result)
    print(table)
    if not a.no_docs and not a.quick:
        (DOCS / "benchmarks-warm.json").write_text(json.dumps(result, indent=1) + "\n")
        _write_section(table)


def _short(got: dict) -> str:
    if "worker_rss_mb" in got:
        return ", ".join(f"{k} {v:.1f}" for k, v in got.items())
    if "ms" in got:
        ms = sorted(got["ms"])
        return f"replace median {statistics.median(ms):.1f} ms (n={len(ms)}, hung={got.get('hung', 0)})"
    return f"{got['seconds']:.2f} s"


def _summary(parts: dict[str, list]) -> dict:
    out = {}
    for part, values in parts.items():
        if part == "memory":
            out[part] = {k: statistics.median(v[k] for v in values) for k in values[0]} if values else None
            continue
        if not values:
            out[part] = None
            continue
        v = sorted(values)
        out[part] = {"median": statistics.median(v), "min": v[0], "max": v[-1], "n": len(v)}
    return out


def render(res: dict) -> str:
    s = res["summary"]

    def cell(engine: str, part: str, unit: str) -> str:
        m = s[engine][part]
        if m is None:
            return "failed"
        d = 1 if unit == "ms" else 2
        return f"{m['median']:.{d}f} {unit} ({m['min']:.{d}f}–{m['max']:.{d}f})"

    def ratio(part: str, a: str, b: str) -> str:
        x, y = s[a][part], s[b][part]
        return f"{x['median'] / y['median']:.3f}×" if x and y else "n/a"

    lines = [
        f"Measured {res['date']} by `bench/warm.py` (Python {res['python']}, {res['cpus']} CPUs, load average "
        f"{res['load_at_start'][0]:.2f} at the start; {res['rounds']} rounds, {res['kills_per_round']} kills per "
        "round). Every worker's `init` imports numpy and scikit-learn. Median (min–max).",
        "",
        "| | fresh interpreters | `preload=` | forkserver + `set_forkserver_preload` | preload / fresh | preload / forkserver |",
        "|---|---|---|---|---|---|",
    ]
    for part, label, unit in (("replace", "SIGKILL to a ready replacement", "ms"),
                              ("start2", "cold start, 2 workers", "s"),
                              ("start16", "cold start, 16 workers", "s")):
        lines.append(f"| {label} | {cell('fresh', part, unit)} | {cell('preload', part, unit)} | "
                     f"{cell('forkserver', part, unit)} | {ratio(part, 'preload', 'fresh')} | "
                     f"{ratio(part, 'preload', 'forkserver')} |")
    mem = {e: s[e]["memory"] for e in ENGINES}
    if all(mem.values()):
        lines += ["", "Memory with 2 workers ready (median over the rounds, MiB):", "",
                  "| | fresh interpreters | `preload=` | forkserver |", "|---|---|---|---|"]
        for key, label in (("worker_rss_mb", "each worker's RSS"), ("worker_uss_mb", "each worker's USS (private)"),
                           ("forker_rss_mb", "the template's / forkserver's RSS")):
            cells = " | ".join("—" if key == "forker_rss_mb" and e == "fresh" else f"{mem[e][key]:.1f}"
                               for e in ENGINES)
            lines.append(f"| {label} | {cells} |")
    if res["errors"]:
        lines += ["", "Failed probes: " + "; ".join(res["errors"])]
    return "\n".join(lines)


def _write_section(table: str) -> None:
    path = DOCS / "benchmarks.md"
    text = path.read_text()
    body = f"{BEGIN}\n{table}\n{END}"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + body + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n## Warm start (`preload=`)\n\n" + body + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
