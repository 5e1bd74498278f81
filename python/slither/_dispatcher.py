"""The dispatcher Pool and Session share: every way of sending work to the core, in one object.

::

    Pool ─┐                       ┌─▶ Engine (map, imap, dispatch...: _dispatch.py)
          ├─▶ Dispatcher(core) ───┼─▶ call: one batch, one answer (optionally pinned, optionally bounded)
    Session (pin) ┘               └─▶ broadcast: one call pinned to each live worker

It also knows which runs are in flight, so that ``close()`` can let them finish and deliver before the
core stops accepting their batches.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, overload

from slither import _config, _decode, _payload, errors
from slither._dispatch import Engine
from slither._functions import describe, function_ref
from slither._payload import Encoded
from slither.batching import Batching, resolve_batching
from slither.outcome import Outcome, Reply

if TYPE_CHECKING:
    from concurrent.futures import Future

    from slither._types import P, R


def check_timeout(timeout: float | None, name: str = "timeout") -> float | None:
    """``timeout`` if it is None or a positive, finite number of seconds; else ConfigError naming ``name``."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (timeout > 0 and math.isfinite(timeout)):
        raise errors.ConfigError(f"{name} must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


class Dispatcher:
    def __init__(self, core: Any, telemetry: Any, is_closed: Callable[[], bool], by_value_ok: bool,
                 versions: tuple[str, list[str]]) -> None:
        self.core = core
        self.telemetry = telemetry
        self._is_closed = is_closed
        self._by_value_ok = by_value_ok
        self._versions = versions
        self._runs: dict[int, int] = {}  # id of a running engine -> the thread driving it
        self._runs_changed = threading.Condition()

    # -- state ----------------------------------------------------------------------------------
    def check_open(self) -> None:
        if self._is_closed():
            raise errors.PoolClosed("the pool is closed")

    def check_transferable(self, ref: tuple[str, Any], fn: str | Callable[..., Any]) -> None:
        """A function sent by value carries bytecode: refuse it when the workers run another Python version."""
        if ref[0] == "value" and not self._by_value_ok:
            host, workers = self._versions
            raise errors.SerializationError(
                f"{describe(fn)} must travel by value (it is a lambda, a closure or defined in __main__), but the workers "
                f"run Python {', '.join(workers)} and this host {host}: bytecode does not cross versions. Define it "
                "in a module the workers can import and pass it (or its 'module:function' name)."
            )

    def running(self) -> _Running:
        """Marks a run in flight for as long as the block lasts (see :meth:`wait_runs`)."""
        return _Running(self)

    def wait_runs(self, timeout: float | None) -> bool:
        """Waits until every run driven by another thread has finished; False if ``timeout`` passed first.

        Runs this thread drives (an ``imap`` it has not finished reading) cannot finish while it waits here,
        so they are not waited for.
        """
        me = threading.get_ident()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._runs_changed:
            while any(owner != me for owner in self._runs.values()):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._runs_changed.wait(left)
        return True

    def record_failures(self, worker: int | None, pid: int | None, count: int) -> None:
        """Counts per-item failures in the worker's statistics."""
        if worker is None or count <= 0:
            return
        for w in self.core.workers():
            if w.index == worker and w.pid == pid:
                self.core.record_failures(worker, w.generation, count)
                return

    # -- dispatch -------------------------------------------------------------------------------
    def engine(self, fn: str | Callable[..., Any], iterable: Iterable[Any], *, mode: str,
               batch_size: int | None = None, batching: Batching | None = None, default_batch: int | None = None,
               max_in_flight: int | None = None, ordered: bool = True, timeout: float | None = None,
               on_error: Any = "raise", pin: tuple[int, int] | None = None, progress: bool = False,
               deadline: float | None = None, poll: float | None = None) -> Engine:
        self.check_open()
        strategy = resolve_batching(batching, batch_size, default_batch)
        window = max_in_flight if max_in_flight is not None else 2 * int(self.core.size)
        return Engine(self, fn, iterable, mode=mode, batching=strategy, max_in_flight=window, ordered=ordered,
                      timeout=check_timeout(timeout, "batch_timeout"), on_error=on_error, pin=pin, progress=progress,
                      deadline=deadline, poll=poll)

    def imap(self, fn: str | Callable[..., Any], iterable: Iterable[Any], mode: str, pin: tuple[int, int] | None,
             where: str = "imap", **options: Any) -> Iterator[Any]:
        """The per-item results of ``mode`` "item" or "batch", streamed (see ``Pool.imap``).

        ``options`` are the public keywords (``batch_timeout=``, ``chunksize=``...); ``where`` names the
        caller in the TypeError an unknown one gets.
        """
        default_batch = None if mode == "item" else 64
        return Results(self.engine(fn, iterable, mode=mode, default_batch=default_batch, pin=pin,
                                   **_config.dispatch_options(where, options)))

    def dispatch(self, fn: str | Callable[..., Any], iterable: Iterable[Any], pin: tuple[int, int] | None, *,
                 per: str = "item", on_error: Any = "skip", **options: Any) -> Outcome[Any]:
        """Every item's result or Failure (see ``Pool.dispatch``)."""
        if per not in ("item", "batch"):
            raise errors.ConfigError(f"per must be 'item' or 'batch', got {per!r}")
        engine = self.engine(fn, iterable, mode=per, default_batch=None if per == "item" else 64, pin=pin,
                             on_error=on_error, **_config.dispatch_options("dispatch", options))
        results: list[Any] = []
        indices: list[int] = []
        failures = []
        for start, values, failure in engine.entries():
            if failure is None:
                results.extend(values)
                indices.extend(range(start, start + len(values)))
            else:
                failures.append(failure)
        return Outcome(results=results, failures=failures, stats=engine.stats(), indices=indices)

    def call_payload(self, fn: str | Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Encoded:
        """One call pickled; SerializationError names the argument that will not pickle."""
        ref = function_ref(fn)
        self.check_transferable(ref, fn)
        return _payload.call_payload(ref, fn, args, kwargs, _payload.ref_mentions(ref))

    def call(self, fn: str | Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *,
             pin: tuple[int, int] | None = None, timeout: float | None = None) -> Any:
        """Runs ``fn(*args, **kwargs)`` once in a worker (``pin``: that one) and returns its result."""
        self.check_open()
        timeout = check_timeout(timeout)
        payload = self.call_payload(fn, args, kwargs)
        run = self.core.new_run()
        with self.running():
            try:
                self.core.submit(run, 0, payload.data, 1, timeout, pin, payload.fd)
            finally:
                payload.release()
            try:
                c = run.next(None)
            except BaseException:
                self.core.cancel(run)
                raise
        return _decode.single_result(c, fn, pinned=pin is not None)

    def broadcast(self, fn: str | Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[int, Reply]:
        """Calls ``fn(*args, **kwargs)`` exactly once on every live worker: ``{worker index: Reply}``."""
        self.check_open()
        payload = self.call_payload(fn, args, kwargs)
        targets = [(w.index, w.generation) for w in self.core.workers() if w.state == "ready"]
        run = self.core.new_run()
        replies: dict[int, Reply] = {}
        with self.running():
            try:
                for index, generation in targets:
                    self.core.submit(run, index, payload.data, 1, None, (index, generation), payload.fd)
            finally:
                payload.release()
            try:
                while len(replies) < len(targets):
                    c = run.next(None)
                    value = _decode.single_result(c, fn, pinned=True)
                    replies[c.tag] = Reply(worker=c.tag, pid=c.pid, value=value)
            except BaseException:
                self.core.cancel(run)
                raise
        return dict(sorted(replies.items()))


class _Running:
    """``with dispatcher.running():``: a run in flight for as long as the block lasts."""

    __slots__ = ("_dispatcher",)

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def __enter__(self) -> None:
        d = self._dispatcher
        with d._runs_changed:
            d._runs[id(self)] = threading.get_ident()

    def __exit__(self, *exc: object) -> None:
        d = self._dispatcher
        with d._runs_changed:
            del d._runs[id(self)]
            d._runs_changed.notify_all()


class CallOptions:
    """Single calls with options: ``pool.options(timeout=5).call(fn, x)``.

    ``timeout`` (seconds) bounds the call from the moment a worker starts it: past it the worker is
    killed and replaced, and the call raises :class:`~slither.errors.BatchTimeout`. No keyword is taken
    from ``fn``: every argument given to :meth:`call` or :meth:`submit` goes to it.
    """

    def __init__(self, call: Callable[..., Any], submit: Callable[..., Future[Any]] | None,
                 timeout: float | None) -> None:
        self._call = call
        self._submit = submit
        self.timeout = check_timeout(timeout)

    @overload
    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def call(self, fn: str, /, *args: Any, **kwargs: Any) -> Any: ...
    def call(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Runs ``fn(*args, **kwargs)`` once in a worker within the options' bounds; returns its result."""
        return self._call(fn, args, kwargs, self.timeout)

    @overload
    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]: ...
    @overload
    def submit(self, fn: str, /, *args: Any, **kwargs: Any) -> Future[Any]: ...
    def submit(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Like :meth:`call`, but returns a :class:`concurrent.futures.Future` at once (pools only)."""
        if self._submit is None:
            raise errors.ConfigError("submit() is not available here: a session's calls run one at a time, use call()")
        return self._submit(fn, args, kwargs, self.timeout)

    def __repr__(self) -> str:
        return f"<slither.CallOptions timeout={self.timeout}>"


class Results(Iterator[Any]):
    """The iterator ``imap`` returns; :func:`collect` drains its chunks without touching items one by one."""

    def __init__(self, engine: Engine) -> None:
        self._chunks = (values for _, values, failure in engine.entries() if failure is None)
        self._current: Iterator[Any] = iter(())

    def __iter__(self) -> Results:
        return self

    def __next__(self) -> Any:
        while True:
            try:
                return next(self._current)
            except StopIteration:
                self._current = iter(next(self._chunks))

    def close(self) -> None:
        self._chunks.close()

    def drain(self) -> list[Any]:
        out: list[Any] = list(self._current)
        for chunk in self._chunks:
            out.extend(chunk)
        return out


def collect(results: Iterator[Any]) -> list[Any]:
    """Every result of an ``imap`` as a list."""
    return results.drain() if isinstance(results, Results) else list(results)
