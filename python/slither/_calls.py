"""Single calls behind ``Pool.submit`` and ``apply_async``: futures that stay cancellable until their call starts.

::

    submit ─▶ pending (host side, FIFO) ─▶ core.submit while fewer than `window` calls are in flight
                                                │  the future turns "running" here: cancel() returns False
    collector thread ◀── run.next ◀─────────────┘  resolves futures, feeds the next pending calls

A future cancelled while pending is dropped before it reaches a worker, so its call never runs. The
collector thread is started on the first call, and ``stop()`` joins it (bounded) from ``close()``,
``terminate()`` and the interpreter-exit hook, so that no slither thread is inside the interpreter
while it finalizes.
"""

from __future__ import annotations

import collections
import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from slither import errors
from slither._decode import single_result
from slither._worker.buffers import Encoded

_POLL_S = 0.1  # how soon the collector notices stop(); it waits with the GIL released
_JOIN_S = 5.0  # bound on joining the collector (a user done-callback could block it)


class Calls:
    def __init__(self, core: Any, window: int) -> None:
        self._core = core
        self._window = window
        self._run = core.new_run()
        self._cond = threading.Condition()
        self._pending: collections.deque[tuple[Future[Any], Encoded, str, float | None]] = collections.deque()
        self._live: dict[int, tuple[Future[Any], str]] = {}
        self._tag = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    def submit(self, payload: Encoded, name: str, timeout: float | None = None) -> Future[Any]:
        """Queues one call (``timeout``: seconds from when a worker starts it); its future, pending."""
        fut: Future[Any] = Future()
        with self._cond:
            if self._stopping:
                raise errors.PoolClosed("the pool is closed")
            self._pending.append((fut, payload, name, timeout))
            failed = self._feed()
            if self._thread is None:
                self._thread = threading.Thread(target=self._collect, name="slither-futures", daemon=True)
                self._thread.start()
        _resolve_all(failed)
        return fut

    def _feed(self) -> list[tuple[Future[Any], BaseException]]:
        """Hands pending calls to the core while the window has room (holding the lock)."""
        failed: list[tuple[Future[Any], BaseException]] = []
        while not self._stopping and self._pending and len(self._live) < self._window:
            fut, payload, name, timeout = self._pending.popleft()
            if not fut.set_running_or_notify_cancel():
                continue  # cancelled while pending: it never runs
            self._tag += 1
            try:
                self._core.submit(self._run, self._tag, payload.data, 1, timeout, None, payload.fd)
            except BaseException as exc:
                failed.append((fut, exc))
                continue
            finally:
                payload.release()
            self._live[self._tag] = (fut, name)
        self._cond.notify_all()
        return failed

    def _collect(self) -> None:
        while True:
            try:
                c = self._run.next(_POLL_S)
            except BaseException:  # the core is gone
                return
            if c is None:
                with self._cond:
                    if self._stopping:
                        # stop() comes after the core's shutdown: every answer it will give is already here.
                        return
                continue
            with self._cond:
                fut, name = self._live.pop(c.tag, (None, ""))
                failed = self._feed()
            _resolve_all(failed)
            if fut is None:
                continue
            if c.kind == "aborted":
                state = "was killed while running" if c.started else "never started"
                fut.set_exception(errors.PoolClosed(f"{name} {state}: {c.data}"))
                continue
            try:
                fut.set_result(single_result(c, name))
            except BaseException as exc:  # every outcome resolves the future
                fut.set_exception(exc)

    def cancel_pending(self) -> int:
        """Cancels every call that has not started; returns how many."""
        with self._cond:
            pending = list(self._pending)
            self._pending.clear()
            self._cond.notify_all()
        return sum(1 for fut, *_ in pending if fut.cancel())

    def settle(self, timeout: float | None) -> bool:
        """Waits until every submitted call has started and been answered; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending or self._live:
                if self._thread is None or not self._thread.is_alive():
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(_POLL_S if left is None else min(left, _POLL_S))
        return True

    def stop(self) -> None:
        """No call is handed to the core from now on (call before the core shuts down)."""
        with self._cond:
            self._stopping = True

    def join(self, why: str) -> None:
        """Joins the collector (after the core shut down); futures still open fail with PoolClosed saying
        whether their call had started."""
        with self._cond:
            self._stopping = True
            pending = list(self._pending)
            self._pending.clear()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # The core was shut down first, so the calls in flight are answering (or aborted) now.
            thread.join(_JOIN_S)
        with self._cond:
            live = list(self._live.values())
            self._live.clear()
        failed = [(fut, errors.PoolClosed(f"{name} never started: {why}"))
                  for fut, _, name, _ in pending if fut.set_running_or_notify_cancel()]
        failed += [(fut, errors.PoolClosed(f"{name} was killed while running: {why}")) for fut, name in live]
        _resolve_all(failed)


def _resolve_all(failed: list[tuple[Future[Any], BaseException]]) -> None:
    for fut, exc in failed:
        if not fut.done():
            fut.set_exception(exc)


class _GetTimeout(multiprocessing.TimeoutError, TimeoutError):
    """``AsyncResult.get`` ran out of time: catchable as ``multiprocessing.TimeoutError`` and as ``TimeoutError``."""


class AsyncResult:
    """What ``apply_async`` / ``map_async`` return, as in ``multiprocessing``: ``get``, ``wait``, ``ready``,
    ``successful``. ``future`` is the underlying :class:`concurrent.futures.Future`.

    As in multiprocessing, ``callback(result)`` or ``error_callback(exception)`` has run (in a slither
    thread) by the time the result is ready.
    """

    def __init__(self, future: Future[Any], callback: Callable[[Any], object] | None = None,
                 error_callback: Callable[[BaseException], object] | None = None) -> None:
        self.future = future
        self._callback = callback
        self._error_callback = error_callback
        self._ready = threading.Event()
        future.add_done_callback(self._done)

    def _done(self, f: Future[Any]) -> None:
        try:
            if f.cancelled():
                return
            exc = f.exception()
            if exc is None:
                if self._callback is not None:
                    self._callback(f.result())
            elif self._error_callback is not None:
                self._error_callback(exc)
        finally:
            self._ready.set()

    def get(self, timeout: float | None = None) -> Any:
        """The result (or raises the call's exception); ``multiprocessing.TimeoutError`` after ``timeout`` s."""
        if not self._ready.wait(timeout):
            raise _GetTimeout(f"the result was not ready within {timeout} s")
        return self.future.result(0)

    def wait(self, timeout: float | None = None) -> None:
        """Waits until the result is ready or ``timeout`` seconds have passed."""
        self._ready.wait(timeout)

    def ready(self) -> bool:
        return self._ready.is_set()

    def successful(self) -> bool:
        """Whether the call returned without raising. ``ValueError`` if it is not ready yet."""
        if not self._ready.is_set():
            raise ValueError(f"{self!r} not ready")
        return not self.future.cancelled() and self.future.exception() is None

    def __repr__(self) -> str:
        return f"<slither.AsyncResult {'ready' if self._ready.is_set() else 'pending'}>"
