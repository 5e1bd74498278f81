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
from typing import Any

from slither import errors
from slither._decode import single_result
from slither._dispatch import Engine
from slither._dispatcher import CallOptions, Dispatcher, check_timeout, collect
from slither._functions import describe, function_ref
from slither._native import _slither
from slither._workerpath import worker_env
from slither.batching import Batching
from slither.outcome import Outcome, Reply
from slither.session import Session
from slither.stats import PoolStats, WorkerInfo
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
        max_frame_bytes: largest payload either side may put on a worker's channel (default 4 GiB): a batch
            over it fails with SerializationError before it is sent, a worker announcing more is killed and
            replaced with a ProtocolError.
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
        max_frame_bytes: int = 1 << 32,
        startup_timeout: float = 60.0,
        shutdown_grace: float = 2.0,
        forward_output: bool = True,
        backend: str = "local",
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
            "max_frame_bytes": int(max_frame_bytes),
        }
        init_spec = {
            "sys_path": _worker_sys_path(same_interpreter),
            "init": function_ref(init) if init is not None else None,
            "init_args": tuple(init_args),
            "store": store is not None,
            "max_result_bytes": min(int(max_result_bytes), int(max_frame_bytes)),
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
        versions = {".".join(w.python.split(".")[:2]) for w in self._core.workers()}
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
        """Stops accepting new calls, lets runs in flight finish and deliver, then stops the workers.

        A ``map`` running in another thread returns all its results; an ``imap`` this thread has not finished
        reading is not waited for. ``timeout`` bounds each wait (seconds; None: no bound).
        """
        if self._closed:
            return
        self._closed = True
        try:
            # Runs already going (a map in another thread) finish and deliver before the core stops
            # accepting their batches.
            self._dispatcher.wait_runs(timeout)
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
    @property
    def _dispatcher(self) -> Dispatcher:
        """The dispatcher this pool shares with its sessions (made on first use)."""
        d = self.__dict__.get("_dispatcher_obj")
        if d is None:
            with self._lock:
                d = self.__dict__.get("_dispatcher_obj")
                if d is None:
                    # A weak reference: the dispatcher must not keep a forgotten pool (and its workers) alive.
                    me = weakref.ref(self)
                    d = Dispatcher(self._core, self._telemetry, lambda: getattr(me(), "_closed", True),
                                   self._by_value_ok, self._versions)
                    self.__dict__["_dispatcher_obj"] = d
        return d

    def _engine(self, fn: str | Callable[..., Any], iterable: Iterable[Any], **options: Any) -> Engine:
        """One dispatch's engine (the Pipe's worker stages drive it directly)."""
        self._check_open()
        return self._dispatcher.engine(fn, iterable, **options)

    def imap(self, fn: str | Callable[..., Any], iterable: Iterable[Any], *, batch_size: int | None = None,
             batching: Batching | None = None, max_in_flight: int | None = None, ordered: bool = True,
             timeout: float | None = None, on_error: Any = "raise", progress: bool = False) -> Iterator[Any]:
        """Streams ``fn(item)`` for every item, in input order (or as completed with ``ordered=False``).

        Input is consumed lazily: at most ``max_in_flight`` batches (default ``2 × workers``) are
        outstanding. Under ``on_error="skip"`` failed items are left out (use :meth:`dispatch` to see them).
        """
        return self._dispatcher.imap(fn, iterable, "item", None, batch_size=batch_size, batching=batching,
                                     max_in_flight=max_in_flight, ordered=ordered, timeout=timeout,
                                     on_error=on_error, progress=progress)

    def map(self, fn: str | Callable[..., Any], iterable: Iterable[Any], **kwargs: Any) -> list[Any]:
        """``fn(item)`` for every item, as a list in input order. Same options as :meth:`imap`."""
        return collect(self.imap(fn, iterable, **kwargs))

    def imap_batches(self, fn: str | Callable[..., Any], iterable: Iterable[Any], *, batch_size: int | None = None,
                     batching: Batching | None = None, max_in_flight: int | None = None, ordered: bool = True,
                     timeout: float | None = None, on_error: Any = "raise", progress: bool = False) -> Iterator[Any]:
        """Calls ``fn(list_of_items) -> list`` once per batch and streams the per-item results.

        A batch function must return a list of the same length as its batch; anything else fails the
        batch with :class:`~slither.errors.BatchLengthError`.
        """
        return self._dispatcher.imap(fn, iterable, "batch", None, batch_size=batch_size, batching=batching,
                                     max_in_flight=max_in_flight, ordered=ordered, timeout=timeout,
                                     on_error=on_error, progress=progress)

    def map_batches(self, fn: str | Callable[..., Any], iterable: Iterable[Any], **kwargs: Any) -> list[Any]:
        """``fn(batch)`` per batch, results flattened into one list in input order."""
        return collect(self.imap_batches(fn, iterable, **kwargs))

    def dispatch(self, fn: str | Callable[..., Any], iterable: Iterable[Any], *, per: str = "item",
                 batch_size: int | None = None, batching: Batching | None = None, max_in_flight: int | None = None,
                 ordered: bool = True, timeout: float | None = None, on_error: Any = "skip",
                 progress: bool = False) -> Outcome:
        """Runs the whole input and returns an :class:`~slither.Outcome`: every item's result or Failure.

        ``per="item"`` calls ``fn(item)``; ``per="batch"`` calls ``fn(batch) -> list``.
        """
        return self._dispatcher.dispatch(fn, iterable, None, per=per, batch_size=batch_size, batching=batching,
                                         max_in_flight=max_in_flight, ordered=ordered, timeout=timeout,
                                         on_error=on_error, progress=progress)

    # -- single calls -------------------------------------------------------------------------
    def call(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Runs ``fn(*args, **kwargs)`` once in a worker and returns its result.

        Every argument goes to ``fn``; to bound the call, use ``pool.options(timeout=...).call(...)``.
        Raises what ``fn`` raised (see :mod:`slither.errors` for how), :class:`~slither.errors.WorkerCrashed`
        if its worker died, :class:`~slither.errors.SerializationError` naming an argument that will not pickle.
        """
        return self._dispatcher.call(fn, args, kwargs)

    def options(self, *, timeout: float | None = None) -> CallOptions:
        """Single calls with options: ``pool.options(timeout=5).call(fn, x)`` or ``.submit(fn, x)``.

        ``timeout`` (seconds, counted from the moment a worker starts the call) kills and replaces a worker
        that overruns it; the call raises :class:`~slither.errors.BatchTimeout`. Raises ConfigError for a
        timeout that is not a positive number.
        """
        return CallOptions(lambda fn, a, kw, t: self._dispatcher.call(fn, a, kw, timeout=t), self._submit, timeout)

    def submit(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Like :meth:`call`, but returns a :class:`concurrent.futures.Future` at once."""
        return self._submit(fn, args, kwargs, None)

    def _submit(self, fn: str | Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                timeout: float | None) -> concurrent.futures.Future[Any]:
        self._check_open()
        payload = self._dispatcher.call_payload(fn, args, kwargs)
        with self._lock:
            if self._futures is None:
                self._futures = _FutureCollector(self)
        return self._futures.submit(describe(fn), payload, check_timeout(timeout))

    def broadcast(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> dict[int, Reply]:
        """Calls ``fn(*args, **kwargs)`` exactly once on every live worker: ``{worker index: Reply}``."""
        return self._dispatcher.broadcast(fn, args, kwargs)

    # -- sessions, introspection --------------------------------------------------------------
    def session(self, name: str | None = None, *, cleanup: str | Callable[..., Any] | None = None,
                timeout: float = 60.0) -> Session:
        """A session pinned to one worker (the least loaded now): strict affinity for every call.

        If no worker is ready (one is being replaced after a crash or recycled), waits up to ``timeout``
        seconds for one, then raises :class:`TimeoutError`. If the session's worker dies later, its next call
        raises :class:`~slither.errors.SessionLost`. ``cleanup`` runs on the worker when the session closes
        (if it is still alive).
        """
        self._check_open()
        worker, generation = self._core.open_session(timeout)
        return Session(self._dispatcher, name, worker, generation, cleanup)

    def stats(self) -> PoolStats:
        return self._core.stats()

    def workers_info(self) -> list[WorkerInfo]:
        """Per worker slot: index, pid, generation, state, Python version, whether its GIL is on."""
        return list(self._core.workers())

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Calls ``callback(event)`` for every telemetry event; returns a function that unsubscribes."""
        return self._telemetry.subscribe(callback)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<slither.Pool workers={self.size} {state}>"


class _FutureCollector:
    """Backs ``Pool.submit``: one run in the core, one daemon thread resolving futures as calls finish."""

    def __init__(self, pool: Pool) -> None:
        self._core = pool._core
        self._run = self._core.new_run()
        self._futures: dict[int, tuple[concurrent.futures.Future[Any], str]] = {}
        self._lock = threading.Lock()
        self._tag = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="slither-futures", daemon=True)
        self._thread.start()

    def submit(self, name: str, payload: bytes, timeout: float | None) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        # Running before it is submitted: the collector thread may resolve it as soon as it is.
        fut.set_running_or_notify_cancel()
        with self._lock:
            self._tag += 1
            tag = self._tag
            self._futures[tag] = (fut, name)
        try:
            self._core.submit(self._run, tag, payload, 1, timeout, None)
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
                entry = self._futures.pop(c.tag, None)
            if entry is None:
                continue
            fut, name = entry
            try:
                fut.set_result(single_result(c, name))
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
            pending = [fut for fut, _name in self._futures.values()]
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
