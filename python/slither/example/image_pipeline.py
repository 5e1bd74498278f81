"""image_pipeline: backpressure and memory.

Images are rendered in the workers, then thumbnailed through ``WeightedBatch(2,000,000 pixels)`` with at
most 4 batches in flight and ``on_error="skip"``. Every thumbnail must be 150 px wide and identical, pixel
for pixel, to a serial reference (computed once); the pool's measured maximum of batches in flight must
stay within 4. The baselines do the same work with a thread per image (what "just use threads" becomes)
and with a bounded thread pool; every mode's memory growth over the run is measured the same way.
"""

from __future__ import annotations

import slither
from slither.example._harness import Context, baseline_rows, finish, header, measure_pool
from slither.example._report import Invariant, Report, Row, interpreter_label
from slither.example.workloads import image_pipeline as w

NAME = "image_pipeline"
TITLE = "Image pipeline: backpressure and memory safety"
SUMMARY = "weighted batches with bounded in-flight work vs a thread per image (memory growth)"
REQUIRES = [("PIL", "Pillow")]
MODULE = "slither.example.workloads.image_pipeline"
MAX_IN_FLIGHT = 4
MAX_WEIGHT = 2_000_000


def run(ctx: Context) -> Report:
    specs = w.generate(ctx.size, ctx.seed)
    ref = w.expected(specs)
    with slither.Pool(ctx.workers, init=f"{MODULE}:preload") as pool:
        pool.broadcast(f"{MODULE}:reset")

        def go() -> slither.Outcome:
            rendered = pool.map_batches(f"{MODULE}:render_batch", specs, batch_size=20, max_in_flight=8)
            return pool.dispatch(f"{MODULE}:thumbnail_batch", rendered, per="batch",
                                 batching=slither.WeightedBatch(MAX_WEIGHT, weight=lambda im: im["pixels"]),
                                 max_in_flight=MAX_IN_FLIGHT, on_error="skip")

        out, m = measure_pool(pool, go)
        states = [r.value for r in pool.broadcast(f"{MODULE}:worker_state").values()]
        report = Report(NAME, TITLE, header(ctx, pool, len(specs)))
    invariants = [Invariant(**i) for i in w.thumb_invariants(specs, ref, {r["id"]: r["thumb"] for r in out.results})]
    invariants += [
        Invariant(f"most batches in flight (limit {MAX_IN_FLIGHT})", f"<= {MAX_IN_FLIGHT}",
                  out.stats.max_in_flight_seen, out.stats.max_in_flight_seen <= MAX_IN_FLIGHT),
        Invariant.equal("images processed, summed over workers", len(specs), sum(s["processed"] for s in states)),
    ]
    report.rows.append(Row(f"slither ({ctx.workers} workers)", interpreter_label(), invariants, m.wall_s, m.mem_mb,
                           f"WeightedBatch({MAX_WEIGHT:,} px), max_in_flight={MAX_IN_FLIGHT}, on_error='skip'"))
    kinds: dict[str, int] = {}
    for s in specs:
        kinds[s["label"]] = kinds.get(s["label"], 0) + 1
    report.details.append(f"  images: {kinds}; {out.stats.batches} thumbnail batches")
    report.details += [f"  worker pid {s['pid']}: {s['processed']} images" for s in states]
    report.details.append(f"  the {ctx.workers} workers held {m.workers_before_mb:.1f} MiB resident before the run "
                          "(their interpreters, Pillow imported); that is not part of mem +MiB")
    rows, skipped = baseline_rows(ctx, NAME, specs, ref)
    report.rows += rows
    notes = []
    per_image = next((r for r in rows if r.mode.startswith("thread_per_image") and r.mem_mb is not None), None)
    if per_image is not None and m.mem_mb > 0:
        notes.append(f"memory growth in this run: a thread per image {per_image.mem_mb:.0f} MiB, slither "
                     f"{m.mem_mb:.0f} MiB (host and workers), {per_image.mem_mb / m.mem_mb:.1f}x")
    return finish(report, ctx, [], notes + skipped)
