"""A joblib backend: ``joblib.Parallel`` (and so scikit-learn's ``n_jobs``) runs on slither workers.

    import joblib, slither.joblib
    slither.joblib.register()
    with joblib.parallel_config(backend="slither", n_jobs=4):
        GridSearchCV(model, grid, n_jobs=4).fit(X, y)      # every fit runs in a slither worker

Data flow::

    joblib.Parallel ── BatchedCalls ──▶ SlitherBackend.submit ── Pool.submit ──▶ worker
          ▲                                    │ (crashed? split, rerun each call alone)
          └──── result list / exception ◀── _Task future ◀── pool future ◀── worker

Each joblib task (a ``BatchedCalls``: one or more calls) travels to a worker by value with cloudpickle.
The backend starts a pool of ``n_jobs`` workers when a ``Parallel`` call begins and stops it when the call
ends, unless you hand it one (``parallel_config(backend="slither", pool=pool)``), which it uses and leaves
open. A worker that dies fails only its own task: the pool replaces it and the other tasks go on. When the
dead task held several calls, each is rerun alone, so only the call that kills its worker fails. When that
call is one of scikit-learn's fits (``GridSearchCV``, ``cross_val_score``, ``cross_validate``...), the fit
is reported the way scikit-learn reports a fit that raised: its score is ``error_score`` and the
``FitFailedWarning`` carries slither's :class:`~slither.errors.WorkerCrashed` message (worker, pid, signal);
with ``error_score="raise"`` the search raises that ``WorkerCrashed``.
"""

from __future__ import annotations

import concurrent.futures
import copy
import threading
from collections.abc import Callable
from typing import Any

try:
    from joblib import parallel as _jp  # the installed joblib, not this module (absolute import)
    from joblib._parallel_backends import (
        AutoBatchingMixin,
        FallbackToBackend,
        ParallelBackendBase,
        SequentialBackend,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("slither.joblib needs joblib: pip install joblib (scikit-learn installs it)") from exc

from slither import errors
from slither.pool import Pool

__all__ = ["SlitherBackend", "register"]

BACKEND_NAME = "slither"


def register(name: str = BACKEND_NAME, make_default: bool = False) -> None:
    """Makes ``joblib.parallel_config(backend="slither")`` (or ``name``) run on slither workers.

    Args:
        name: the backend name joblib will know it by.
        make_default: also make it joblib's default backend, with no ``parallel_config`` needed.
    """
    _jp.register_parallel_backend(name, SlitherBackend, make_default=make_default)


class SlitherBackend(AutoBatchingMixin, ParallelBackendBase):
    """joblib's process backend, on a :class:`slither.Pool`.

    Args (as ``joblib.parallel_config(backend="slither", **args)``):
        pool: an open :class:`slither.Pool` to run on; it is used as it is (``n_jobs`` only bounds how
            many tasks joblib keeps in flight; ``None`` means the pool's size) and left open. Without one, each ``Parallel`` call gets a
            fresh pool of ``n_jobs`` workers, stopped when the call ends.
        **pool_options: passed to :class:`slither.Pool` when the backend starts its own
            (``max_tasks_per_worker``, ``max_memory_per_worker``, ``init``, ``env``, ...).

    Nested ``Parallel`` calls made inside a worker run on threads there (joblib's default for nesting).
    """

    supports_retrieve_callback = True
    supports_return_generator = True
    supports_timeout = True
    supports_inner_max_num_threads = True
    supports_sharedmem = False
    uses_threads = False

    def __init__(
        self,
        nesting_level: int | None = None,
        inner_max_num_threads: int | None = None,
        pool: Pool | None = None,
        **pool_options: Any,
    ) -> None:
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads)
        if pool is not None and not isinstance(pool, Pool):
            raise TypeError(f"pool= must be a slither.Pool, got {type(pool).__name__}")
        if pool is not None and pool_options:
            raise TypeError(f"pool= is an existing pool: options {sorted(pool_options)} cannot apply to it")
        self._given_pool = pool
        if pool is not None:
            self.default_n_jobs = -1  # n_jobs=None (scikit-learn's default) means the whole given pool
        self._pool_options = pool_options
        self._pool: Pool | None = pool
        self._n_jobs = 1
        self._tasks: set[_Task] = set()
        self._lock = threading.Lock()

    # -- sizing and lifecycle (called by joblib.Parallel) ----------------------------------------
    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """How many tasks can run at once: ``n_jobs`` (negative counts back from the CPU count)."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            n = 1
        elif n_jobs < 0:
            n = max(_jp.cpu_count() + 1 + n_jobs, 1)
        else:
            n = int(n_jobs)
        if self._given_pool is not None:
            return min(n, self._given_pool.size) if n_jobs is not None and n_jobs > 0 else self._given_pool.size
        return n

    def configure(
        self,
        n_jobs: int | None = 1,
        parallel: Any = None,
        prefer: str | None = None,
        require: str | None = None,
        **backend_kwargs: Any,
    ) -> int:
        """Starts a pool of ``n_jobs`` workers (or checks the given one); returns the task concurrency."""
        n = self.effective_n_jobs(n_jobs)
        if n == 1 and self._given_pool is None:
            # One worker buys nothing over running in the host: joblib's own convention.
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self.parallel = parallel
        self._n_jobs = n
        if self._given_pool is not None:
            if self._given_pool.closed:
                raise errors.PoolClosed("the slither pool given to the joblib backend is closed")
        elif self._pool is None or self._pool.closed or self._pool.size != n:
            self._stop_own_pool()
            options = dict(self._pool_options)
            # Cap BLAS/OpenMP threads in each worker as joblib's process backends do: n_jobs workers
            # times all-cores threads each would oversubscribe the machine.
            options["env"] = {**self._prepare_worker_env(n), **options.get("env", {})}
            self._pool = Pool(workers=n, **options)
        return n

    def terminate(self) -> None:
        """End of a ``Parallel`` call: stops the pool the backend started (a given pool stays open)."""
        self._stop_own_pool()
        self.reset_batch_stats()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """A task failed and joblib will raise: drop what is still running or queued."""
        with self._lock:
            tasks = list(self._tasks)
            self._tasks.clear()
        for task in tasks:
            task.abandon()
        if self._given_pool is None:
            # Our own pool: kill the workers now rather than let abandoned tasks finish.
            self._stop_own_pool(graceful=False)
            if ensure_ready:
                self.configure(n_jobs=self.parallel.n_jobs, parallel=self.parallel)

    def _stop_own_pool(self, graceful: bool = True) -> None:
        pool, self._pool = self._pool, self._given_pool
        if pool is None or pool is self._given_pool:
            return
        if graceful:
            pool.close()
        else:
            pool.terminate()

    # -- tasks --------------------------------------------------------------------------------
    def submit(self, func: Callable[[], Any], callback: Callable[[Any], None] | None = None) -> _Task:
        """Runs ``func()`` (a joblib task) in a worker; returns a future-like object for joblib."""
        if self._pool is None:
            raise errors.PoolClosed("the joblib backend has no pool: Parallel has not configured it")
        task = _Task(self, self._pool, func)
        with self._lock:
            self._tasks.add(task)
        if callback is not None:
            task.future.add_done_callback(lambda _f: callback(task))
        task.start()
        return task

    def retrieve_result_callback(self, out: _Task) -> Any:
        """The task's result (a list, one entry per call), or its exception raised."""
        return out.future.result()

    def _done(self, task: _Task) -> None:
        with self._lock:
            self._tasks.discard(task)


class _Task:
    """One joblib task on the pool. A crash of a multi-call task reruns each call alone; a call that
    crashes alone fails by itself (as a scikit-learn fit failure when it is one)."""

    def __init__(self, backend: SlitherBackend, pool: Pool, func: Callable[[], Any]) -> None:
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._backend = backend
        self._pool = pool
        self._func = func
        self._inner: list[concurrent.futures.Future[Any]] = []

    def start(self) -> None:
        self.future.set_running_or_notify_cancel()
        self._run(self._func, self._whole_done)

    def get(self, timeout: float | None = None) -> Any:
        return self.future.result(timeout)

    def abandon(self) -> None:
        for inner in self._inner:
            inner.cancel()
        self._settle(exc=errors.PoolClosed("joblib aborted this task after another task failed"))

    def _run(self, func: Callable[[], Any], done: Callable[[concurrent.futures.Future[Any]], None]) -> None:
        try:
            inner = self._pool.submit(func)
        except BaseException as exc:  # a closed pool or an unpicklable task: the task's own failure
            self._settle(exc=exc)
            return
        self._inner.append(inner)
        inner.add_done_callback(done)

    def _whole_done(self, inner: concurrent.futures.Future[Any]) -> None:
        exc = _exception(inner)
        if exc is None:
            self._settle(result=inner.result())
            return
        calls = getattr(self._func, "items", None)
        if isinstance(exc, errors.WorkerCrashed) and isinstance(calls, list) and len(calls) > 1:
            self._split(calls)
        elif isinstance(exc, errors.WorkerCrashed) and isinstance(calls, list) and len(calls) == 1:
            self._settle_crashed_calls([(calls[0], exc)], [_CRASHED])
        else:
            self._settle(exc=exc)

    def _split(self, calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]]) -> None:
        """Reruns every call of a crashed task as a task of its own; settles when all have answered."""
        results: list[Any] = [_CRASHED] * len(calls)
        crashed: list[tuple[tuple[Any, tuple[Any, ...], dict[str, Any]], BaseException]] = []
        failed: list[BaseException] = []
        remaining = [len(calls)]
        lock = threading.Lock()

        def one_done(i: int, inner: concurrent.futures.Future[Any]) -> None:
            exc = _exception(inner)
            with lock:
                if exc is None:
                    results[i] = inner.result()[0]
                elif isinstance(exc, errors.WorkerCrashed):
                    crashed.append((calls[i], exc))
                    results[i] = _CRASHED
                else:
                    failed.append(exc)
                remaining[0] -= 1
                finished = remaining[0] == 0
            if not finished:
                return
            if failed:
                self._settle(exc=failed[0])
            else:
                self._settle_crashed_calls(crashed, results)

        for i, call in enumerate(calls):
            self._run(_one_call(self._func, call), lambda f, i=i: one_done(i, f))

    def _settle_crashed_calls(
        self,
        crashed: list[tuple[tuple[Any, tuple[Any, ...], dict[str, Any]], BaseException]],
        results: list[Any],
    ) -> None:
        """Fills in the calls that killed their worker, as scikit-learn fit failures where they are fits."""
        stand_ins = iter(crashed)
        out = []
        for r in results:
            if r is not _CRASHED:
                out.append(r)
                continue
            call, exc = next(stand_ins)
            try:
                out.append(_as_fit_failure(call, exc))
            except BaseException as raised:
                self._settle(exc=raised)
                return
        self._settle(result=out)

    def _settle(self, result: Any = None, exc: BaseException | None = None) -> None:
        if self.future.done():
            return
        try:
            if exc is None:
                self.future.set_result(result)
            else:
                self.future.set_exception(exc)
        except concurrent.futures.InvalidStateError:
            return  # settled by another thread in between
        self._backend._done(self)


_CRASHED = object()


def _exception(fut: concurrent.futures.Future[Any]) -> BaseException | None:
    if fut.cancelled():
        return errors.PoolClosed("the task was cancelled")
    return fut.exception()


def _one_call(task: Any, call: tuple[Any, tuple[Any, ...], dict[str, Any]]) -> Any:
    """A joblib task holding only ``call``, with the same nested-backend settings as ``task``."""
    return _jp.BatchedCalls([call], (task._backend, task._n_jobs), None, task._pickle_cache)


def _as_fit_failure(call: tuple[Any, tuple[Any, ...], dict[str, Any]], crash: BaseException) -> Any:
    """The result scikit-learn records for a fit that raised ``crash``; ``crash`` itself for any other call.

    scikit-learn's ``_fit_and_score`` turns an exception from ``estimator.fit`` into a failed fit (score
    ``error_score``, the message in its ``FitFailedWarning``). A fit that killed its worker raised nothing
    anyone could catch, so it is run again here, in the host, with an estimator whose ``fit`` raises the
    crash at once: scikit-learn's own code builds the failure, and nothing of the user's runs twice.
    """
    func, args, kwargs = call
    target = getattr(func, "function", func)
    is_fit = (getattr(target, "__module__", "") == "sklearn.model_selection._validation"
              and getattr(target, "__name__", "") == "_fit_and_score")
    if not is_fit:
        raise crash
    estimator = args[0] if args else kwargs["estimator"]
    stand_in = copy.copy(estimator)

    def fit(*_a: Any, **_k: Any) -> Any:
        raise crash

    stand_in.fit = fit
    if args:
        args = (stand_in, *args[1:])
    else:
        kwargs = {**kwargs, "estimator": stand_in}
    return func(*args, **kwargs)
