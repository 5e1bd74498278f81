"""Type names shared by the public signatures (for type checkers; nothing here runs any logic).

``T`` is an input item's type and ``R`` a result's: ``Pool.map(f, xs)`` with ``f: Callable[[T], R]`` and
``xs: Iterable[T]`` is a ``list[R]``. A function given by name (``"module:function"``) has results of type
``Any``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, ParamSpec, TypeVar

from slither.outcome import Failure, Retry

T = TypeVar("T")
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
