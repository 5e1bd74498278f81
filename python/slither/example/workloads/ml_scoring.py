"""ml_scoring: session-scoped model state.

Two sessions train logistic regressions on different distributions, then score the same records. In
slither each session is pinned to one worker, whose module globals hold its model. The naive threaded
code keeps "the current model" in one shared slot, so a session can predict with the other's model.
"""

from __future__ import annotations

import os
import random
import threading
import uuid
from typing import Any

SIZES = {"small": (400, 400), "default": (2000, 2000), "large": (10000, 10000)}
CENTERS = {"A": ([1, 2, 1, 2], [3, 4, 3, 4]), "B": ([0, 0, 0, 0], [5, 5, 5, 5])}
REQUIRES = ("sklearn", "numpy")


def generate(size: str = "default", seed: int = 42) -> dict[str, Any]:
    n_train, n_test = SIZES[size]
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
    return {"train": train, "test": test}


def fit(X: list[list[float]], y: list[int]) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000, random_state=0).fit(X, y)


def reference_predictions(data: dict[str, Any], session: str) -> list[int]:
    model = fit(*data["train"][session])
    return [int(p) for p in model.predict([r["features"] for r in data["test"]])]


# -- worker side ------------------------------------------------------------------------------
_models: dict[str, Any] = {}
_prediction_count = 0


def train(X: list[list[float]], y: list[int]) -> dict[str, Any]:
    model_id = uuid.uuid4().hex[:12]
    model = fit(X, y)
    _models[model_id] = model
    return {"model_id": model_id, "pid": os.getpid(), "accuracy": round(float(model.score(X, y)), 4)}


def predict_batch(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each item names its model; a model this worker does not hold is an error payload, counted by the host."""
    global _prediction_count
    out = []
    for item in items:
        model = _models.get(item["model_id"])
        if model is None:
            out.append({"id": item["id"], "error": f"model {item['model_id']} is not on worker {os.getpid()}"})
            continue
        proba = model.predict_proba([item["features"]])[0]
        pred = int(proba.argmax())
        out.append({"id": item["id"], "prediction": pred, "confidence": round(float(proba[pred]), 4),
                    "model_id": item["model_id"]})
    _prediction_count += len(items)
    return out


def model_state() -> dict[str, Any]:
    return {"pid": os.getpid(), "model_ids": sorted(_models), "prediction_count": _prediction_count}


# -- threaded baselines -----------------------------------------------------------------------
def _available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in REQUIRES)


def _sessions(data: dict[str, Any], safe: bool) -> tuple[dict[str, list[int]], int]:
    shared: dict[str, Any] = {}
    counter = [0]
    lock = threading.Lock()
    test = data["test"]
    preds: dict[str, list[int]] = {}
    barrier = threading.Barrier(2)

    def session(name: str) -> None:
        model = fit(*data["train"][name])
        if safe:
            mine = model  # the session's own model, never shared
        else:
            shared["active"] = model  # the naive "current model" slot every session writes
        barrier.wait()
        out = []
        for k in range(0, len(test), 100):
            batch = test[k : k + 100]
            m = mine if safe else shared["active"]
            out += [int(p) for p in m.predict([r["features"] for r in batch])]
            if safe:
                with lock:
                    counter[0] += len(batch)
            else:
                n = counter[0]
                counter[0] = n + len(batch)
        preds[name] = out

    threads = [threading.Thread(target=session, args=(n,)) for n in CENTERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return preds, counter[0]


def baselines(data: dict[str, Any], threads: int) -> list[tuple[str, Any]]:
    if not _available():
        return []
    refs = {name: reference_predictions(data, name) for name in CENTERS}

    def run(safe: bool) -> tuple[list[dict], str]:
        preds, count = _sessions(data, safe)
        invs = []
        for name in CENTERS:
            wrong = sum(1 for a, b in zip(preds[name], refs[name]) if a != b)
            invs.append({"name": f"session {name}: predictions differing from its own model", "expected": 0,
                         "observed": wrong, "ok": wrong == 0})
        total = 2 * len(data["test"])
        invs.append({"name": "prediction counter", "expected": total, "observed": count, "ok": count == total})
        note = "each session keeps its own model; counter under a lock" if safe else \
            "one shared 'active model' slot and an unlocked counter"
        return invs, note

    return [("unsafe_threaded", lambda: run(False)), ("safe_threaded", lambda: run(True))]
