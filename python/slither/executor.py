"""``slither.ProcessPoolExecutor``: the stdlib executor's exact surface, on a slither pool.

:class:`slither.Pool` is already a ``concurrent.futures.Executor``, but its ``map`` returns a ``list`` once
every result is in (as ``multiprocessing.Pool.map`` does), because a list is what ``len``, indexing,
``numpy.array(...)`` and the other ``Pool`` users expect. Programs written for
``concurrent.futures.ProcessPoolExecutor`` may instead rely on ``map`` being lazy: every call is submitted
at once, results are yielded in order as they arrive, and ``TimeoutError`` comes from ``__next__``. This
class is a ``Pool`` whose ``map`` does exactly that, built on :meth:`Pool.submit` the way the stdlib builds
its own on its ``submit`` (chunks of ``chunksize`` calls travel as one call).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, overload

from slither import _config
from slither._star import run_chunk
from slither.pool import Pool

if TYPE_CHECKING:
    from slither._types import T2, R, T

__all__ = ["ProcessPoolExecutor"]


class ProcessPoolExecutor(Pool):
    """A :class:`slither.Pool` whose ``map`` has ``concurrent.futures.Executor.map``'s lazy semantics.

    Construct it as the stdlib one (``ProcessPoolExecutor(max_workers=4, initializer=..., initargs=...,
    max_tasks_per_child=...)``) or with any :class:`Pool` argument; everything but ``map`` is ``Pool``'s.
    """

    @overload  # type: ignore[override]
    def map(self, fn: Callable[[T], R], iterable: Iterable[T], /, *, timeout: float | None = None,
            chunksize: int = 1) -> Iterator[R]: ...
    @overload
    def map(self, fn: Callable[[T, T2], R], iterable: Iterable[T], iterable2: Iterable[T2], /, *,
            timeout: float | None = None, chunksize: int = 1) -> Iterator[R]: ...
    @overload
    def map(self, fn: Callable[..., R], iterable: Iterable[Any], iterable2: Iterable[Any], iterable3: Iterable[Any], /,
            *iterables: Iterable[Any], timeout: float | None = None, chunksize: int = 1) -> Iterator[R]: ...
    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],  # pyright: ignore[reportIncompatibleMethodOverride]
            timeout: float | None = None, chunksize: int = 1) -> Iterator[Any]:
        """``fn(*args)`` for every tuple of the zipped ``iterables``, yielded lazily in input order.

        As ``concurrent.futures.ProcessPoolExecutor.map``: every call is submitted before this returns (the
        input is read at once); ``chunksize`` calls travel to a worker as one; ``timeout`` (seconds, counted
        from this call) bounds the wait: ``__next__`` raises ``TimeoutError`` when the next result is not
        in by then, and the calls still waiting in the host are cancelled (those already handed to a worker,
        at most ``2 × workers``, run to the end). An exception raised by ``fn`` is raised from ``__next__``
        when its result's turn comes. Closing the iterator early cancels the same way.

        Raises:
            TypeError: no iterable. ConfigError: ``chunksize`` < 1 or a negative ``timeout``.
        """
        if not iterables:
            raise TypeError("ProcessPoolExecutor.map() needs at least one iterable")
        _config.seconds("timeout", timeout, positive=False, optional=True)
        _config.positive_int("chunksize", chunksize, optional=False)
        end = None if timeout is None else time.monotonic() + timeout
        calls = zip(*iterables)
        futures: list[Future[Any]]
        if chunksize == 1:
            futures = [self.submit(fn, *args) for args in calls]
        else:
            futures = [self.submit(run_chunk, fn, chunk) for chunk in _chunks(calls, chunksize)]
        return _yield_in_order(futures, end, chunked=chunksize != 1)


def _chunks(calls: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    while chunk := list(itertools.islice(calls, size)):
        yield chunk


def _yield_in_order(futures: list[Future[Any]], end: float | None, *, chunked: bool) -> Iterator[Any]:
    # A generator, so nothing waits before the first __next__; the futures exist already.
    pending = futures[::-1]
    try:
        while pending:
            future = pending.pop()
            try:
                value = future.result() if end is None else future.result(end - time.monotonic())
            except BaseException:
                future.cancel()
                raise
            if chunked:
                yield from value
            else:
                yield value
    finally:
        for future in pending:
            future.cancel()
