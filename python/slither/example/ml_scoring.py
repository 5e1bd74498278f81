"""ml_scoring: session-scoped state.

Two sessions (strict affinity) train logistic regressions concurrently on different distributions, then
score the same records through a pipe each, in batches of 100: each session in its own host thread, train
then score, exactly as the threaded baselines do; the whole scenario is repeated for a number of trials. Which model scored each record is read off
its probabilities (compared with reference models trained in the host on the same data); each session's
models must live only on its own worker, and no prediction may come back as an error payload.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import slither
from slither.example._harness import Context, baseline_rows, finish, header, measure_pool
from slither.example._report import Invariant, Report, Row, interpreter_label
from slither.example.workloads import ml_scoring as w

NAME = "ml_scoring"
TITLE = "ML scoring: session-scoped state isolation"
SUMMARY = "two models trained and used in pinned sessions vs one shared model slot in threads"
REQUIRES = [("sklearn", "scikit-learn")]
MODULE = "slither.example.workloads.ml_scoring"
PRELOAD = ["sklearn.linear_model"]


def _pipe(model_id: str) -> slither.Pipe:
    return (
        slither.Pipe("ml_scoring")
        .local("enrich", lambda r: {**r, "model_id": model_id})
        .worker("predict", f"{MODULE}:predict_batch", batch_size=w.BATCH, on_error="skip")
        .router("confidence", [(lambda p: "error" not in p and p["confidence"] >= 0.9, "high_confidence"),
                               (lambda p: "error" in p or p["confidence"] < 0.6, "low_confidence")])
    )


def _both(fn: Callable[[str], None]) -> None:
    threads = [threading.Thread(target=fn, args=(n,)) for n in w.CENTERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _trial(pool: slither.Pool, data: dict[str, Any], t: int) -> dict[str, Any]:
    """Both sessions at once, each in its own thread (as the baselines): train on its pinned worker, then
    score every record through its pipe."""
    sessions = {name: pool.session(f"model-{name}-{t}") for name in w.CENTERS}
    trained: dict[str, Any] = {}
    results: dict[str, Any] = {}

    def session(name: str) -> None:
        trained[name] = sessions[name].call(f"{MODULE}:train", *data["train"][name])
        results[name] = _pipe(trained[name]["model_id"]).run(data["test"], pool=pool, session=sessions[name])

    _both(session)
    out = {"pids": {n: s.pid for n, s in sessions.items()}, "trained": trained, "results": results}
    for s in sessions.values():
        s.close()
    return out


def _replacement_ms(pool: slither.Pool) -> float:
    """SIGKILLs worker 0 and times until its replacement (forked from the preload template) is ready."""
    before = pool.workers_info()[0]
    t0 = time.perf_counter()
    os.kill(before.pid, signal.SIGKILL)
    deadline = t0 + 60
    while time.perf_counter() < deadline:
        now = pool.workers_info()[0]
        if now.generation != before.generation and now.state == "ready":
            break
        time.sleep(0.0005)
    return (time.perf_counter() - t0) * 1000


def run(ctx: Context) -> Report:
    data = w.generate(ctx.size, ctx.seed)
    ref = w.expected(data)
    trials = data["trials"]
    t0 = time.perf_counter()
    # Workers fork from a template that imported scikit-learn once: a replaced worker is back in milliseconds.
    with slither.Pool(ctx.workers, init=f"{MODULE}:preload", preload=PRELOAD) as pool:
        started_s = time.perf_counter() - t0
        pool.broadcast(f"{MODULE}:reset")
        outs, m = measure_pool(pool, lambda: [_trial(pool, data, t) for t in range(trials)])
        states = [r.value for r in pool.broadcast(f"{MODULE}:model_state").values()]
        report = Report(NAME, TITLE, header(ctx, pool, len(data["test"])))
        replaced_ms = _replacement_ms(pool)

    errors = wrong = 0
    found: list[dict[str, list[list[float]]]] = []
    misplaced = 0
    for out in outs:
        per_session = {}
        for name in w.CENTERS:
            res = out["results"][name]
            items = sorted((p for bucket in res.outputs.values() for p in bucket), key=lambda p: p["id"])
            errors += sum(1 for p in items if "error" in p) + len(res.failures)
            scored = [p for p in items if "p1" in p]
            wrong += sum(1 for p in scored if p["prediction"] != ref[name]["pred"][p["id"]])
            by_id = {p["id"]: p["p1"] for p in scored}
            per_session[name] = [[by_id.get(r["id"], -1.0) for r in b] for b in w.batches(data["test"])]
            model_id = out["trained"][name]["model_id"]
            misplaced += sum(1 for s in states if model_id in s["model_ids"] and s["pid"] != out["pids"][name])
        found.append(per_session)
    counted = sum(s["prediction_count"] for s in states)
    invariants = [Invariant(**i) for i in w.scoring_invariants(data, w.contamination(data, ref, found), counted)]
    invariants += [
        Invariant.equal("error payloads and failures", 0, errors),
        Invariant.equal("predictions differing from the host's reference model", 0, wrong),
        Invariant.equal("models held by a worker other than their session's", 0, misplaced),
    ]
    report.rows.append(Row(f"slither ({ctx.workers} workers, 2 sessions)", interpreter_label(), invariants, m.wall_s,
                           m.mem_mb, f"two pinned sessions, trained and scored concurrently; {trials} trials"))
    last = outs[-1]
    for name in w.CENTERS:
        buckets = {k: len(v) for k, v in sorted(last["results"][name].outputs.items())}
        report.details.append(f"  last trial, session {name}: worker pid {last['pids'][name]}, training accuracy "
                              f"{last['trained'][name]['accuracy']}, buckets {buckets}")
    report.details.append(f"  warm start (preload={PRELOAD}): pool ready in {started_s:.2f} s; a SIGKILLed worker "
                          f"was replaced and ready again in {replaced_ms:.0f} ms")
    differ = sum(1 for a, b in zip(ref["A"]["pred"], ref["B"]["pred"]) if a != b)
    report.details.append(f"  records the two reference models classify differently: {differ} of {len(data['test'])}")
    rows, skipped = baseline_rows(ctx, NAME, data, ref)
    report.rows += rows
    return finish(report, ctx, [], skipped)
