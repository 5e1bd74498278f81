"""Argument-tuple calls for ``starmap`` and ``map(fn, *iterables)``: ``fn(*item)`` per item (and, for
``acall``, ``fn(*args, **kwargs)`` for an item ``(args, kwargs)``).

``Star(fn)`` travels to the workers (pickled by value; its class by reference, so this module must stay
importable there without the native extension) and resolves ``fn`` with the worker's own resolver, so a
``"module:function"`` name keeps working.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any


class Star:
    """Calls ``fn(*args)`` for one argument tuple (``fn(*args, **kwargs)`` with ``keywords``). Named after ``fn``
    in messages."""

    def __init__(self, ref: tuple[str, Any], name: str, keywords: bool = False) -> None:
        self.ref = ref
        self.keywords = keywords
        module, _, qualname = name.partition(":")
        self.__module__ = module
        self.__qualname__ = qualname or name
        self._fn: Callable[..., Any] | None = None

    def __call__(self, args: Iterable[Any]) -> Any:
        fn = self._fn
        if fn is None:
            from slither._worker.functions import resolve

            fn = self._fn = resolve(self.ref)
        if self.keywords:
            positional, keywords = args
            return fn(*positional, **keywords)
        return fn(*args)

    def __getstate__(self) -> dict[str, Any]:
        return {"ref": self.ref, "name": f"{self.__module__}:{self.__qualname__}", "keywords": self.keywords}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["ref"], state["name"], state["keywords"])  # type: ignore[misc]


class Zipped:
    """``zip(*iterables)`` that still knows its length when every input does (for progress totals)."""

    def __init__(self, iterables: tuple[Iterable[Any], ...]) -> None:
        self._iterables = iterables

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return zip(*self._iterables)

    def __len__(self) -> int:
        return min(len(it) for it in self._iterables)  # type: ignore[arg-type]


def run_chunk(fn: Callable[..., Any], chunk: list[tuple[Any, ...]]) -> list[Any]:
    """Runs in a worker: one chunk of ``ProcessPoolExecutor.map``'s calls, in order."""
    return [fn(*args) for args in chunk]
