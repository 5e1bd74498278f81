"""image_pipeline: backpressure and memory.

Images are rendered in the workers, then thumbnailed through ``WeightedBatch(2,000,000 pixels)`` with at
most 4 batches in flight and ``on_error="skip"``. Every thumbnail must be 150 px wide and identical, pixel
for pixel, to a serial reference; the pool's measured maximum of batches in flight must stay within 4. An
unbounded pool of 16 threads doing the same work is the baseline: its peak memory is measured too.
"""

from __future__ import annotations

import slither
from slither.example._harness import Context, baseline_rows, finish, header
from slither.example._measure import measure
from slither.example._report import Invariant, Report, Row, interpreter_label
from slither.example.workloads import image_pipeline as w

NAME = "image_pipeline"
TITLE = "Image pipeline: backpressure and memory safety"
SUMMARY = "weighted batches with bounded in-flight work vs an unbounded thread pool (peak memory)"
REQUIRES = [("PIL", "Pillow")]
MODULE = "slither.example.workloads.image_pipeline"
MAX_IN_FLIGHT = 4


def run(ctx: Context) -> Report:
    specs = w.generate(ctx.size, ctx.seed)
    ref = w.reference(specs)
    with slither.Pool(ctx.workers) as pool:
        pool.broadcast(f"{MODULE}:reset")

        def go():
            rendered = pool.map_batches(f"{MODULE}:render_batch", specs, batch_size=20, max_in_flight=8)
            out = pool.dispatch(f"{MODULE}:thumbnail_batch", rendered, per="batch",
                                batching=slither.WeightedBatch(2_000_000, weight=lambda im: im["pixels"]),
                                max_in_flight=MAX_IN_FLIGHT, on_error="skip")
            return out

        out, wall, host_peak = measure(go)
        stats = pool.stats()
        states = [r.value for r in pool.broadcast(f"{MODULE}:worker_state").values()]
        report = Report(NAME, TITLE, header(ctx, pool, len(specs)))
    thumbs = {r["id"]: w.pixels(r["thumb"]) for r in out.results}
    wrong = sum(1 for i, px in thumbs.items() if px != ref[i])
    narrow = sum(1 for (size, _) in thumbs.values() if size[0] != w.TARGET_WIDTH)
    invariants = [
        Invariant.equal("thumbnails", len(specs), len(thumbs)),
        Invariant.equal(f"thumbnails not {w.TARGET_WIDTH} px wide", 0, narrow),
        Invariant.equal("thumbnails differing from the serial reference", 0, wrong),
        Invariant(f"most batches in flight (limit {MAX_IN_FLIGHT})", f"<= {MAX_IN_FLIGHT}",
                  out.stats.max_in_flight_seen, out.stats.max_in_flight_seen <= MAX_IN_FLIGHT),
        Invariant.equal("images processed, summed over workers", len(specs), sum(s["processed"] for s in states)),
    ]
    worker_peaks = {ws.pid: ws.peak_rss_bytes / 2**20 for ws in stats.workers}
    peak = host_peak + sum(worker_peaks.values())
    report.rows.append(Row(f"slither ({ctx.workers} workers)", interpreter_label(), invariants, wall, peak,
                           f"WeightedBatch(2,000,000 px), max_in_flight={MAX_IN_FLIGHT}, on_error='skip'"))
    by_pid = {s["pid"]: s["processed"] for s in states}
    report.details += [f"  worker pid {pid}: {by_pid.get(pid, 0)} images, peak resident memory {mb:.1f} MiB"
                       for pid, mb in worker_peaks.items()]
    kinds: dict[str, int] = {}
    for s in specs:
        kinds[s["label"]] = kinds.get(s["label"], 0) + 1
    report.details.append(f"  images: {kinds}; {out.stats.batches} thumbnail batches")
    report.rows += baseline_rows(ctx, NAME, specs)
    return finish(report, ctx, None,
                  "the thread baselines report corruption only if they observe it; Pillow releases the GIL "
                  "while resizing, so these threads really run in parallel even on a GIL build")
