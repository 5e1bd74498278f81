"""``slither.Pool``: isolated Python worker processes, coordinated by the Rust core.

The pool object is thin: it builds the configuration, starts the core (which spawns and supervises the
workers), and runs every dispatch through :mod:`slither._dispatch`. It is safe to share between host
threads; each call gets its own run in the core.

It is also a ``concurrent.futures.Executor`` (``submit``, ``map``, ``shutdown``; single calls in
:mod:`slither._calls`), takes ``multiprocessing.Pool``'s spellings (``starmap``, ``imap_unordered``,
``apply_async``, ``processes=``...; arguments checked in :mod:`slither._config`) and has awaitable forms
(:mod:`slither._aio`).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextvars
import functools
import inspect
import os
import pickle
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from slither import _config, errors
from slither._calls import AsyncResult, Calls
from slither._dispatch import Engine
from slither._dispatcher import CallOptions, Dispatcher, Results, check_timeout, collect
from slither._functions import describe, function_ref
from slither._native import _slither
from slither._star import Star, Zipped
from slither._worker import segments
from slither._workerpath import worker_env
from slither.outcome import Outcome, Reply
from slither.session import Session
from slither.stats import PoolStats, WorkerInfo
from slither.telemetry import Telemetry

if TYPE_CHECKING:
    from typing_extensions import (  # typing's from 3.11; typing_extensions ships with every checker
        Self,
        Unpack,
    )

    from slither._types import (
        T2,
        Backend,
        ListOptions,
        MapOptions,
        P,
        Per,
        PoolAliases,
        R,
        T,
        UnorderedOptions,
    )

_live_pools: weakref.WeakSet[Pool] = weakref.WeakSet()


_JOIN_S = 5.0  # bound on joining one of a pool's threads at close/terminate/exit


@atexit.register
def _stop_all_pools() -> None:
    # Runs before the interpreter finalizes: every pool's threads are stopped and joined here, so none can be
    # inside the interpreter while it tears down.
    for pool in list(_live_pools):
        pool._at_exit()


# A ThreadPoolExecutor only by type: asyncio's set_default_executor accepts nothing else. Its __init__ is never
# called, none of its methods run, and none of its private attribute names (_shutdown, _threads, ...) are reused.
class Pool(concurrent.futures.ThreadPoolExecutor):
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
        max_memory_per_worker: replace a worker whose resident memory (bytes) stays above this, not counting
            the shared memory it keeps mapped to reuse for large results (its segment cache).
        max_result_bytes: largest pickled batch result a worker may send back (default 1 GiB).
        max_frame_bytes: largest payload either side may put on a worker's channel (default 4 GiB): a batch
            over it fails with SerializationError before it is sent, a worker announcing more is killed and
            replaced with a ProtocolError.
        startup_timeout: seconds to wait for every worker's hello and init.
        shutdown_grace: seconds between the polite stop, SIGTERM and SIGKILL.
        forward_output: copy each worker's stdout/stderr lines to the host's stderr, prefixed.
        preload: module names (``["numpy", "sklearn.linear_model"]``) imported once by a template process;
            workers are then forked from it, so a start, a replacement after a crash or a recycle costs a
            fork (milliseconds) instead of an interpreter start plus these imports. Each worker is still a
            separate process with its own channel, process group and ``init``. See docs/api.md, "Warm start".
        **aliases: the spellings of ``multiprocessing.Pool`` and ``ProcessPoolExecutor``: ``processes=`` and
            ``max_workers=`` for ``workers``, ``initializer=`` / ``initargs=`` for ``init`` / ``init_args``,
            ``maxtasksperchild=`` and ``max_tasks_per_child=`` for ``max_tasks_per_worker`` (which counts
            batches, not items). ``mp_context=`` and ``context=`` (a multiprocessing context) are accepted and
            ignored: workers are always fresh interpreters, whatever start method the context names.

    Raises:
        TypeError: an unknown keyword (the message names the closest valid one), or an argument given
            under both its names.
        ConfigError: a value of the wrong type or range (the message names the argument and what was
            expected), or a ``preload`` module that fails to import in the worker interpreter (named, with
            its exception).
        PoolBroken: the workers did not start (their ``init`` failed, ``startup_timeout`` passed).

    Use it as a context manager: ``close()`` lets submitted work finish and stops the workers;
    ``terminate()`` stops them now. Exiting the interpreter (after submitted calls finish, as in
    ``concurrent.futures``) or collecting the pool also stops them, and
    if the host process dies (even by SIGKILL) every worker exits with it.

    It is a ``concurrent.futures.Executor`` (``submit``, ``map``, ``shutdown``), usable with
    ``loop.run_in_executor`` and ``loop.set_default_executor``. It derives from ``ThreadPoolExecutor`` only
    because asyncio's ``set_default_executor`` accepts nothing else; it runs no thread pool.
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
        preload: Sequence[str] = (),
        backend: Backend = "local",
        address: str | None = None,
        **aliases: Unpack[PoolAliases],
    ) -> None:
        # Set first: __del__ and the exit hook may see a pool whose constructor raised.
        self._closed = True
        self._lock = threading.Lock()
        self._calls: Calls | None = None
        self._pool_threads: set[threading.Thread] = set()
        args = _config.resolve_aliases(
            {"workers": workers, "python": python, "env": env, "init": init, "init_args": init_args, "store": store,
             "max_tasks_per_worker": max_tasks_per_worker, "max_memory_per_worker": max_memory_per_worker,
             "max_result_bytes": max_result_bytes, "max_frame_bytes": max_frame_bytes,
             "startup_timeout": startup_timeout, "shutdown_grace": shutdown_grace, "forward_output": forward_output,
             "preload": preload, "backend": backend, "address": address},
            aliases, _DEFAULTS)
        _config.check_pool_args(args)
        workers, init, init_args, max_tasks_per_worker = (args["workers"], args["init"], args["init_args"],
                                                         args["max_tasks_per_worker"])
        n = (os.cpu_count() or 1) if workers is None else workers
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
            "preload": list(args["preload"]),
            "preload_path": _worker_sys_path(same_interpreter) if args["preload"] else [],
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
            if args["preload"]:
                raise errors.ConfigError("preload= is not supported with backend='ray': Ray starts its own actors")
            try:
                from slither._ray_core import RayCore
            except ImportError as exc:
                raise errors.ConfigError('backend="ray" needs Ray: pip install "slither[ray]"') from exc
            self._core = RayCore(n, payload, store, address)
        else:
            self._core = _slither.PoolCore(config, payload, store._inner if store is not None else None)
        self.backend = backend
        self._closed = False
        self._telemetry = Telemetry(self._core)
        _live_pools.add(self)
        try:
            ready = self._core.wait_ready(startup_timeout)
        except BaseException:
            self.terminate()
            raise
        if not ready:
            self.terminate()
            why = f"workers did not become ready within startup_timeout={startup_timeout} s"
            if args["preload"]:
                why += (f"; with preload={list(args['preload'])!r} they fork from a template that imports those modules "
                        "first: an import that is slow or hangs is the likely cause")
            raise errors.PoolBroken(why)
        host = ".".join(map(str, sys.version_info[:2]))
        versions = {".".join(w.python.split(".")[:2]) for w in self._core.workers()}
        # Functions pickled by value carry bytecode, which only the same Python version can run.
        self._by_value_ok = versions <= {host}
        self._versions = (host, sorted(versions))

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.terminate()

    def close(self, timeout: float | None = None) -> None:
        """Stops accepting new calls, lets runs in flight finish and deliver, then stops the workers.

        A ``map`` running in another thread returns all its results, submitted calls and ``map_async`` finish;
        an ``imap`` this thread has not finished reading is not waited for. ``timeout`` (seconds) bounds the
        wait; what is still running then is killed.
        """
        if self._closed:
            return
        self._closed = True
        self._finish_close(timeout)

    def _finish_close(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            # Background maps (map_async, shutdown(wait=False)) and runs going in other threads finish and
            # deliver first: they may still submit batches.
            self._join_threads(deadline)
            self._dispatcher.wait_runs(_left(deadline))
            if self._calls is not None:
                self._calls.settle(_left(deadline))
            self._core.drain(_left(deadline))
        finally:
            self._stop(graceful=True)

    def _at_exit(self) -> None:
        """Interpreter exit: submitted calls finish and a ``shutdown(wait=False)`` completes first, as
        ``concurrent.futures`` does at exit; then the workers are stopped."""
        try:
            if self._calls is not None:
                self._calls.settle(None)
            self._join_threads(None)
        finally:
            self.terminate()

    def terminate(self) -> None:
        """Stops the workers now: SIGTERM to each process group, a bounded grace, then SIGKILL.

        Futures of calls still open fail with :class:`~slither.errors.PoolClosed`, saying whether the call
        had started.
        """
        self._closed = True
        self._stop(graceful=False)

    def _stop(self, graceful: bool) -> None:
        core = getattr(self, "_core", None)
        if core is None:
            return
        if self._calls is not None:
            self._calls.stop()
        core.shutdown(graceful)
        # Every thread this pool started is stopped and joined (bounded) before this returns.
        if self._calls is not None:
            self._calls.join("the pool was closed" if graceful else "the pool was terminated")
        self._join_threads(time.monotonic() + _JOIN_S)
        self._telemetry.close()
        _live_pools.discard(self)
        if not _live_pools:
            segments.trim()  # the last pool gone: cached shared memory nobody reads goes back to the system

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """``concurrent.futures.Executor.shutdown``: stop accepting work; ``wait`` for it to finish.

        ``cancel_futures=True`` cancels every submitted call that has not started (it never runs). With
        ``wait=False`` this returns at once and the pool stops in the background when the work is done.
        """
        if cancel_futures and self._calls is not None:
            self._calls.cancel_pending()
        if wait:
            self.close()
        elif not self._closed:
            self._closed = True
            self._spawn(self._finish_close, "slither-shutdown")

    def join(self, timeout: float | None = None) -> None:
        """``multiprocessing.Pool.join``: waits until the pool has stopped. Call ``close()`` first."""
        if not self._closed:
            raise ValueError("the pool is still running: call close() or terminate() before join()")
        self._join_threads(None if timeout is None else time.monotonic() + timeout)

    def _spawn(self, target: Callable[[], None], name: str) -> threading.Thread:
        """Starts a thread the pool joins at close, terminate and interpreter exit."""
        def run() -> None:
            try:
                target()
            finally:
                with self._lock:
                    self._pool_threads.discard(thread)

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._pool_threads.add(thread)
        thread.start()
        return thread

    def _join_threads(self, deadline: float | None) -> None:
        me = threading.current_thread()
        with self._lock:
            threads = [t for t in self._pool_threads if t is not me]
        for t in threads:
            t.join(_left(deadline))

    def __del__(self) -> None:
        try:
            if getattr(self, "_core", None) is not None:
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

    @overload
    def imap(self, fn: Callable[[T], R], iterable: Iterable[T], **options: Unpack[MapOptions]) -> Iterator[R]: ...
    @overload
    def imap(self, fn: str, iterable: Iterable[Any], **options: Unpack[MapOptions]) -> Iterator[Any]: ...
    def imap(self, fn: str | Callable[..., Any], iterable: Iterable[Any], **options: Unpack[MapOptions]) -> Iterator[Any]:
        """Streams ``fn(item)`` for every item, in input order (or as completed with ``ordered=False``).

        Options (shared by every map-like call): ``batch_size=`` (alias ``chunksize=``) or ``batching=``,
        ``max_in_flight=`` (default ``2 × workers``), ``ordered=True``, ``batch_timeout=`` (seconds per batch;
        past it the worker is killed and replaced and the batch fails with BatchTimeout), ``on_error=``
        (``"raise"``, ``"skip"``, ``"retry"``, a Retry or a callable), ``progress=False``.

        Input is consumed lazily: at most ``max_in_flight`` batches are outstanding. Under
        ``on_error="skip"`` failed items are left out (use :meth:`dispatch` to see them). An unknown option
        is a TypeError naming the closest valid one.
        """
        return self._dispatcher.imap(fn, iterable, "item", None, "Pool.imap", **options)

    @overload
    def imap_unordered(self, fn: Callable[[T], R], iterable: Iterable[T], chunksize: int | None = None,
                       **options: Unpack[UnorderedOptions]) -> Iterator[R]: ...
    @overload
    def imap_unordered(self, fn: str, iterable: Iterable[Any], chunksize: int | None = None,
                       **options: Unpack[UnorderedOptions]) -> Iterator[Any]: ...
    def imap_unordered(self, fn: str | Callable[..., Any], iterable: Iterable[Any], chunksize: int | None = None,
                       **options: Unpack[UnorderedOptions]) -> Iterator[Any]:
        """``multiprocessing.Pool.imap_unordered``: :meth:`imap` with ``ordered=False``."""
        return self._dispatcher.imap(fn, iterable, "item", None, "Pool.imap_unordered",
                                     **dict(options, chunksize=chunksize, ordered=False))

    # An incompatible override, on purpose: Executor.map returns an iterator, this a list (as multiprocessing's
    # map), which a program iterating over the result accepts; and a callable needs at least one iterable here
    # (without one this raises TypeError, where Executor.map returns an empty iterator).
    @overload  # type: ignore[override]
    def map(self, fn: Callable[[T], R], iterable: Iterable[T], /, *, timeout: float | None = None,
            chunksize: int | None = None, **options: Unpack[ListOptions]) -> list[R]: ...
    @overload
    def map(self, fn: Callable[[T, T2], R], iterable: Iterable[T], iterable2: Iterable[T2], /, *,
            timeout: float | None = None, chunksize: int | None = None, **options: Unpack[ListOptions]) -> list[R]: ...
    @overload
    def map(self, fn: Callable[..., R], iterable: Iterable[Any], iterable2: Iterable[Any], iterable3: Iterable[Any], /,
            *iterables: Iterable[Any], timeout: float | None = None, chunksize: int | None = None,
            **options: Unpack[ListOptions]) -> list[R]: ...
    @overload
    def map(self, fn: str, /, *iterables: Iterable[Any], timeout: float | None = None, chunksize: int | None = None,
            **options: Unpack[ListOptions]) -> list[Any]: ...
    def map(self, fn: str | Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,  # pyright: ignore[reportIncompatibleMethodOverride]
            chunksize: int | None = None, **options: Unpack[ListOptions]) -> list[Any]:
        """``fn(item)`` for every item, as a list in input order.

        As ``Executor.map``: several iterables are zipped and their tuples spread (``fn(a, b)`` per pair);
        ``timeout`` (seconds, from this call) bounds the wait for all results: past it the remaining work
        is cancelled (workers running it are killed and replaced) and ``concurrent.futures.TimeoutError``
        is raised. ``chunksize`` is an alias of ``batch_size`` (default: sized automatically). Other options
        as in :meth:`imap`.

        Returns a ``list`` (as ``multiprocessing.Pool.map`` does) once every result is in; an Executor
        program that iterates over ``map``'s result works unchanged. For results as they arrive use
        :meth:`imap`, or :class:`slither.ProcessPoolExecutor`, whose ``map`` is the stdlib's lazy one.
        """
        return collect(Results(self._map_engine("Pool.map", fn, iterables, timeout, chunksize, options)))

    def _map_engine(self, where: str, fn: str | Callable[..., Any], iterables: tuple[Iterable[Any], ...],
                    timeout: float | None, chunksize: int | None, options: Mapping[str, Any],
                    poll: float | None = None) -> Engine:
        """``map``'s arguments as an engine: several iterables zipped and spread, ``timeout`` as a deadline."""
        if not iterables:
            raise TypeError(f"{where}() needs at least one iterable")
        _config.seconds("timeout", timeout, positive=False, optional=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        iterable: Iterable[Any]
        if len(iterables) > 1:
            fn, iterable = _star(fn), Zipped(iterables)
        else:
            iterable = iterables[0]
        opts = _config.dispatch_options(where, dict(options, chunksize=chunksize))
        return self._dispatcher.engine(fn, iterable, mode="item", deadline=deadline, poll=poll, **opts)

    @overload
    def starmap(self, fn: Callable[..., R], iterable: Iterable[Iterable[Any]], chunksize: int | None = None,
                **options: Unpack[ListOptions]) -> list[R]: ...
    @overload
    def starmap(self, fn: str, iterable: Iterable[Iterable[Any]], chunksize: int | None = None,
                **options: Unpack[ListOptions]) -> list[Any]: ...
    def starmap(self, fn: str | Callable[..., Any], iterable: Iterable[Iterable[Any]], chunksize: int | None = None,
                **options: Unpack[ListOptions]) -> list[Any]:
        """``multiprocessing.Pool.starmap``: ``fn(*args)`` for every argument tuple, as a list in input order."""
        return collect(Results(self._map_engine("Pool.starmap", _star(fn), (iterable,), None, chunksize, options)))

    @overload
    def imap_batches(self, fn: Callable[[list[T]], list[R]], iterable: Iterable[T],
                     **options: Unpack[MapOptions]) -> Iterator[R]: ...
    @overload
    def imap_batches(self, fn: str, iterable: Iterable[Any], **options: Unpack[MapOptions]) -> Iterator[Any]: ...
    def imap_batches(self, fn: str | Callable[..., Any], iterable: Iterable[Any],
                     **options: Unpack[MapOptions]) -> Iterator[Any]:
        """Calls ``fn(list_of_items) -> list`` once per batch and streams the per-item results.

        A batch function must return a list of the same length as its batch; anything else fails the
        batch with :class:`~slither.errors.BatchLengthError`. Options as in :meth:`imap` (default
        ``batch_size=64``).
        """
        return self._dispatcher.imap(fn, iterable, "batch", None, "Pool.imap_batches", **options)

    @overload
    def map_batches(self, fn: Callable[[list[T]], list[R]], iterable: Iterable[T],
                    **options: Unpack[MapOptions]) -> list[R]: ...
    @overload
    def map_batches(self, fn: str, iterable: Iterable[Any], **options: Unpack[MapOptions]) -> list[Any]: ...
    def map_batches(self, fn: str | Callable[..., Any], iterable: Iterable[Any],
                    **options: Unpack[MapOptions]) -> list[Any]:
        """``fn(batch)`` per batch, results flattened into one list in input order."""
        return collect(self._dispatcher.imap(fn, iterable, "batch", None, "Pool.map_batches", **options))

    @overload
    def dispatch(self, fn: Callable[[T], R], iterable: Iterable[T], *, per: Literal["item"] = "item",
                 **options: Unpack[MapOptions]) -> Outcome[R]: ...
    @overload
    def dispatch(self, fn: Callable[[list[T]], list[R]], iterable: Iterable[T], *, per: Literal["batch"],
                 **options: Unpack[MapOptions]) -> Outcome[R]: ...
    @overload
    def dispatch(self, fn: str, iterable: Iterable[Any], *, per: Per = "item",
                 **options: Unpack[MapOptions]) -> Outcome[Any]: ...
    def dispatch(self, fn: str | Callable[..., Any], iterable: Iterable[Any], *, per: Per = "item",
                 **options: Unpack[MapOptions]) -> Outcome[Any]:
        """Runs the whole input and returns an :class:`~slither.Outcome`: every item's result or Failure.

        ``per="item"`` calls ``fn(item)``; ``per="batch"`` calls ``fn(batch) -> list``. Options as in
        :meth:`imap`, except that ``on_error`` defaults to ``"skip"``.
        """
        return self._dispatcher.dispatch(fn, iterable, None, per=per, **options)

    # -- multiprocessing's asynchronous forms -------------------------------------------------
    @overload
    def apply(self, fn: Callable[..., R], args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None) -> R: ...
    @overload
    def apply(self, fn: str, args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None) -> Any: ...
    def apply(self, fn: str | Callable[..., Any], args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None) -> Any:
        """``multiprocessing.Pool.apply``: ``fn(*args, **kwds)`` in a worker; its result."""
        return self.call(fn, *args, **(kwds or {}))

    def apply_async(self, fn: str | Callable[..., Any], args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None,
                    callback: Callable[[Any], object] | None = None,
                    error_callback: Callable[[BaseException], object] | None = None) -> AsyncResult:
        """``multiprocessing.Pool.apply_async``: an :class:`AsyncResult` for ``fn(*args, **kwds)``.

        ``callback(result)`` or ``error_callback(exception)`` runs in a slither thread when the call ends.
        """
        return AsyncResult(self.submit(fn, *args, **(kwds or {})), callback, error_callback)

    def map_async(self, fn: str | Callable[..., Any], iterable: Iterable[Any], chunksize: int | None = None,
                  callback: Callable[[Any], object] | None = None,
                  error_callback: Callable[[BaseException], object] | None = None,
                  **options: Unpack[ListOptions]) -> AsyncResult:
        """``multiprocessing.Pool.map_async``: :meth:`map` in the background; ``get()`` returns the list."""
        engine = self._map_engine("Pool.map_async", fn, (iterable,), None, chunksize, options)
        return self._background(engine, callback, error_callback)

    def starmap_async(self, fn: str | Callable[..., Any], iterable: Iterable[Iterable[Any]],
                      chunksize: int | None = None, callback: Callable[[Any], object] | None = None,
                      error_callback: Callable[[BaseException], object] | None = None,
                      **options: Unpack[ListOptions]) -> AsyncResult:
        """``multiprocessing.Pool.starmap_async``: :meth:`starmap` in the background."""
        engine = self._map_engine("Pool.starmap_async", _star(fn), (iterable,), None, chunksize, options)
        return self._background(engine, callback, error_callback)

    def _background(self, engine: Engine, callback: Callable[[Any], object] | None,
                    error_callback: Callable[[BaseException], object] | None) -> AsyncResult:
        """Collects ``engine``'s results in a pool thread (the engine exists already: close() waits for it)."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        fut.set_running_or_notify_cancel()

        def run() -> None:
            try:
                fut.set_result(collect(Results(engine)))
            except BaseException as exc:
                fut.set_exception(exc)

        self._spawn(run, "slither-map-async")
        return AsyncResult(fut, callback, error_callback)

    # -- awaitables ---------------------------------------------------------------------------
    @overload
    async def acall(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    async def acall(self, fn: str, /, *args: Any, **kwargs: Any) -> Any: ...
    async def acall(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Awaitable :meth:`call`: the event loop keeps running while the call runs in a worker.

        Cancelling the awaiting task cancels the call, killing (and replacing) the worker running it.
        """
        from slither import _aio  # asyncio only when an awaitable is used: it costs every import ~20 ms
        return await _aio.acall(self, fn, args, kwargs)

    @overload
    def aimap(self, fn: Callable[[T], R], iterable: Iterable[T] | AsyncIterable[T],
              **options: Unpack[MapOptions]) -> AsyncIterator[R]: ...
    @overload
    def aimap(self, fn: str, iterable: Iterable[Any] | AsyncIterable[Any],
              **options: Unpack[MapOptions]) -> AsyncIterator[Any]: ...
    def aimap(self, fn: str | Callable[..., Any], iterable: Any, **options: Unpack[MapOptions]) -> AsyncIterator[Any]:
        """``async for r in pool.aimap(fn, items)``: :meth:`imap` without blocking the event loop.

        Same options as :meth:`imap` (``ordered=False`` for as-completed). ``iterable`` may be a plain or an
        async iterable; it is consumed lazily. Cancelling the consuming task, or closing the iterator
        early, cancels the remaining work and kills workers running it.
        """
        _config.dispatch_options("Pool.aimap", options)  # a bad option fails here, not at the first await
        from slither import _aio
        return _aio.aimap(self, fn, iterable, options)

    @overload
    async def amap(self, fn: Callable[[T], R], iterable: Iterable[T], /, *, timeout: float | None = None,
                   chunksize: int | None = None, **options: Unpack[ListOptions]) -> list[R]: ...
    @overload
    async def amap(self, fn: Callable[[T, T2], R], iterable: Iterable[T], iterable2: Iterable[T2], /, *,
                   timeout: float | None = None, chunksize: int | None = None,
                   **options: Unpack[ListOptions]) -> list[R]: ...
    @overload
    async def amap(self, fn: Callable[..., R], iterable: Iterable[Any], iterable2: Iterable[Any],
                   iterable3: Iterable[Any], /, *iterables: Iterable[Any], timeout: float | None = None,
                   chunksize: int | None = None, **options: Unpack[ListOptions]) -> list[R]: ...
    @overload
    async def amap(self, fn: str, /, *iterables: Iterable[Any], timeout: float | None = None,
                   chunksize: int | None = None, **options: Unpack[ListOptions]) -> list[Any]: ...
    async def amap(self, fn: str | Callable[..., Any], *iterables: Any, timeout: float | None = None,
                   chunksize: int | None = None, **options: Unpack[ListOptions]) -> list[Any]:
        """Awaitable :meth:`map` (same arguments): the list of results, in input order."""
        from slither import _aio
        engine = self._map_engine("Pool.amap", fn, iterables, timeout, chunksize, options, poll=_aio.POLL_S)
        return [r async for r in _aio.results(self, engine)]

    # -- single calls -------------------------------------------------------------------------
    @overload
    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def call(self, fn: str, /, *args: Any, **kwargs: Any) -> Any: ...
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

    @overload
    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> concurrent.futures.Future[R]: ...
    @overload
    def submit(self, fn: str, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]: ...
    def submit(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        """Like :meth:`call`, but returns a :class:`concurrent.futures.Future` at once.

        The future stays pending (``cancel()`` works, and a cancelled call never runs) until the call is
        handed to a worker; calls beyond ``2 × workers`` in flight wait in the host.
        """
        return self._submit(fn, args, kwargs, None)

    def _submit(self, fn: str | Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                timeout: float | None) -> concurrent.futures.Future[Any]:
        self._check_open()
        fn = _without_context(fn)
        payload = self._dispatcher.call_payload(fn, args, kwargs)
        with self._lock:
            if self._calls is None:
                self._calls = Calls(self._core, 2 * self.size)
        return self._calls.submit(payload, describe(fn), check_timeout(timeout))

    def broadcast(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> dict[int, Reply]:
        """Calls ``fn(*args, **kwargs)`` exactly once on every live worker: ``{worker index: Reply}``."""
        return self._dispatcher.broadcast(fn, args, kwargs)

    # -- sessions, introspection --------------------------------------------------------------
    def session(self, name: str | None = None, *, cleanup: str | Callable[..., Any] | None = None,
                timeout: float | None = 60.0) -> Session:
        """A session pinned to one worker (the least loaded now): strict affinity for every call.

        If no worker is ready (one is being replaced after a crash or recycled), waits up to ``timeout``
        seconds (None: without limit; 0: only a worker ready now) for one, then raises :class:`TimeoutError`.
        If the session's worker dies later, its next call raises :class:`~slither.errors.SessionLost`.
        ``cleanup`` runs on the worker when the session closes (if it is still alive). Raises ConfigError
        for a negative or NaN ``timeout``.
        """
        self._check_open()
        _config.seconds("timeout", timeout, positive=False, optional=True)
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


def _star(fn: str | Callable[..., Any]) -> Star:
    return Star(function_ref(fn), describe(fn))


def _without_context(fn: Any) -> Any:
    """``asyncio.to_thread`` (and others) wrap calls as ``partial(context.run, fn, ...)``. Context variables do
    not cross processes and a Context does not pickle: run ``fn`` itself."""
    if (isinstance(fn, functools.partial) and isinstance(getattr(fn.func, "__self__", None), contextvars.Context)
            and fn.args):
        return functools.partial(fn.args[0], *fn.args[1:], **fn.keywords)
    return fn


_DEFAULTS = {name: p.default for name, p in inspect.signature(Pool.__init__).parameters.items()
             if p.default is not p.empty}


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _worker_sys_path(same_interpreter: bool) -> list[str]:
    """The host's import path for workers, so that functions importable here are importable there."""
    cwd = os.getcwd()
    paths = [cwd if p == "" else p for p in sys.path]
    if same_interpreter:
        return paths
    # Another interpreter keeps its own stdlib and site-packages; pass only the user's directories.
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return [p for p in paths if not any(os.path.realpath(p).startswith(pre) for pre in prefixes)]
