"""What every example shares: its context (size, seed, workers, baselines), the report header, and
running the threaded baselines here and, with ``--baseline-python``, in another interpreter.

An example module defines ``NAME``, ``TITLE``, ``SUMMARY``, ``REQUIRES`` (a list of
``(import name, pip name)``) and ``run(ctx) -> Report``; its stdlib-only workload lives in
``slither.example.workloads.<NAME>`` with ``generate(size, seed)`` and ``baselines(data, threads)``.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from typing import Any

import slither
from slither.example._baselines import run_baselines
from slither.example._report import Row, interpreter_label


@dataclass
class Context:
    workers: int = field(default_factory=lambda: os.cpu_count() or 2)
    size: str = "default"
    seed: int = 42
    baselines: bool = True
    baseline_python: list[str] = field(default_factory=list)


def header(ctx: Context, pool: slither.Pool, items: int) -> dict[str, Any]:
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


def baseline_rows(ctx: Context, name: str, data: Any) -> list[Row]:
    if not ctx.baselines:
        return []
    rows = run_baselines(name, data, ctx.workers)
    for python in ctx.baseline_python:
        rows += other_interpreter_rows(python, name, ctx)
    return rows


def other_interpreter_rows(python: str, name: str, ctx: Context) -> list[Row]:
    """The same baselines (same seed, so the same data) in another interpreter, e.g. a free-threaded build."""
    from slither._workerpath import worker_env

    env = {**os.environ, **worker_env({}, same_interpreter=False)}
    cmd = [python, "-m", "slither.example._baseline_runner", name, ctx.size, str(ctx.workers), str(ctx.seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"baselines under {python} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return [Row.from_dict(d) for d in json.loads(proc.stdout.strip().splitlines()[-1])]


def gil_note(rows: list[Row], races: str) -> str | None:
    """Says honestly what a GIL build can hide, when every baseline ran with the GIL on."""
    if any("GIL off" in r.interpreter for r in rows):
        return None
    return (
        f"All threaded baselines ran with the GIL on: {races} Run again with --baseline-python pointing at a "
        "free-threaded interpreter (python3.13t) to see them with the GIL off."
    )


def finish(report: Any, ctx: Context, races: str | None, *notes: str) -> Any:
    """Adds the honest GIL note (when every baseline ran with the GIL on), the example's notes, and what
    peak memory means."""
    note = gil_note(report.rows, races) if races else None
    if note and ctx.baselines:
        report.notes.append(note)
    report.notes.extend(notes)
    report.notes.append("peak MiB: resident memory high-water mark of the host during the run (for slither, plus "
                        "each worker's), as the operating system reports it")
    return report


def worker_peak_mb(pool: slither.Pool) -> float:
    """The sum over workers of each one's peak resident memory (OS high-water mark), in MiB."""
    return sum(w.peak_rss_bytes for w in pool.stats().workers) / 2**20

