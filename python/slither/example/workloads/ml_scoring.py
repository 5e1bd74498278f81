"""ml_scoring: session-scoped model state.

Two sessions train logistic regressions on different distributions, then score the same records in
batches of 100 (``predict_proba`` on a 100-row matrix, on every side). In slither each session is pinned
to one worker, whose module globals hold its model. The naive threaded code keeps "the current model" in
one shared slot, as a service with one model registry does: whether a session then scores with the other
session's model depends on how the two threads happen to interleave, so the baselines run the whole
scenario repeatedly and count the trials in which it happened.

Which model scored a batch is read off its probabilities: each is compared with the probabilities that
session A's and session B's reference models (trained in the host on the same data) give that batch.
"""

from __future__ import annotations

import os
import random
import threading
import uuid
from typing import Any

SIZES = {"small": (400, 400, 10), "default": (2000, 2000, 20), "large": (10000, 10000, 50)}
"""Per size: training samples per session, test records, trials."""
CENTERS = {"A": ([1, 2, 1, 2], [3, 4, 3, 4]), "B": ([0, 0, 0, 0], [5, 5, 5, 5])}
BATCH = 100
BASELINE_REQUIRES = [("numpy", "numpy"), ("sklearn", "scikit-learn")]
_SAME = 1e-9
"""Two probability vectors from the same model on the same rows agree to far better than this."""


def generate(size: str = "default", seed: int = 42) -> dict[str, Any]:
    n_train, n_test, trials = SIZES[size]
    rng = random.Random(seed)
    train = {}
    for name, (c0, c1) in CENTERS.items():
        X, y = [], []
        for i in range(n_train):
            center = c0 if i % 2 == 0 else c1
            X.append([c + rng.gauss(0, 1) for c in center])
            y.append(i % 2)
        train[name] = (X, y)
    bases = ([2, 3, 2, 3], [3.5, 4.5, 3.5, 4.5], [0.5, 1.5, 0.5, 1.5])
    test = []
    for i in range(n_test):
        base = bases[0] if i % 3 == 0 else bases[1] if i % 2 == 0 else bases[2]
        test.append({"id": i, "features": [b + rng.gauss(0, 0.3) for b in base]})
    return {"train": train, "test": test, "trials": trials}


def fit(X: list[list[float]], y: list[int]) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000, random_state=0).fit(X, y)


def batches(test: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [test[k : k + BATCH] for k in range(0, len(test), BATCH)]


def expected(data: dict[str, Any]) -> dict[str, Any]:
    """Per session: its reference model's class-1 probability and prediction for every test record."""
    ref = {}
    X = [r["features"] for r in data["test"]]
    for name in CENTERS:
        proba = fit(*data["train"][name]).predict_proba(X)
        ref[name] = {"p1": [float(p[1]) for p in proba], "pred": [int(p.argmax()) for p in proba]}
    return ref


def whose(p1: list[float], ids: list[int], ref: dict[str, Any], session: str) -> str:
    """Which model produced these probabilities: "own", "other" or "neither" (a corrupted model)."""
    other = next(n for n in CENTERS if n != session)
    own_d = max(abs(p - ref[session]["p1"][i]) for p, i in zip(p1, ids))
    other_d = max(abs(p - ref[other]["p1"][i]) for p, i in zip(p1, ids))
    if own_d <= _SAME:
        return "own"
    return "other" if other_d <= _SAME else "neither"


# -- worker side ------------------------------------------------------------------------------
def preload() -> None:
    """Pool ``init``: import scikit-learn before the measured run, as the host already has for the baselines."""
    import sklearn.linear_model  # noqa: F401


_models: dict[str, Any] = {}
_prediction_count = 0


def train(X: list[list[float]], y: list[int]) -> dict[str, Any]:
    model_id = uuid.uuid4().hex[:12]
    model = fit(X, y)
    _models[model_id] = model
    return {"model_id": model_id, "pid": os.getpid(), "accuracy": round(float(model.score(X, y)), 4)}


def predict_batch(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``predict_proba`` over the batch's rows with the model the items name (one per session's pipe).

    A model this worker does not hold gives an error payload per item, which the host counts.
    """
    global _prediction_count
    out: list[dict[str, Any]] = []
    model_id = items[0]["model_id"]
    model = _models.get(model_id)
    if model is None or any(it["model_id"] != model_id for it in items):
        return [{"id": it["id"], "error": f"model {it['model_id']} is not on worker {os.getpid()}"} for it in items]
    proba = model.predict_proba([it["features"] for it in items])
    for it, p in zip(items, proba):
        pred = int(p.argmax())
        out.append({"id": it["id"], "prediction": pred, "confidence": float(p[pred]), "p1": float(p[1]),
                    "model_id": model_id})
    _prediction_count += len(items)
    return out


def model_state() -> dict[str, Any]:
    return {"pid": os.getpid(), "model_ids": sorted(_models), "prediction_count": _prediction_count}


def reset() -> int:
    global _prediction_count
    _models.clear()
    _prediction_count = 0
    return os.getpid()


# -- threaded baselines -----------------------------------------------------------------------
def _trial(data: dict[str, Any], safe: bool, counter: list[int], lock: threading.Lock) -> dict[str, list[list[float]]]:
    """Both sessions at once, each in its own thread: train, then score every batch. Returns the class-1
    probabilities each session got, per batch."""
    registry: dict[str, Any] = {}  # the naive code's "current model", shared by every session
    scored: dict[str, list[list[float]]] = {}

    def session(name: str) -> None:
        model = fit(*data["train"][name])
        if not safe:
            registry["model"] = model
        out = []
        for batch in batches(data["test"]):
            m = model if safe else registry["model"]
            out.append([float(p[1]) for p in m.predict_proba([r["features"] for r in batch])])
            if safe:
                with lock:
                    counter[0] += len(batch)
            else:
                counter[0] += len(batch)
        scored[name] = out

    threads = [threading.Thread(target=session, args=(n,)) for n in CENTERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return scored


def contamination(data: dict[str, Any], ref: dict[str, Any], trials: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(trials in which a session scored a batch with another model, such batches, batches matching neither)."""
    bad_trials = other = neither = 0
    for per_session in trials:
        hit = False
        for name, found in per_session.items():
            for batch, p1 in zip(batches(data["test"]), found):
                verdict = whose(p1, [r["id"] for r in batch], ref, name)
                other += verdict == "other"
                neither += verdict == "neither"
                hit |= verdict != "own"
        bad_trials += hit
    return bad_trials, other, neither


def scoring_invariants(data: dict[str, Any], found: tuple[int, int, int], predictions: int) -> list[dict[str, Any]]:
    trials = data["trials"]
    bad, other, neither = found
    total = trials * len(CENTERS) * len(data["test"])
    return [
        {"name": f"trials in which a session scored with a model not its own (of {trials})", "expected": 0,
         "observed": bad, "ok": bad == 0},
        {"name": "batches scored with the other session's model", "expected": 0, "observed": other, "ok": other == 0},
        {"name": "batches matching neither model", "expected": 0, "observed": neither, "ok": neither == 0},
        {"name": "predictions counted", "expected": total, "observed": predictions, "ok": predictions == total},
    ]


def baselines(data: dict[str, Any], ref: dict[str, Any], threads: int) -> list[tuple[str, Any]]:
    """Two threads (one per session), whatever ``threads`` says: the scenario has two sessions."""

    def run(safe: bool) -> tuple[list[dict[str, Any]], str]:
        counter = [0]
        lock = threading.Lock()
        trials = [_trial(data, safe, counter, lock) for _ in range(data["trials"])]
        note = ("each session keeps its own model; counter under a lock" if safe else
                "one shared 'current model' slot, trained and scored concurrently; unlocked counter")
        return scoring_invariants(data, contamination(data, ref, trials), counter[0]), (
            f"{note}; {data['trials']} trials")

    label = "2 threads, one per session"
    return [(f"unsafe_threaded ({label})", lambda: run(False)), (f"safe_threaded ({label})", lambda: run(True))]
