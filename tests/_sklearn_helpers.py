"""Worker-importable scikit-learn pieces for tests/test_joblib.py (imported by name in the workers)."""

from __future__ import annotations

import ctypes
import os

import slither.worker
from sklearn.linear_model import LogisticRegression


class PidLogistic(LogisticRegression):
    """LogisticRegression that remembers which process fitted it, and can segfault on demand."""

    def __init__(self, C=1.0, crash=False, max_iter=200):
        super().__init__(C=C, max_iter=max_iter)
        self.crash = crash

    def fit(self, X, y, sample_weight=None):
        if self.crash:
            ctypes.string_at(0)  # a real segmentation fault, as a buggy C extension would cause
        self.fit_pid_ = os.getpid()
        self.fit_worker_ = slither.worker.info()["index"]  # -1 outside a slither worker
        return super().fit(X, y, sample_weight=sample_weight)


def fit_pid(estimator, X, y):
    """A scorer whose 'score' is the pid of the process that fitted the estimator."""
    return float(estimator.fit_pid_)


def fit_worker(estimator, X, y):
    """A scorer whose 'score' is the index of the slither worker that fitted the estimator (-1: none)."""
    return float(estimator.fit_worker_)


def data():
    from sklearn.datasets import make_classification

    return make_classification(n_samples=240, n_features=8, random_state=0)


GRID = {"C": [0.05, 1.0, 20.0]}
SMALL_GRID = {"C": [0.05, 1.0]}


def default_backend_results():
    """What joblib's default backend (loky) gives, as JSON-able lists; run in a child interpreter so
    that loky's reusable workers and resource tracker end with it."""
    from sklearn.model_selection import GridSearchCV, cross_val_score

    X, y = data()
    grid = GridSearchCV(PidLogistic(), GRID, cv=3, n_jobs=2).fit(X, y)
    small = GridSearchCV(PidLogistic(), SMALL_GRID, cv=3, n_jobs=2).fit(X, y)
    return {
        "grid": [list(grid.cv_results_[f"split{i}_test_score"]) for i in range(3)],
        "grid_best": grid.best_params_,
        "small": [list(small.cv_results_[f"split{i}_test_score"]) for i in range(3)],
        "cross_val_score": list(cross_val_score(PidLogistic(), X, y, cv=4, n_jobs=2)),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(default_backend_results()))
