"""batch_stats: fault isolation.

Poison pills make their batch raise; crash pills kill the worker running them with a real segfault.
Under ``on_error="skip"`` exactly the items of the batches that held a pill are skipped (computed from
each strategy's batch plan), crashed workers are replaced, and every run completes. Threads sharing one
process cannot do that: one fault ends them all (the baseline shows it in a child interpreter).
"""

from __future__ import annotations

from typing import Any

import slither
from slither.example._harness import Context, baseline_rows, finish, header, worker_peak_mb
from slither.example._measure import measure
from slither.example._report import Invariant, Report, Row, interpreter_label
from slither.example.workloads import batch_stats as w

NAME = "batch_stats"
TITLE = "Batch statistics: fault-isolated parallel compute"
SUMMARY = "poison pills and real segfaults cost one batch each vs one fault killing every thread"
REQUIRES: list[tuple[str, str]] = []
MODULE = "slither.example.workloads.batch_stats"


def _strategies() -> list[tuple[str, slither.batching.Batching, bool]]:
    return [
        ("FixedBatch(10)", slither.FixedBatch(10), True),
        ("WeightedBatch(500 values)", slither.WeightedBatch(500, weight=lambda it: len(it["values"])), True),
        ("KeyPartition(kind)", slither.KeyPartition(key=lambda it: it["kind"]), True),
        ("FixedBatch(10), streamed as completed", slither.FixedBatch(10), False),
    ]


def _run_strategy(pool: slither.Pool, items: list[dict[str, Any]], label: str, batching: Any,
                  ordered: bool) -> tuple[list[Invariant], str]:
    plan = batching.plan(items)
    expected_skipped = sum(len(b) for b in plan if any(w.is_poison(items[i]) for i in b))
    crash_batches = sum(1 for b in plan if w.crashes([items[i] for i in b]))
    restarts_before = sum(s.restarts for s in pool.stats().workers)
    pool.broadcast(f"{MODULE}:reset")
    outcome = pool.dispatch(f"{MODULE}:compute_stats", items, per="batch", batching=batching, ordered=ordered,
                            max_in_flight=16 if ordered else 8, on_error="skip")
    restarts = sum(s.restarts for s in pool.stats().workers) - restarts_before
    states = [r.value for r in pool.broadcast(f"{MODULE}:worker_state").values()]
    folded_ids = [i for s in states for i in s["ids"]]
    failed_ids = {f.item["id"] for f in outcome.failures}
    merged: tuple[int, float, float] = (0, 0.0, 0.0)
    for s in states:
        merged = chan_state(merged, s["state"])
    reference = w.welford([x for i in folded_ids for x in items[i]["values"]])
    lost_with_crashes = len(outcome.results) - len(folded_ids)
    invariants = [
        Invariant.equal(f"{label}: succeeded + skipped", len(items), len(outcome.results) + len(outcome.failures)),
        Invariant.equal(f"{label}: skipped = items of batches with a pill", expected_skipped, len(outcome.failures)),
        Invariant.equal(f"{label}: workers replaced after crashes", crash_batches, restarts),
        Invariant.equal(f"{label}: failed batches left no trace in worker state", 0,
                        len(failed_ids.intersection(folded_ids))),
        Invariant.close(f"{label}: Chan merge of worker states = Welford over their values (mean)",
                        reference[1], merged[1]),
        Invariant.close(f"{label}: ... (variance)", w.variance(reference), w.variance(merged), rel=1e-8),
    ]
    detail = (f"  {label}: {len(plan)} batches, {len(outcome.results)} succeeded, {len(outcome.failures)} skipped, "
              f"{restarts} workers replaced; results whose worker state died in a crash: {lost_with_crashes}")
    return invariants, detail


def chan_state(a: Any, b: Any) -> tuple[int, float, float]:
    return w.chan(tuple(a), tuple(b))  # type: ignore[arg-type]


def run(ctx: Context) -> Report:
    items = w.generate(ctx.size, ctx.seed)
    with slither.Pool(ctx.workers) as pool:
        def go() -> list[tuple[list[Invariant], str]]:
            return [_run_strategy(pool, items, *s) for s in _strategies()]

        results, wall, host_peak = measure(go)
        report = Report(NAME, TITLE, header(ctx, pool, len(items)))
        peak = host_peak + worker_peak_mb(pool)
        pool.wait_ready(timeout=30)
        full_size = sum(1 for s in pool.stats().workers if s.state == "ready")
    kinds: dict[str, int] = {}
    for it in items:
        kinds[it["kind"]] = kinds.get(it["kind"], 0) + 1
    report.details.append(f"  datasets: {kinds}")
    invariants = [inv for invs, _ in results for inv in invs]
    invariants.append(Invariant.equal("pool at full size afterwards", ctx.workers, full_size))
    report.details += [d for _, d in results]
    report.rows.append(Row(f"slither ({ctx.workers} workers)", interpreter_label(), invariants, wall, peak,
                           "four strategies, on_error='skip'; crash pills segfault their worker"))
    report.rows += baseline_rows(ctx, NAME, items)
    return finish(report, ctx, ("a multi-step update of shared running statistics is corrupted only when a "
                          "thread switch lands inside it, which the GIL makes rare."),
                  "the threaded baselines skip poison pills; the crash pill runs only in the child interpreter")
