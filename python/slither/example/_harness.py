"""What every example shares: its context (size, seed, workers, baselines), the report header, measuring a
slither run (host and workers), and running the threaded baselines here and, with ``--baseline-python``,
in other interpreters.

An example module defines ``NAME``, ``TITLE``, ``SUMMARY``, ``REQUIRES`` (a list of ``(import name, pip
name)``) and ``run(ctx) -> Report``. Its stdlib-only workload lives in ``slither.example.workloads.<NAME>``
with ``generate(size, seed)``, ``expected(data)`` (the serial reference, computed once) and
``baselines(data, expected, threads) -> [(mode, fn)]``, where ``fn()`` returns ``(invariants, note)``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from slither.errors import ConfigError
from slither.example._baselines import run_baselines
from slither.example._measure import measure
from slither.example._report import Report, Row, interpreter_label

T = TypeVar("T")
SIZES = ("small", "default", "large")
_MEASURE = "slither.example._measure"


@dataclass
class Context:
    """How to run an example. ``size`` is one of :data:`SIZES`; ``workers`` ≥ 1 (the threaded baselines
    use as many threads unless the workload fixes their number); ``baseline_python`` lists other
    interpreters to run the baselines under; ``verbose`` prints full crash dumps.

    Raises:
        ValueError: for an unknown size or a worker count below 1.
    """

    workers: int = field(default_factory=lambda: os.cpu_count() or 2)
    size: str = "default"
    seed: int = 42
    baselines: bool = True
    baseline_python: list[str] = field(default_factory=list)
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ConfigError(f"size must be one of {', '.join(SIZES)}; got {self.size!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"workers must be a positive integer, got {self.workers!r}")


def check_baseline_python(python: str) -> str:
    """Checks that ``python`` is a usable Python 3 interpreter; returns its version line.

    Raises:
        ConfigError: (a ValueError) in one line, naming the path and what was wrong.
    """
    probe = "import sys; print(sys.version.split()[0], sys.version_info >= (3, 10))"
    try:
        proc = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise ConfigError(f"--baseline-python {python}: not a usable Python interpreter ({exc.strerror})") from None
    except subprocess.SubprocessError as exc:
        raise ConfigError(f"--baseline-python {python}: not a usable Python interpreter ({exc})") from None
    words = proc.stdout.split()
    if proc.returncode != 0 or len(words) != 2:
        raise ConfigError(f"--baseline-python {python}: not a usable Python interpreter (running it exited with "
                          f"status {proc.returncode} and printed no Python version)")
    if words[1] != "True":
        raise ConfigError(f"--baseline-python {python}: Python {words[0]} is too old (3.10 or newer is needed)")
    return words[0]


def header(ctx: Context, pool: Any, items: int) -> dict[str, Any]:
    import slither

    info = pool.workers_info()
    worker_py = sorted({f"{w.python}, GIL {'on' if w.gil else 'off'}" for w in info})
    return {
        "cores": os.cpu_count(),
        "workers": pool.size,
        "slither": slither.__version__,
        "host": interpreter_label(),
        "workers' interpreter": "; ".join(worker_py),
        "items": items,
        "size": ctx.size,
        "seed": ctx.seed,
    }


@dataclass
class PoolMeasurement:
    wall_s: float
    mem_mb: float
    """Host growth plus, per worker slot, its process's high-water mark minus the slot's resident memory
    before the run (a slot whose process was replaced is compared with its predecessor's start)."""
    workers_before_mb: float
    """Resident memory of the workers before the run (their interpreters), not part of the growth."""


def measure_pool(pool: Any, fn: Callable[[], T]) -> tuple[T, PoolMeasurement]:
    """Runs ``fn`` (which uses ``pool``) and measures its wall time and memory growth, host and workers."""
    marks = {w: r.value for w, r in pool.broadcast(f"{_MEASURE}:mark").items()}
    result, wall, host_growth = measure(fn)
    pool.wait_ready(timeout=60)
    peaks = {w: r.value for w, r in pool.broadcast(f"{_MEASURE}:peak").items()}
    growth = sum(max(p["peak"] - marks[w]["rss"], 0) for w, p in peaks.items() if w in marks)
    before = sum(m["rss"] for m in marks.values())
    return result, PoolMeasurement(wall, host_growth + growth / 2**20, before / 2**20)


def baseline_rows(ctx: Context, name: str, data: Any, expected: Any) -> tuple[list[Row], list[str]]:
    """The threaded baselines here and under each ``--baseline-python``: (rows, notes on what was skipped)."""
    if not ctx.baselines:
        return [], []
    rows = run_baselines(name, data, expected, ctx.workers)
    notes: list[str] = []
    for python in ctx.baseline_python:
        more, skipped = other_interpreter_rows(python, name, ctx)
        rows += more
        if skipped:
            notes.append(f"baselines under {python} not run: {skipped}")
    return rows, notes


def other_interpreter_rows(python: str, name: str, ctx: Context) -> tuple[list[Row], str | None]:
    """The same baselines (same seed, so the same data) in another interpreter, e.g. a free-threaded build.

    Returns (rows, None), or ([], why) when that interpreter lacks a package the baselines need.

    Raises:
        ConfigError: ``python`` is not a usable interpreter.
        RuntimeError: the baselines failed there (with the end of its stderr).
    """
    from slither._workerpath import worker_env

    check_baseline_python(python)
    env = {**os.environ, **worker_env({}, same_interpreter=False)}
    cmd = [python, "-m", "slither.example._baseline_runner", name, ctx.size, str(ctx.workers), str(ctx.seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"baselines under {python} failed (exit status {proc.returncode}):\n{proc.stderr[-3000:]}")
    answer = json.loads(lines[-1])
    if answer.get("skipped"):
        return [], answer["skipped"]
    return [Row.from_dict(d) for d in answer["rows"]], None


def gil_note(rows: list[Row]) -> str | None:
    """What this run's GIL-on unsafe baselines can and cannot show, from their own results; None if there is
    no unsafe baseline or any baseline ran with the GIL off."""
    baselines = [r for r in rows if not r.mode.startswith("slither")]
    if not baselines or any("GIL off" in r.interpreter for r in baselines):
        return None
    unsafe = [r for r in baselines if r.mode.startswith("unsafe")]
    broke = sum(1 for r in unsafe for i in r.invariants if not i.ok)
    see = ("Run with --baseline-python pointing at a free-threaded interpreter (python3.13t) to see the "
           "baselines with the GIL off.")
    where = f"Every threaded baseline ran with the GIL on ({baselines[0].interpreter})."
    if unsafe and not broke:
        return (f"{where} In this run the unsafe baseline got every invariant right: with the GIL on, a thread "
                f"switch rarely lands inside a read-modify-write. That is luck, not safety. {see}")
    if unsafe:
        return f"{where} The unsafe baseline broke {broke} invariant(s) in this run even so. {see}"
    return None


MEMORY_NOTE = ("mem +MiB: growth of resident memory during the mode's run (high-water mark minus the memory "
               "just before it); for slither, the host's growth plus each worker's")


def finish(report: Report, ctx: Context, notes: list[str], baseline_notes: list[str]) -> Report:
    """Adds the notes: the example's own, and (only when baselines ran) the baseline notes and the GIL note."""
    report.notes.extend(notes)
    if ctx.baselines:
        report.notes.extend(baseline_notes)
        note = gil_note(report.rows)
        if note:
            report.notes.append(note)
    report.notes.append(MEMORY_NOTE)
    return report
