"""batch_stats: fault isolation.

Poison pills make their dataset raise; crash pills kill the worker running them with a real segfault.
Each of four runs (three batching strategies, and one streamed as completed) uses
``on_error=slither.Retry(..., then="skip")``: a batch that crashed its worker is retried split in halves
until the crash is cornered on its pill, so slither should lose exactly the pills and nothing else. Every
dataset's result carries its own Welford state, and the host merges the results with Chan's formula;
the merge is checked against one serial pass over the valid datasets. Threads sharing one process cannot
isolate a crash: the third baseline runs them in a child interpreter and reports what died with it.

Each worker's fatal-error dump goes to a file (``capture_crash_dumps``); the report prints one line per
crash, and the whole dumps with ``--verbose``.
"""

from __future__ import annotations

import math
import os
import re
import sysconfig
import tempfile
from typing import Any

import slither
from slither.example._harness import Context, baseline_rows, finish, header, measure_pool
from slither.example._report import Invariant, Report, Row, interpreter_label
from slither.example.workloads import batch_stats as w

NAME = "batch_stats"
TITLE = "Batch statistics: fault-isolated parallel compute"
SUMMARY = "poison pills and real segfaults cost only themselves vs one fault killing every thread"
REQUIRES: list[tuple[str, str]] = []
MODULE = "slither.example.workloads.batch_stats"
_FRAME = re.compile(r'File "([^"]+)", line (\d+) in (\S+)')
_STDLIB = sysconfig.get_paths()["stdlib"]
_FAULTS = {"Segmentation fault": "SIGSEGV", "Aborted": "SIGABRT", "Bus error": "SIGBUS",
           "Floating point exception": "SIGFPE", "Illegal instruction": "SIGILL"}


def _strategies() -> list[tuple[str, slither.batching.Batching, bool]]:
    return [
        ("FixedBatch(10)", slither.FixedBatch(10), True),
        ("WeightedBatch(500 values)", slither.WeightedBatch(500, weight=lambda it: max(len(it["values"]), 1)), True),
        # Unordered: an ordered dispatch over a strategy that regroups the input can stall (reported).
        ("KeyPartition(kind), unordered", slither.KeyPartition(key=lambda it: it["kind"]), False),
        ("FixedBatch(10), as completed", slither.FixedBatch(10), False),
    ]


def retry_policy(plan: list[list[int]]) -> slither.Retry:
    """Enough attempts for split retries to halve the largest batch down to single items, and one more."""
    largest = max((len(b) for b in plan), default=1)
    return slither.Retry(attempts=math.ceil(math.log2(max(largest, 2))) + 2, backoff=0.0, then="skip")


def crash_lines(paths: list[str], verbose: bool) -> list[str]:
    """One line per crash dump (worker, pid, fault, where); the whole dump too when ``verbose``."""
    out = []
    for path in sorted(paths):
        with open(path, errors="replace") as f:
            dump = f.read()
        if not dump.strip():
            continue
        m = re.match(r"w(\d+)-pid(\d+)\.txt$", os.path.basename(path))
        worker, pid = (m.group(1), m.group(2)) if m else ("?", "?")
        fault = re.search(r"Fatal Python error: ([^\n]+)", dump)
        what = fault.group(1).strip() if fault else "fatal error"
        # The thread that faulted ("Current thread ..."), not the worker's reader thread listed beside it.
        current = re.search(r"Current thread [^\n]*\n(.*?)(?:\n\n|\nThread |\Z)", dump, re.S)
        frames = [f for f in _FRAME.findall(current.group(1) if current else dump) if not f[0].startswith(_STDLIB)]
        where = f" in {frames[0][2]} ({os.path.basename(frames[0][0])}:{frames[0][1]})" if frames else ""
        out.append(f"    crash: worker {worker}, pid {pid}: {_FAULTS.get(what, what)}{where}")
        if verbose:
            out += [f"      | {line}" for line in dump.rstrip().splitlines()]
    return out


def _dumped(directory: str) -> set[str]:
    """The dump files that hold a dump (every worker has one from its start; it stays empty unless it dies)."""
    return {f for f in os.listdir(directory) if os.path.getsize(os.path.join(directory, f)) > 0}


def _run_strategy(pool: slither.Pool, items: list[dict[str, Any]], ref: dict[str, Any], dumps: str, ctx: Context,
                  label: str, batching: Any, ordered: bool) -> tuple[Row, list[str]]:
    plan = batching.plan(items)
    policy = retry_policy(plan)
    seen = _dumped(dumps)
    restarts_before = sum(s.restarts for s in pool.stats().workers)

    def go() -> slither.Outcome:
        return pool.dispatch(f"{MODULE}:dataset_stats", items, per="item", batching=batching, ordered=ordered,
                             max_in_flight=2 * ctx.workers, on_error=policy)

    outcome, m = measure_pool(pool, go)
    replaced = sum(s.restarts for s in pool.stats().workers) - restarts_before
    new_dumps = [os.path.join(dumps, f) for f in _dumped(dumps) - seen]
    crashes = crash_lines(new_dumps, ctx.verbose)
    merged: tuple[int, float, float] = (0, 0.0, 0.0)
    for r in outcome.results:
        merged = w.chan(merged, tuple(r["state"]))  # type: ignore[arg-type]
    pills = ref["poison"] + ref["crash"]
    valid_lost = sum(1 for f in outcome.failures if not w.is_pill(f.item))
    valid_crashed = sum(1 for f in outcome.failures if not w.is_pill(f.item) and f.kind == "crash")
    pill_results = sum(1 for i in outcome.indices if w.is_pill(items[i]))
    by_kind: dict[str, int] = {}
    for f in outcome.failures:
        by_kind[f.kind] = by_kind.get(f.kind, 0) + 1
    invariants = [
        Invariant.equal("datasets accounted for (results + failures)", len(items),
                        len(outcome.results) + len(outcome.failures)),
        Invariant.equal("datasets lost = pills", pills, len(outcome.failures)),
        Invariant.equal("valid datasets lost", 0, valid_lost),
        Invariant.equal("pills that returned a result", 0, pill_results),
        *[Invariant(**i) for i in w.stats_invariants(ref, merged)],
        Invariant.equal("workers alive afterwards", ctx.workers,
                        sum(1 for s in pool.stats().workers if s.state == "ready")),
    ]
    row = Row(f"slither {label} ({ctx.workers} workers)", interpreter_label(), invariants, m.wall_s, m.mem_mb,
              f"on_error=Retry(attempts={policy.attempts}, then='skip'); results merged with Chan in the host")
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(by_kind.items())) or "none"
    details = [f"  {label}: {len(plan)} batches, {len(outcome.results)} results, failures: {kinds}; "
               f"{outcome.stats.retried_batches} batch retries, {replaced} workers replaced after "
               f"{len(crashes)} crash dumps; valid datasets that failed with a crashed batch: {valid_crashed}", *crashes]
    return row, details


def run(ctx: Context) -> Report:
    items = w.generate(ctx.size, ctx.seed)
    ref = w.expected(items)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="slither-crash-dumps-") as dumps, \
            slither.Pool(ctx.workers, init=f"{MODULE}:capture_crash_dumps", init_args=(dumps,)) as pool:
        report = Report(NAME, TITLE, header(ctx, pool, len(items)))
        report.details.append(f"  datasets: {ref['kinds']} ({ref['valid']} valid, "
                              f"{ref['poison'] + ref['crash']} pills)")
        for label, batching, ordered in _strategies():
            row, details = _run_strategy(pool, items, ref, dumps, ctx, label, batching, ordered)
            rows.append(row)
            report.details += details
    if not ctx.verbose and any("crash:" in d for d in report.details):
        report.details.append("  (full crash dumps: --verbose)")
    report.rows += rows
    brows, skipped = baseline_rows(ctx, NAME, items, ref)
    report.rows += brows
    lost = [i.observed for r in rows for i in r.invariants if i.name == "valid datasets lost" and not i.ok]
    notes = []
    if lost:
        notes.append(f"{len(lost)} of {len(rows)} slither runs lost valid datasets ({', '.join(map(str, lost))}) "
                     "besides the pills: see 'valid datasets that failed with a crashed batch' above")
    return finish(report, ctx, notes, skipped)
