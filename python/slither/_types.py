"""Type names shared by the public signatures (for type checkers; nothing here runs any logic).

``T`` is an input item's type and ``R`` a result's: ``Pool.map(f, xs)`` with ``f: Callable[[T], R]`` and
``xs: Iterable[T]`` is a ``list[R]``. A function given by name (``"module:function"``) has results of type
``Any``. The ``...Options`` dicts list the keywords of the map-like calls (checked again at run time by
:mod:`slither._config`), so that a checker reports a misspelt option or a wrong value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypedDict, TypeVar

from slither.outcome import Failure, Retry

if TYPE_CHECKING:
    from slither.batching import Batching

T = TypeVar("T")
T2 = TypeVar("T2")
R = TypeVar("R")
P = ParamSpec("P")

Per = Literal["item", "batch"]
"""``dispatch(per=...)``: call the function once per item, or once per batch with a list."""

Verdict = Literal["raise", "skip", "retry"]
"""What an ``on_error`` policy decides for one failure."""

OnError = Verdict | Retry | Callable[[Failure], Verdict]
"""``on_error=``: a verdict for every failure, a :class:`slither.Retry`, or a callable deciding per failure."""

Backend = Literal["local", "ray"]
"""``Pool(backend=...)``: worker processes on this machine, or Ray actors."""


class UnorderedOptions(TypedDict, total=False):
    """The options of ``Pool.imap_unordered`` (whose ``chunksize`` is a parameter and order is fixed)."""

    batch_size: int | None
    batching: Batching | None
    max_in_flight: int | None
    batch_timeout: float | None
    on_error: OnError
    progress: bool


class ListOptions(UnorderedOptions, total=False):
    """The options of the calls with a ``chunksize`` parameter (``map``, ``starmap``, ``amap``, ``..._async``)."""

    ordered: bool


class MapOptions(ListOptions, total=False):
    """The options of every other map-like call (``imap``, ``map_batches``, ``dispatch``, ``aimap``, sessions')."""

    chunksize: int | None


class PoolAliases(TypedDict, total=False):
    """``Pool(...)``'s spellings from ``multiprocessing.Pool`` and ``ProcessPoolExecutor``."""

    processes: int | None
    max_workers: int | None
    initializer: str | Callable[..., Any] | None
    initargs: tuple[Any, ...] | list[Any]
    maxtasksperchild: int | None
    max_tasks_per_child: int | None
    mp_context: Any  # accepted and ignored: workers are always fresh interpreters
    context: Any  # the same, multiprocessing.Pool's spelling
