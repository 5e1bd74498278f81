"""Ordering: hands entries out in input order, holding back those that arrive early.

An entry is ``(start, values, None)`` covering input positions ``start .. start + len(values)`` or
``(index, None, Failure)`` for one position. Batches complete in any order (and retried or split ones
late); the buffer releases an entry once every position before it has been released.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slither.outcome import Failure

Entry = tuple[int, "list[Any] | None", "Failure | None"]


def width(entry: Entry) -> int:
    """How many input positions an entry covers."""
    return 1 if entry[1] is None else len(entry[1])


class Reorder:
    def __init__(self) -> None:
        self._buffer: dict[int, Entry] = {}
        self._next = 0

    def __len__(self) -> int:
        """Entries held back, waiting for an earlier one."""
        return len(self._buffer)

    def release(self, entries: Iterable[Entry]) -> Iterator[Entry]:
        """Takes ``entries`` in and yields every entry whose predecessors have all been released."""
        buffer = self._buffer
        for e in entries:
            buffer[e[0]] = e
        while self._next in buffer:
            e = buffer.pop(self._next)
            self._next += width(e)
            yield e

    def rest(self) -> Iterator[Entry]:
        """What is still held when the input is done (only if positions were skipped, which none are)."""
        for i in sorted(self._buffer):
            yield self._buffer.pop(i)
