"""``slither.Pool``: isolated Python worker processes, coordinated by the Rust core.

The pool object is thin: it builds the configuration, starts the core (which spawns and supervises the
workers), and runs every dispatch through :mod:`slither._dispatch`. It is safe to share between host
threads; each call gets its own run in the core.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import os
import pickle
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, overload

from slither import errors
from slither._dispatch import Engine, check_transferable, single_result
from slither._functions import describe, function_ref
from slither._native import _slither
from slither._types import Backend, OnError, P, Per, R, T
from slither._workerpath import worker_env
from slither.batching import Batching, resolve_batching
from slither.outcome import Failure, Outcome, Reply
from slither.session import Session
from slither.stats import PoolStats
from slither.telemetry import Telemetry

_live_pools: weakref.WeakSet[Pool] = weakref.WeakSet()


@atexit.register
def _stop_all_pools() -> None:
    for pool in list(_live_pools):
        pool.terminate()


class Pool:
    """A fixed number of fresh Python interpreters, ready when the constructor returns.

    Args:
        workers: number of worker processes (default: ``os.cpu_count()``).
        python: interpreter for the workers (default: the host's ``sys.executable``).
        env: extra environment variables for the workers.
        init: a function (or ``"module:function"``) run once in each worker before its first batch.
        init_args: positional arguments for ``init``.
        store: a :class:`slither.Store` the workers can read and write via ``slither.worker.store``.
        backend: ``"local"`` (worker processes on this machine) or ``"ray"`` (workers as Ray actors, on a
            local Ray or the cluster at ``address``; see docs/ray.md).
        max_tasks_per_worker: replace a worker after this many batches (losing nothing).
        max_memory_per_worker: replace a worker whose resident memory (bytes) stays above this.
        max_result_bytes: largest pickled batch result a worker may send back (default 1 GiB).
        startup_timeout: seconds to wait for every worker's hello and init.
        shutdown_grace: seconds between the polite stop, SIGTERM and SIGKILL.

    Use it as a context manager: ``close()`` lets submitted work finish and stops the workers;
    ``terminate()`` stops them now. Exiting the interpreter or collecting the pool also stops them, and
    if the host process dies (even by SIGKILL) every worker exits with it.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        python: str | None = None,
        env: dict[str, str] | None = None,
        init: str | Callable[..., Any] | None = None,
        init_args: tuple[Any, ...] = (),
        store: Any = None,
        max_tasks_per_worker: int | None = None,
        max_memory_per_worker: int | None = None,
        max_result_bytes: int = 1 << 30,
        startup_timeout: float = 60.0,
        shutdown_grace: float = 2.0,
        forward_output: bool = True,
        backend: Backend = "local",
        address: str | None = None,
    ) -> None:
        n = (os.cpu_count() or 1) if workers is None else workers
        if not isinstance(n, int) or n < 1:
            raise errors.ConfigError(f"workers must be a positive integer, got {workers!r}")
        interpreter = python or sys.executable
        # Not resolved through symlinks: a venv's python and its base binary are the same file but not the
        # same environment.
        same_interpreter = os.path.abspath(interpreter) == os.path.abspath(sys.executable)
        config = {
            "workers": n,
            "python": interpreter,
            "env": worker_env(env or {}, same_interpreter),
            "cwd": os.getcwd(),
            "startup_timeout": float(startup_timeout),
            "shutdown_grace": float(shutdown_grace),
            "max_tasks_per_worker": max_tasks_per_worker,
            "max_memory_per_worker": max_memory_per_worker,
            "forward_output": forward_output,
        }
        init_spec = {
            "sys_path": _worker_sys_path(same_interpreter),
            "init": function_ref(init) if init is not None else None,
            "init_args": tuple(init_args),
            "store": store is not None,
            "max_result_bytes": int(max_result_bytes),
        }
        self._store = store
        payload = pickle.dumps(init_spec, pickle.HIGHEST_PROTOCOL)
        if backend == "ray":
            if python is not None:
                raise errors.ConfigError("python= is not supported with backend='ray': Ray chooses the interpreter")
            try:
                from slither._ray_core import RayCore
            except ImportError as exc:
                raise errors.ConfigError('backend="ray" needs Ray: pip install "slither[ray]"') from exc
            self._core = RayCore(n, payload, store, address)
        elif backend == "local":
            self._core = _slither.PoolCore(config, payload, store._inner if store is not None else None)
        else:
            raise errors.ConfigError(f"backend must be 'local' or 'ray', got {backend!r}")
        self.backend = backend
        self._closed = False
        self._lock = threading.Lock()
        self._telemetry = Telemetry(self._core)
        self._futures: _FutureCollector | None = None
        _live_pools.add(self)
        try:
            ready = self._core.wait_ready(startup_timeout)
        except BaseException:
            self.terminate()
            raise
        if not ready:
            self.terminate()
            raise errors.PoolBroken(f"workers did not become ready within startup_timeout={startup_timeout} s")
        host = ".".join(map(str, sys.version_info[:2]))
        versions = {".".join(w["python"].split(".")[:2]) for w in self._core.workers()}
        # Functions pickled by value carry bytecode, which only the same Python version can run.
        self._by_value_ok = versions <= {host}
        self._versions = (host, sorted(versions))

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> Pool:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.terminate()

    def close(self, timeout: float | None = None) -> None:
        """Stops accepting work, lets every submitted batch finish, then stops the workers."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._core.drain(timeout) and self._futures is not None:
                # Answers that arrived are handed to their futures before the collector stops.
                self._futures.settle(timeout)
        finally:
            self._shutdown(graceful=True)

    def terminate(self) -> None:
        """Stops the workers now: SIGTERM to each process group, a bounded grace, then SIGKILL."""
        self._closed = True
        self._shutdown(graceful=False)

    def _shutdown(self, graceful: bool) -> None:
        core = getattr(self, "_core", None)
        if core is None:
            return
        core.shutdown(graceful)
        if self._futures is not None:
            self._futures.stop()
        self._telemetry.close()
        _live_pools.discard(self)

    def __del__(self) -> None:
        try:
            self.terminate()
        except Exception:
            pass

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def size(self) -> int:
        return int(self._core.size)

    def _check_open(self) -> None:
        if self._closed:
            raise errors.PoolClosed("the pool is closed")

    def publish_store(self) -> None:
        """With ``backend="ray"``: sends the host store's current tables to the workers' store actor."""
        publish = getattr(self._core, "publish_store", None)
        if publish is not None:
            publish()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Waits until every worker slot holds a ready process (e.g. after a crash replacement)."""
        self._check_open()
        return bool(self._core.wait_ready(timeout))

    # -- dispatch -----------------------------------------------------------------------------
    def _engine(
        self,
        fn: str | Callable[..., Any],
        iterable: Iterable[Any],
        *,
        mode: str,
        batch_size: int | None,
        batching: Batching | None,
        default_batch: int | None,
        max_in_flight: int | None,
        ordered: bool,
        timeout: float | None,
        on_error: Any,
        progress: bool,
        pin: tuple[int, int] | None = None,
    ) -> Engine:
        self._check_open()
        strategy = resolve_batching(batching, batch_size, default_batch)
        return Engine(
            self, fn, iterable, mode=mode, batching=strategy,
            max_in_flight=max_in_flight if max_in_flight is not None else 2 * self.size,
            ordered=ordered, timeout=timeout, on_error=on_error, pin=pin, progress=progress,
        )

    @overload
    def imap(self, fn: Callable[[T], R], iterable: Iterable[T], *, batch_size: int | None = None,
             batching: Batching | None = None, max_in_flight: int | None = None, ordered: bool = True,
             timeout: float | None = None, on_error: OnError = "raise", progress: bool = False,
             _pin: tuple[int, int] | None = None) -> Iterator[R]: ...
    @overload
    def imap(self, fn: str, iterable: Iterable[Any], *, batch_size: int | None = None,
             batching: Batching | None = None, max_in_flight: int | None = None, ordered: bool = True,
             timeout: float | None = None, on_error: OnError = "raise", progress: bool = False,
             _pin: tuple[int, int] | None = None) -> Iterator[Any]: ...
    def imap(self, fn: str | Callable[..., Any], iterable: Iterable[Any], *, batch_size: int | None = None,
             batching: Batching | None = None, max_in_flight: int | None = None, ordered: bool = True,
             timeout: float | None = None, on_error: OnError = "raise", progress: bool = False,
             _pin: tuple[int, int] | None = None) -> Iterator[Any]:
        """Streams ``fn(item)`` for every item, in input order (or as completed with ``ordered=False``).

        Input is consumed lazily: at most ``max_in_flight`` batches (default ``2 × workers``) are
        outstanding. Under ``on_error="skip"`` failed items are left out (use :meth:`dispatch` to see them).
        """
        engine = self._engine(fn, iterable, mode="item", batch_size=batch_size, batching=batching, default_batch=None,
                              max_in_flight=max_in_flight, ordered=ordered, timeout=timeout, on_error=on_error,
                              progress=progress, pin=_pin)
        return _Results(engine)

    @overload
    def map(self, fn: Callable[[T], R], iterable: Iterable[T], **kwargs: Any) -> list[R]: ...
    @overload
    def map(self, fn: str, iterable: Iterable[Any], **kwargs: Any) -> list[Any]: ...
    def map(self, fn: str | Callable[..., Any], iterable: Iterable[Any], **kwargs: Any) -> list[Any]:
        """``fn(item)`` for every item, as a list in input order. Same options as :meth:`imap`."""
        return _collect(self.imap(fn, iterable, **kwargs))

    @overload
    def imap_batches(self, fn: Callable[[list[T]], list[R]], iterable: Iterable[T], *, batch_size: int | None = None,
                     batching: Batching | None = None, max_in_flight: int | None = None, ordered: bool = True,
                     timeout: float | None = None, on_error: OnError = "raise", progress: bool = False,
                     _pin: tuple[int, int] | None = None) -> Iterator[R]: ...
    @overload
    def imap_batches(self, fn: str, iterable: Iterable[Any], *, batch_size: int | None = None,
                     batching: Batching | None = None, max_in_flight: int | None = None, ordered: bool = True,
                     timeout: float | None = None, on_error: OnError = "raise", progress: bool = False,
                     _pin: tuple[int, int] | None = None) -> Iterator[Any]: ...
    def imap_batches(self, fn: str | Callable[..., Any], iterable: Iterable[Any], *, batch_size: int | None = None,
                     batching: Batching | None = None, max_in_flight: int | None = None, ordered: bool = True,
                     timeout: float | None = None, on_error: OnError = "raise", progress: bool = False,
                     _pin: tuple[int, int] | None = None) -> Iterator[Any]:
        """Calls ``fn(list_of_items) -> list`` once per batch and streams the per-item results.

        A batch function must return a list of the same length as its batch; anything else fails the
        batch with :class:`~slither.errors.BatchLengthError`.
        """
        engine = self._engine(fn, iterable, mode="batch", batch_size=batch_size, batching=batching, default_batch=64,
                              max_in_flight=max_in_flight, ordered=ordered, timeout=timeout, on_error=on_error,
                              progress=progress, pin=_pin)
        return _Results(engine)

    @overload
    def map_batches(self, fn: Callable[[list[T]], list[R]], iterable: Iterable[T], **kwargs: Any) -> list[R]: ...
    @overload
    def map_batches(self, fn: str, iterable: Iterable[Any], **kwargs: Any) -> list[Any]: ...
    def map_batches(self, fn: str | Callable[..., Any], iterable: Iterable[Any], **kwargs: Any) -> list[Any]:
        """``fn(batch)`` per batch, results flattened into one list in input order."""
        return _collect(self.imap_batches(fn, iterable, **kwargs))

    @overload
    def dispatch(self, fn: Callable[[T], R], iterable: Iterable[T], *, per: Literal["item"] = "item",
                 batch_size: int | None = None, batching: Batching | None = None, max_in_flight: int | None = None,
                 ordered: bool = True, timeout: float | None = None, on_error: OnError = "skip",
                 progress: bool = False, _pin: tuple[int, int] | None = None) -> Outcome[R]: ...
    @overload
    def dispatch(self, fn: Callable[[list[T]], list[R]], iterable: Iterable[T], *, per: Literal["batch"],
                 batch_size: int | None = None, batching: Batching | None = None, max_in_flight: int | None = None,
                 ordered: bool = True, timeout: float | None = None, on_error: OnError = "skip",
                 progress: bool = False, _pin: tuple[int, int] | None = None) -> Outcome[R]: ...
    @overload
    def dispatch(self, fn: str, iterable: Iterable[Any], *, per: Per = "item",
                 batch_size: int | None = None, batching: Batching | None = None, max_in_flight: int | None = None,
                 ordered: bool = True, timeout: float | None = None, on_error: OnError = "skip",
                 progress: bool = False, _pin: tuple[int, int] | None = None) -> Outcome[Any]: ...
    def dispatch(self, fn: str | Callable[..., Any], iterable: Iterable[Any], *, per: Per = "item",
                 batch_size: int | None = None, batching: Batching | None = None, max_in_flight: int | None = None,
                 ordered: bool = True, timeout: float | None = None, on_error: OnError = "skip",
                 progress: bool = False, _pin: tuple[int, int] | None = None) -> Outcome[Any]:
        """Runs the whole input and returns an :class:`~slither.Outcome`: every item's result or Failure.

        ``per="item"`` calls ``fn(item)``; ``per="batch"`` calls ``fn(batch) -> list``.
        """
        if per not in ("item", "batch"):
            raise errors.ConfigError(f"per must be 'item' or 'batch', got {per!r}")
        engine = self._engine(fn, iterable, mode=per, batch_size=batch_size, batching=batching,
                              default_batch=None if per == "item" else 64, max_in_flight=max_in_flight,
                              ordered=ordered, timeout=timeout, on_error=on_error, progress=progress, pin=_pin)
        results: list[Any] = []
        indices: list[int] = []
        failures: list[Failure] = []
        for start, values, failure in engine.entries():
            if failure is None:
                results.extend(values)
                indices.extend(range(start, start + len(values)))
            else:
                failures.append(failure)
        return Outcome(results=results, failures=failures, stats=engine.stats(), indices=indices)

    # -- single calls -------------------------------------------------------------------------
    @overload
    def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def call(self, fn: str, *args: Any, **kwargs: Any) -> Any: ...
    def call(self, fn: str | Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Runs ``fn(*args, **kwargs)`` once in a worker and returns its result."""
        return self._call(fn, args, kwargs, None, None)

    def _call(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], pin: tuple[int, int] | None,
              timeout: float | None) -> Any:
        self._check_open()
        ref = function_ref(fn)
        check_transferable(self, ref, describe(fn))
        try:
            payload = pickle.dumps((ref, "call", [(args, kwargs)]), pickle.HIGHEST_PROTOCOL)
        except errors.SlitherError:
            raise
        except Exception as exc:
            raise errors.SerializationError(f"the arguments of {describe(fn)} cannot be pickled: {exc}") from exc
        run = self._core.new_run()
        self._core.submit(run, 0, payload, 1, timeout, pin)
        try:
            c = run.next(None)
        except BaseException:
            self._core.cancel(run)
            raise
        return single_result(c, describe(fn), pinned=pin is not None)

    @overload
    def submit(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> concurrent.futures.Future[R]: ...
    @overload
    def submit(self, fn: str, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]: ...
    def submit(self, fn: str | Callable[..., Any], *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Like :meth:`call`, but returns a :class:`concurrent.futures.Future` at once."""
        self._check_open()
        check_transferable(self, function_ref(fn), describe(fn))
        with self._lock:
            if self._futures is None:
                self._futures = _FutureCollector(self)
        return self._futures.submit(fn, args, kwargs)

    def broadcast(self, fn: str | Callable[..., Any], *args: Any, **kwargs: Any) -> dict[int, Reply]:
        """Calls ``fn(*args, **kwargs)`` exactly once on every live worker: ``{worker index: Reply}``."""
        self._check_open()
        targets = [(w["index"], w["generation"], w["pid"]) for w in self._core.workers() if w["state"] == "ready"]
        ref = function_ref(fn)
        check_transferable(self, ref, describe(fn))
        payload = pickle.dumps((ref, "call", [(args, kwargs)]), pickle.HIGHEST_PROTOCOL)
        run = self._core.new_run()
        for index, generation, _pid in targets:
            self._core.submit(run, index, payload, 1, None, (index, generation))
        replies: dict[int, Reply] = {}
        try:
            while len(replies) < len(targets):
                c = run.next(None)
                replies[c.tag] = Reply(worker=c.tag, pid=c.pid, value=single_result(c, describe(fn), pinned=True))
        except BaseException:
            self._core.cancel(run)
            raise
        return dict(sorted(replies.items()))

    # -- sessions, introspection --------------------------------------------------------------
    def session(self, name: str | None = None, *, cleanup: str | Callable[..., Any] | None = None) -> Session:
        """A session pinned to one worker (the least loaded now): strict affinity for every call.

        If that worker dies, the session's next call raises :class:`~slither.errors.SessionLost`.
        ``cleanup`` runs on the worker when the session closes (if it is still alive).
        """
        self._check_open()
        worker, generation = self._core.open_session()
        return Session(self, name, worker, generation, cleanup)

    def stats(self) -> PoolStats:
        return PoolStats.from_core(self._core.stats())

    def workers_info(self) -> list[dict[str, Any]]:
        """Per worker: index, pid, generation, state, Python version, whether its GIL is on."""
        return list(self._core.workers())

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Calls ``callback(event)`` for every telemetry event; returns a function that unsubscribes."""
        return self._telemetry.subscribe(callback)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<slither.Pool workers={self.size} {state}>"


class _Results(Iterator[Any]):
    """The iterator ``imap`` returns; ``map`` drains its chunks without touching items one by one."""

    def __init__(self, engine: Engine) -> None:
        self._chunks = (values for _, values, failure in engine.entries() if failure is None)
        self._current: Iterator[Any] = iter(())

    def __iter__(self) -> _Results:
        return self

    def __next__(self) -> Any:
        while True:
            try:
                return next(self._current)
            except StopIteration:
                self._current = iter(next(self._chunks))

    def close(self) -> None:
        self._chunks.close()


def _collect(results: Iterator[Any]) -> list[Any]:
    if isinstance(results, _Results):
        out: list[Any] = list(results._current)
        for chunk in results._chunks:
            out.extend(chunk)
        return out
    return list(results)


class _FutureCollector:
    """Backs ``Pool.submit``: one run in the core, one daemon thread resolving futures as calls finish."""

    def __init__(self, pool: Pool) -> None:
        self._core = pool._core
        self._run = self._core.new_run()
        self._futures: dict[int, concurrent.futures.Future[Any]] = {}
        self._lock = threading.Lock()
        self._tag = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="slither-futures", daemon=True)
        self._thread.start()

    def submit(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        # Running before it is submitted: the collector thread may resolve it as soon as it is.
        fut.set_running_or_notify_cancel()
        payload = pickle.dumps((function_ref(fn), "call", [(args, kwargs)]), pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self._tag += 1
            tag = self._tag
            self._futures[tag] = fut
        try:
            self._core.submit(self._run, tag, payload, 1, None, None)
        except BaseException:
            with self._lock:
                self._futures.pop(tag, None)
            raise
        return fut

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                c = self._run.next(0.2)
            except BaseException:  # interpreter shutting down
                return
            if c is None:
                continue
            with self._lock:
                fut = self._futures.pop(c.tag, None)
            if fut is None:
                continue
            try:
                fut.set_result(single_result(c, "the submitted call"))
            except BaseException as exc:  # every outcome resolves the future
                fut.set_exception(exc)

    def settle(self, timeout: float | None) -> None:
        """Waits until every submitted call's future is resolved (the core has already answered them all)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._futures and (deadline is None or time.monotonic() < deadline) and self._thread.is_alive():
            time.sleep(0.005)

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            pending = list(self._futures.values())
            self._futures.clear()
        for fut in pending:
            if not fut.done():
                fut.set_exception(errors.PoolClosed("the pool was closed before the call finished"))


def _worker_sys_path(same_interpreter: bool) -> list[str]:
    """The host's import path for workers, so that functions importable here are importable there."""
    cwd = os.getcwd()
    paths = [cwd if p == "" else p for p in sys.path]
    if same_interpreter:
        return paths
    # Another interpreter keeps its own stdlib and site-packages; pass only the user's directories.
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return [p for p in paths if not any(os.path.realpath(p).startswith(pre) for pre in prefixes)]
