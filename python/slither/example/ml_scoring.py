"""ml_scoring: session-scoped state.

Two sessions (strict affinity) train logistic regressions concurrently on different distributions, then
score the same records through a pipe each. Every prediction must equal the prediction of a reference
model trained in the host on the same data, each session's model must live only on its own worker, and
no prediction may come back as an error payload.
"""

from __future__ import annotations

import threading
from typing import Any

import slither
from slither.example._harness import Context, baseline_rows, finish, header, worker_peak_mb
from slither.example._measure import measure
from slither.example._report import Invariant, Report, Row, interpreter_label
from slither.example.workloads import ml_scoring as w

NAME = "ml_scoring"
TITLE = "ML scoring: session-scoped state isolation"
SUMMARY = "two models trained and used in pinned sessions vs one shared model slot in threads"
REQUIRES = [("sklearn", "scikit-learn")]
MODULE = "slither.example.workloads.ml_scoring"


def _pipe(model_id: str) -> slither.Pipe:
    return (
        slither.Pipe("ml_scoring")
        .local("enrich", lambda r: {**r, "model_id": model_id})
        .worker("predict", f"{MODULE}:predict_batch", batch_size=100, on_error="skip")
        .router("confidence", [(lambda p: p.get("confidence", 0) >= 0.9, "high_confidence"),
                               (lambda p: "error" in p or p["confidence"] < 0.6, "low_confidence")])
    )


def run(ctx: Context) -> Report:
    data = w.generate(ctx.size, ctx.seed)
    refs = {name: w.reference_predictions(data, name) for name in w.CENTERS}
    with slither.Pool(ctx.workers) as pool:
        def go() -> dict[str, Any]:
            sessions = {name: pool.session(f"model-{name}") for name in w.CENTERS}
            trained: dict[str, Any] = {}
            results: dict[str, Any] = {}

            def train(name: str) -> None:
                trained[name] = sessions[name].call(f"{MODULE}:train", *data["train"][name])

            def score(name: str) -> None:
                results[name] = _pipe(trained[name]["model_id"]).run(data["test"], pool=pool,
                                                                     session=sessions[name])

            for phase in (train, score):
                threads = [threading.Thread(target=phase, args=(n,)) for n in w.CENTERS]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            states = [r.value for r in pool.broadcast(f"{MODULE}:model_state").values()]
            out = {"sessions": {n: (s.worker, s.pid) for n, s in sessions.items()}, "trained": trained,
                   "results": results, "states": states}
            for s in sessions.values():
                s.close()
            return out

        out, wall, host_peak = measure(go)
        peak = host_peak + worker_peak_mb(pool)
        report = Report(NAME, TITLE, header(ctx, pool, len(data["test"])))

    invariants: list[Invariant] = []
    preds: dict[str, dict[int, int]] = {}
    for name in w.CENTERS:
        res = out["results"][name]
        items = [p for bucket in res.outputs.values() for p in bucket]
        errors = sum(1 for p in items if "error" in p) + len(res.failures)
        preds[name] = {p["id"]: p["prediction"] for p in items if "prediction" in p}
        wrong = sum(1 for i, ref in enumerate(refs[name]) if preds[name].get(i) != ref)
        model_id = out["trained"][name]["model_id"]
        holders = sorted(s["pid"] for s in out["states"] if model_id in s["model_ids"])
        pid = out["sessions"][name][1]
        invariants += [
            Invariant.equal(f"session {name}: error payloads and failures", 0, errors),
            Invariant.equal(f"session {name}: predictions differing from the host's reference model", 0, wrong),
            Invariant.equal(f"session {name}: workers holding its model", [pid], holders),
        ]
        buckets = {k: len(v) for k, v in sorted(res.outputs.items())}
        report.details.append(f"  session {name}: worker {out['sessions'][name][0]} (pid {pid}), model "
                              f"{model_id}, training accuracy {out['trained'][name]['accuracy']}, buckets {buckets}")
    divergence = sum(1 for i in preds["A"] if preds["A"].get(i) != preds["B"].get(i))
    report.details.append(f"  records the two models classify differently: {divergence} of {len(data['test'])}")
    report.rows.append(Row(f"slither ({ctx.workers} workers)", interpreter_label(), invariants, wall, peak,
                           "two pinned sessions, trained and scored concurrently"))
    report.rows += baseline_rows(ctx, NAME, data)
    return finish(report, ctx, ("the shared model slot is overwritten whatever the GIL does; only the lost "
                          "counter updates depend on thread switches."))
