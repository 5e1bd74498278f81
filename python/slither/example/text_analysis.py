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
from slither.example._harness import Context, baseline_rows, finish, header, worker_peak_mb
from slither.example._measure import measure
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
        .router("classify", [(lambda r: r["sentiment"] > w.THRESHOLD, "positive"),
                             (lambda r: r["sentiment"] < -w.THRESHOLD, "negative")])
    )


def run(ctx: Context) -> Report:
    docs = w.generate(ctx.size, ctx.seed)
    reference = w.serial_reference(docs)
    store = slither.Store()
    store.reload("stopwords", dict.fromkeys(w.STOPWORDS, True))
    with slither.Pool(ctx.workers, store=store) as pool:
        pool.broadcast(f"{MODULE}:reset")

        def go() -> tuple[Any, dict[int, Any]]:
            result = build_pipe().run(enumerate(docs), pool=pool)
            return result, pool.broadcast(f"{MODULE}:worker_stats")

        (result, per_worker), wall, host_peak = measure(go)
        peak = host_peak + worker_peak_mb(pool)
        report = Report(NAME, TITLE, header(ctx, pool, len(docs)))

    merged: Counter[str] = Counter()
    for reply in per_worker.values():
        merged.update(reply.value["index"])
    doc_counts = {r.pid: r.value["doc_count"] for r in per_worker.values()}
    buckets = {k: len(v) for k, v in sorted(result.outputs.items())}
    wrong = sum(1 for word in reference if merged.get(word) != reference[word])
    invariants = [
        Invariant.equal("documents counted (sum over workers)", len(docs), sum(doc_counts.values())),
        Invariant.equal("word occurrences (merged)", sum(reference.values()), sum(merged.values())),
        Invariant.equal("words with a wrong count", 0, wrong),
        Invariant.equal("documents classified (sum of buckets)", len(docs), sum(buckets.values())),
        Invariant.equal("failed items", 0, len(result.failures)),
    ]
    report.rows.append(Row(f"slither ({ctx.workers} workers)", interpreter_label(), invariants, wall, peak,
                           "per-worker globals, merged in the host after broadcast"))
    report.details += [f"  buckets: {buckets}"]
    report.details += [f"  worker pid {pid}: {n} documents" for pid, n in doc_counts.items()]
    top = ", ".join(f"{word} {n}" for word, n in merged.most_common(5))
    report.details.append(f"  top words (merged): {top}")
    report.rows += baseline_rows(ctx, NAME, docs)
    return finish(report, ctx, ("lost updates to a shared dict happen only when a thread switch lands between "
                          "the read and the write, which the GIL makes rare."))
