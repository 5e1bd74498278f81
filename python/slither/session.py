"""Sessions: strict affinity. Every call of a session runs on the one worker it was pinned to, so state
kept in that worker's module globals is there on the next call. If the worker dies or is replaced, the
session's next call raises :class:`~slither.errors.SessionLost` instead of running elsewhere.

A session holds the pool's dispatcher (never the pool itself) and passes its pin on every dispatch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal, overload

from slither import errors
from slither._dispatcher import CallOptions, collect
from slither._functions import describe

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's from 3.11; typing_extensions ships with every checker

    from slither._dispatcher import Dispatcher
    from slither._types import MapOptions, P, Per, R, T
    from slither.outcome import Outcome


class Session:
    def __init__(self, dispatcher: Dispatcher, name: str | None, worker: int, generation: int,
                 cleanup: str | Callable[..., Any] | None) -> None:
        self._dispatcher = dispatcher
        self.name = name
        self.worker = worker
        self.generation = generation
        self._cleanup = cleanup
        self._closed = False
        self.pid = next((w.pid for w in dispatcher.core.workers() if w.index == worker), 0)

    @property
    def _pin(self) -> tuple[int, int]:
        if self._closed:
            raise errors.SlitherError(f"session {self.name or self.worker} is closed")
        return (self.worker, self.generation)

    @property
    def alive(self) -> bool:
        """Whether the worker this session is pinned to is still the same process."""
        return bool(self._dispatcher.core.session_alive(self.worker, self.generation))

    @overload
    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def call(self, fn: str, /, *args: Any, **kwargs: Any) -> Any: ...
    def call(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Runs ``fn(*args, **kwargs)`` on the session's worker; every argument goes to ``fn``."""
        return self._dispatcher.call(fn, args, kwargs, pin=self._pin)

    def options(self, *, timeout: float | None = None) -> CallOptions:
        """The session's calls with options: ``session.options(timeout=5).call(fn, x)``.

        A call that overruns ``timeout`` seconds kills the session's worker (its state is lost: the next
        call raises :class:`~slither.errors.SessionLost`) and raises :class:`~slither.errors.BatchTimeout`.
        """
        return CallOptions(lambda fn, a, kw, t: self._dispatcher.call(fn, a, kw, pin=self._pin, timeout=t), None,
                           timeout)

    # Options as in Pool.imap; dispatch also takes per= as Pool.dispatch does.
    @overload
    def map(self, fn: Callable[[T], R], iterable: Iterable[T], **kwargs: Unpack[MapOptions]) -> list[R]: ...
    @overload
    def map(self, fn: str, iterable: Iterable[Any], **kwargs: Unpack[MapOptions]) -> list[Any]: ...
    def map(self, fn: str | Callable[..., Any], iterable: Iterable[Any], **kwargs: Unpack[MapOptions]) -> list[Any]:
        return collect(self.imap(fn, iterable, **kwargs))

    @overload
    def imap(self, fn: Callable[[T], R], iterable: Iterable[T], **kwargs: Unpack[MapOptions]) -> Iterator[R]: ...
    @overload
    def imap(self, fn: str, iterable: Iterable[Any], **kwargs: Unpack[MapOptions]) -> Iterator[Any]: ...
    def imap(self, fn: str | Callable[..., Any], iterable: Iterable[Any], **kwargs: Unpack[MapOptions]) -> Iterator[Any]:
        return self._dispatcher.imap(fn, iterable, "item", self._pin, **kwargs)

    @overload
    def map_batches(self, fn: Callable[[list[T]], list[R]], iterable: Iterable[T],
                    **kwargs: Unpack[MapOptions]) -> list[R]: ...
    @overload
    def map_batches(self, fn: str, iterable: Iterable[Any], **kwargs: Unpack[MapOptions]) -> list[Any]: ...
    def map_batches(self, fn: str | Callable[..., Any], iterable: Iterable[Any],
                    **kwargs: Unpack[MapOptions]) -> list[Any]:
        return collect(self.imap_batches(fn, iterable, **kwargs))

    @overload
    def imap_batches(self, fn: Callable[[list[T]], list[R]], iterable: Iterable[T],
                     **kwargs: Unpack[MapOptions]) -> Iterator[R]: ...
    @overload
    def imap_batches(self, fn: str, iterable: Iterable[Any], **kwargs: Unpack[MapOptions]) -> Iterator[Any]: ...
    def imap_batches(self, fn: str | Callable[..., Any], iterable: Iterable[Any],
                     **kwargs: Unpack[MapOptions]) -> Iterator[Any]:
        return self._dispatcher.imap(fn, iterable, "batch", self._pin, **kwargs)

    @overload
    def dispatch(self, fn: Callable[[T], R], iterable: Iterable[T], *, per: Literal["item"] = "item",
                 **kwargs: Unpack[MapOptions]) -> Outcome[R]: ...
    @overload
    def dispatch(self, fn: Callable[[list[T]], list[R]], iterable: Iterable[T], *, per: Literal["batch"],
                 **kwargs: Unpack[MapOptions]) -> Outcome[R]: ...
    @overload
    def dispatch(self, fn: str, iterable: Iterable[Any], *, per: Per = "item",
                 **kwargs: Unpack[MapOptions]) -> Outcome[Any]: ...
    def dispatch(self, fn: str | Callable[..., Any], iterable: Iterable[Any], *, per: Per = "item",
                 **kwargs: Unpack[MapOptions]) -> Outcome[Any]:
        return self._dispatcher.dispatch(fn, iterable, self._pin, per=per, **kwargs)

    def close(self) -> None:
        """Runs ``cleanup`` on the worker (if it is still alive) and releases the pin."""
        if self._closed:
            return
        try:
            if self._cleanup is not None and self.alive:
                try:
                    self._dispatcher.check_open()
                except errors.PoolClosed:
                    pass
                else:
                    try:
                        self._dispatcher.call(self._cleanup, (), {}, pin=(self.worker, self.generation))
                    except Exception as exc:
                        # Its own type (callers may catch it), with a note on where it came from.
                        note = getattr(exc, "add_note", None)  # Python 3.11+
                        if note is not None:
                            note(f"raised by the cleanup {describe(self._cleanup)} of session "
                                 f"{self.name or '(unnamed)'} on worker {self.worker} (pid {self.pid})")
                        raise
        finally:
            self._closed = True
            self._dispatcher.core.close_session(self.worker, self.generation)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<slither.Session {self.name or ''} worker={self.worker} pid={self.pid}>"
