"""text_analysis: shared accumulator races.

Naive threaded code does ``index[word] += count`` and ``doc_count += 1`` on shared state; without the GIL
those read-modify-writes lose updates. In slither each worker accumulates into its own module globals,
in its own process, and the host merges the per-worker states, collected from every worker by broadcast.

Pipe: prepare (host) → analyze (workers, batches of 50; stopwords read from a slither.Store) → classify
(router on sentiment).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import slither
from slither.example._harness import Context, baseline_rows, finish, header, measure_pool
from slither.example._report import Invariant, Report, Row, interpreter_label
from slither.example.workloads import text_analysis as w

NAME = "text_analysis"
TITLE = "Text analysis: shared accumulator races"
SUMMARY = "word counts accumulated per worker vs into shared dicts from threads (lost updates)"
REQUIRES: list[tuple[str, str]] = []
MODULE = "slither.example.workloads.text_analysis"


def _prepare(doc: tuple[int, str]) -> dict[str, Any]:
    i, text = doc
    return {"id": i, "text": text.strip()}


def build_pipe() -> slither.Pipe:
    return (
        slither.Pipe("text_analysis")
        .local("prepare", _prepare)
        .worker("analyze", f"{MODULE}:analyze_batch", batch_size=50, on_error="skip")
        .router("classify", lambda r: w.classify(r["sentiment"]))
    )


def run(ctx: Context) -> Report:
    docs = w.generate(ctx.size, ctx.seed)
    ref = w.expected(docs)
    store = slither.Store()
    store.reload("stopwords", dict.fromkeys(w.STOPWORDS, True))
    with slither.Pool(ctx.workers, store=store) as pool:
        pool.broadcast(f"{MODULE}:reset")

        def go() -> tuple[Any, dict[int, Any]]:
            result = build_pipe().run(enumerate(docs), pool=pool)
            return result, pool.broadcast(f"{MODULE}:worker_stats")

        (result, per_worker), m = measure_pool(pool, go)
        report = Report(NAME, TITLE, header(ctx, pool, len(docs)))

    merged: Counter[str] = Counter()
    for reply in per_worker.values():
        merged.update(reply.value["index"])
    doc_counts = {r.pid: r.value["doc_count"] for r in per_worker.values()}
    buckets = {k: len(v) for k, v in result.outputs.items()}
    invariants = [Invariant(**i) for i in w.invariants(docs, ref, sum(doc_counts.values()), dict(merged), buckets)]
    invariants.append(Invariant.equal("failed items", 0, len(result.failures)))
    report.rows.append(Row(f"slither ({ctx.workers} workers)", interpreter_label(), invariants, m.wall_s, m.mem_mb,
                           "per-worker globals, merged in the host after broadcast"))
    report.details += [f"  worker pid {pid}: {n} documents" for pid, n in doc_counts.items()]
    top = ", ".join(f"{word} {n}" for word, n in merged.most_common(5))
    report.details.append(f"  top words (merged): {top}")
    report.details.append(f"  the {ctx.workers} workers held {m.workers_before_mb:.1f} MiB resident before the run "
                          "(their interpreters); that is not part of mem +MiB")
    rows, skipped = baseline_rows(ctx, NAME, docs, ref)
    report.rows += rows
    return finish(report, ctx, [], skipped)
