"""Awaitable forms (``acall``, ``aimap``, ``amap``): slither work that never blocks an event loop.

::

    event loop                                   feeder thread (one per awaitable)
    async for r in aimap(...) ◀── asyncio.Queue ◀── engine.entries()  (the same loop as imap; GIL released
         │                            bounded       │                   while it waits on the core)
         └── cancelled / closed early ─────────────▶ engine.interrupt(): the run is cancelled and the
                                                     workers running its batches are killed and replaced

The feeder hands over at most ``_BUFFER`` chunks ahead of the consumer, and the engine consumes the input
lazily, so a slow consumer holds back the input too. An async iterable input is read on the event loop,
one item at a time, as the engine asks for it. The feeder is a pool thread: close, terminate and
interpreter exit join it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from slither import _config, errors
from slither._functions import describe, function_ref
from slither._star import Star

if TYPE_CHECKING:
    from slither._dispatch import Engine
    from slither.pool import Pool

POLL_S = 0.1  # how soon a feeder sees a cancellation (it waits with the GIL released)
_BUFFER = 4  # chunks handed over and not yet consumed


async def acall(pool: Pool, fn: str | Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    call = Star(function_ref(fn), describe(fn), keywords=True)
    engine = pool._engine(call, [(args, kwargs)], mode="item", batch_size=1, max_in_flight=1, poll=POLL_S)
    feed = _Feed(pool, engine)
    try:
        async for _start, values, _failure in feed:
            return values[0]  # type: ignore[index]
    finally:
        feed.close()
    raise errors.SlitherError("the call ended without a result")  # pragma: no cover - the engine accounts for it


async def aimap(pool: Pool, fn: str | Callable[..., Any], iterable: Any, options: Mapping[str, Any]) -> AsyncIterator[Any]:
    if hasattr(iterable, "__aiter__"):
        iterable = _from_async(iterable, asyncio.get_running_loop())
    engine = pool._engine(fn, iterable, mode="item", poll=POLL_S, **_config.dispatch_options("Pool.aimap", options))
    async with contextlib.aclosing(results(pool, engine)) as values:  # closing this closes the feed now
        async for value in values:
            yield value


async def results(pool: Pool, engine: Engine) -> AsyncIterator[Any]:
    """The values of an engine built with ``poll=POLL_S``, in its order; failures skipped (as imap does)."""
    feed = _Feed(pool, engine)
    try:
        async for _start, values, failure in feed:
            if failure is None:
                for value in values:  # type: ignore[union-attr]
                    yield value
    finally:
        feed.close()  # the consumer stopped early (break, cancel, aclose): cancel what is left


class _Feed:
    """Runs one engine's loop in a pool thread and hands its entries to the running event loop."""

    def __init__(self, pool: Pool, engine: Engine) -> None:
        self._engine = engine
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._space = threading.Semaphore(_BUFFER)
        self._stop = threading.Event()
        self._finished = False
        pool._spawn(self._run, "slither-aio")

    def _run(self) -> None:
        entries = self._engine.entries()
        try:
            for entry in entries:
                while not self._space.acquire(timeout=POLL_S):
                    if self._stop.is_set():
                        return
                self._send(("entry", entry))
            self._send(("end", None))
        except BaseException as exc:
            self._send(("error", exc))
        finally:
            entries.close()  # an early stop cancels the run (and kills what it was running)

    def _send(self, message: tuple[str, Any]) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, message)
        except RuntimeError:  # the event loop is closed: nobody is waiting
            self._stop.set()

    def __aiter__(self) -> _Feed:
        return self

    async def __anext__(self) -> Any:
        if self._finished:
            raise StopAsyncIteration
        try:
            kind, value = await self._queue.get()
        except BaseException:
            self.close()
            raise
        self._space.release()
        if kind == "entry":
            return value
        self._finished = True
        if kind == "error":
            raise value
        raise StopAsyncIteration

    def close(self) -> None:
        """Stops the feeder; what is still running is cancelled and its workers are killed."""
        if self._finished:
            return
        self._finished = True
        self._stop.set()
        try:
            self._engine.interrupt(concurrent.futures.CancelledError("the awaiting task was cancelled"))
        except Exception:
            pass  # the pool is already stopped


def _from_async(source: Any, loop: asyncio.AbstractEventLoop) -> Iterator[Any]:
    """A plain iterator over an async iterable, for the feeder thread: each item is awaited on ``loop``."""
    it = source.__aiter__()
    while True:
        fut = asyncio.run_coroutine_threadsafe(_next(it), loop)
        while True:
            try:
                done, item = fut.result(POLL_S)
                break
            except concurrent.futures.TimeoutError:
                if loop.is_closed():
                    return
        if done:
            return
        yield item


async def _next(it: Any) -> tuple[bool, Any]:
    try:
        return False, await it.__anext__()
    except StopAsyncIteration:
        return True, None
