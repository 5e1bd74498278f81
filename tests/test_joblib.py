"""joblib's Parallel, and scikit-learn's n_jobs through it, on slither workers (real scikit-learn)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest

sklearn = pytest.importorskip("sklearn")
joblib = pytest.importorskip("joblib")

import numpy as np  # noqa: E402
import slither  # noqa: E402
import slither.joblib  # noqa: E402
from _helpers import pid, segfault_on, square  # noqa: E402
from _sklearn_helpers import GRID, SMALL_GRID, PidLogistic, data, fit_pid, fit_worker  # noqa: E402
from joblib import Parallel, delayed, parallel_config  # noqa: E402
from sklearn.exceptions import FitFailedWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402

slither.joblib.register()

X, Y = data()
SCORING = {"acc": "accuracy", "pid": fit_pid, "worker": fit_worker}


@pytest.fixture(scope="module")
def reference():
    """The default backend's results, computed in a child interpreter (loky keeps its workers for reuse;
    they end with that child)."""
    helpers = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sklearn_helpers.py")
    out = subprocess.run([sys.executable, helpers], capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout)


def _grid_search(**kwargs):
    search = GridSearchCV(PidLogistic(), GRID, cv=3, n_jobs=2, scoring=SCORING, refit="acc", **kwargs)
    return search.fit(X, Y)


def _scores(search, key="acc"):
    return np.array([search.cv_results_[f"split{i}_test_{key}"] for i in range(3)])


@pytest.mark.timeout(180)
def test_grid_search_gives_the_default_backends_results_and_runs_every_fit_in_a_slither_worker(reference):
    with slither.Pool(workers=2) as pool:
        worker_pids = {w.pid for w in pool.workers_info()}
        with parallel_config(backend="slither", pool=pool):
            search = _grid_search()
        fit_pids = {int(p) for i in range(3) for p in search.cv_results_[f"split{i}_test_pid"]}
        assert pool.stats().workers  # the pool is still open and usable after the search
    np.testing.assert_array_equal(_scores(search), np.array(reference["grid"]))
    assert search.best_params_ == reference["grid_best"]
    assert fit_pids <= worker_pids and os.getpid() not in fit_pids
    assert {int(w) for w in search.cv_results_["split0_test_worker"]} <= {0, 1}


@pytest.mark.timeout(180)
def test_cross_val_score_on_the_backends_own_pool_matches_the_default_backend(reference):
    with parallel_config(backend="slither"):
        scores = cross_val_score(PidLogistic(), X, Y, cv=4, n_jobs=2)
        workers = cross_val_score(PidLogistic(), X, Y, cv=4, n_jobs=2, scoring=fit_worker)
        pids = cross_val_score(PidLogistic(), X, Y, cv=4, n_jobs=2, scoring=fit_pid)
    np.testing.assert_array_equal(scores, np.array(reference["cross_val_score"]))
    assert set(workers) <= {0.0, 1.0}  # every fit ran in slither worker 0 or 1, never in the host
    assert os.getpid() not in {int(p) for p in pids}


@pytest.mark.timeout(180)
def test_a_segfault_in_a_grid_search_fails_only_its_own_fits_with_slithers_crash_details(reference):
    grid = {**SMALL_GRID, "crash": [False, True]}
    with slither.Pool(workers=2) as pool, parallel_config(backend="slither", pool=pool):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            search = GridSearchCV(PidLogistic(), grid, cv=3, n_jobs=2, error_score=np.nan).fit(X, Y)
        restarts = sum(w.restarts for w in pool.stats().workers)
    crashed = [i for i, p in enumerate(search.cv_results_["params"]) if p["crash"]]
    healthy = [i for i, p in enumerate(search.cv_results_["params"]) if not p["crash"]]
    for i in range(3):
        split = search.cv_results_[f"split{i}_test_score"]
        assert np.isnan(split[crashed]).all()
        np.testing.assert_array_equal(split[healthy], reference["small"][i])
    assert search.best_params_["crash"] is False
    assert restarts >= 1  # the workers really died and were replaced
    failed = [str(w.message) for w in caught if issubclass(w.category, FitFailedWarning)]
    assert failed, [str(w.message) for w in caught]
    assert "6 fits failed out of a total of 12" in failed[0]
    assert "WorkerCrashed" in failed[0] and "SIGSEGV" in failed[0] and "pid" in failed[0]


@pytest.mark.timeout(180)
def test_a_segfaulting_fit_under_error_score_raise_raises_worker_crashed():
    with parallel_config(backend="slither", n_jobs=2), pytest.raises(slither.WorkerCrashed, match="SIGSEGV"):
        GridSearchCV(PidLogistic(crash=True), {"C": [0.05, 1.0]}, cv=2, n_jobs=2, error_score="raise").fit(X, Y)


@pytest.mark.timeout(120)
def test_plain_parallel_runs_on_the_given_pool_and_a_crash_fails_the_call_but_not_the_pool():
    with slither.Pool(workers=2) as pool, parallel_config(backend="slither", pool=pool):
        pids = set(Parallel(n_jobs=2)(delayed(pid)(i) for i in range(8)))
        assert pids <= {w.pid for w in pool.workers_info()}
        with pytest.raises(slither.WorkerCrashed, match="SIGSEGV"):
            Parallel(n_jobs=2)(delayed(segfault_on)(i) for i in range(6))
        assert Parallel(n_jobs=2)(delayed(square)(i) for i in range(5)) == [0, 1, 4, 9, 16]
        assert pool.map(square, [3]) == [9]


def test_bad_backend_arguments_are_named():
    with pytest.raises(TypeError, match="slither.Pool"):
        slither.joblib.SlitherBackend(pool="not a pool")
    with pytest.raises(ValueError, match="n_jobs == 0"):
        slither.joblib.SlitherBackend().effective_n_jobs(0)


@pytest.mark.timeout(120)
def test_with_a_given_pool_scikit_learns_default_n_jobs_uses_the_whole_pool():
    with slither.Pool(workers=2) as pool, parallel_config(backend="slither", pool=pool):
        workers = cross_val_score(PidLogistic(), X, Y, cv=4, scoring=fit_worker)  # n_jobs=None
    assert set(workers) <= {0.0, 1.0}
