"""Sessions: strict affinity. Every call of a session runs on the one worker it was pinned to, so state
kept in that worker's module globals is there on the next call. If the worker dies or is replaced, the
session's next call raises :class:`~slither.errors.SessionLost` instead of running elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from slither import errors
from slither.outcome import Outcome

if TYPE_CHECKING:
    from slither.pool import Pool


class Session:
    def __init__(self, pool: Pool, name: str | None, worker: int, generation: int,
                 cleanup: str | Callable[..., Any] | None) -> None:
        self.pool = pool
        self.name = name
        self.worker = worker
        self.generation = generation
        self._cleanup = cleanup
        self._closed = False
        self.pid = next((w.pid for w in pool.workers_info() if w.index == worker), 0)

    @property
    def _pin(self) -> tuple[int, int]:
        if self._closed:
            raise errors.SlitherError(f"session {self.name or self.worker} is closed")
        return (self.worker, self.generation)

    @property
    def alive(self) -> bool:
        """Whether the worker this session is pinned to is still the same process."""
        return self.pool._core.session_alive(self.worker, self.generation)

    def call(self, fn: str | Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.pool._call(fn, args, kwargs, self._pin, None)

    def map(self, fn: str | Callable[..., Any], iterable: Iterable[Any], **kwargs: Any) -> list[Any]:
        return self.pool.map(fn, iterable, _pin=self._pin, **kwargs)

    def imap(self, fn: str | Callable[..., Any], iterable: Iterable[Any], **kwargs: Any) -> Iterator[Any]:
        return self.pool.imap(fn, iterable, _pin=self._pin, **kwargs)

    def map_batches(self, fn: str | Callable[..., Any], iterable: Iterable[Any], **kwargs: Any) -> list[Any]:
        return self.pool.map_batches(fn, iterable, _pin=self._pin, **kwargs)

    def imap_batches(self, fn: str | Callable[..., Any], iterable: Iterable[Any], **kwargs: Any) -> Iterator[Any]:
        return self.pool.imap_batches(fn, iterable, _pin=self._pin, **kwargs)

    def dispatch(self, fn: str | Callable[..., Any], iterable: Iterable[Any], **kwargs: Any) -> Outcome:
        return self.pool.dispatch(fn, iterable, _pin=self._pin, **kwargs)

    def close(self) -> None:
        """Runs ``cleanup`` on the worker (if it is still alive) and releases the pin."""
        if self._closed:
            return
        try:
            if self._cleanup is not None and self.alive and not self.pool.closed:
                self.pool._call(self._cleanup, (), {}, (self.worker, self.generation), None)
        finally:
            self._closed = True
            self.pool._core.close_session(self.worker, self.generation)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<slither.Session {self.name or ''} worker={self.worker} pid={self.pid}>"
