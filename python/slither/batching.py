"""Batching strategies: how a stream of items is cut into the batches that travel to workers.

Each strategy has ``plan(items) -> list[list[int]]`` (the item indices of every batch, in dispatch
order), which the dispatcher follows lazily: ``FixedBatch`` and ``WeightedBatch`` never look further
ahead than the batch they are building; ``KeyPartition`` must see every item before it can close a
group, unless ``max_size`` closes it first.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from slither.errors import ConfigError

Batch = tuple[Sequence[int], list[Any]]


class Batching:
    """Base class of the strategies: ``batches(items)`` yields ``(input positions, items)`` lazily."""

    def batches(self, items: Iterable[Any]) -> Iterator[Batch]:
        raise NotImplementedError

    def plan(self, items: Iterable[Any]) -> list[list[int]]:
        """The item indices of each batch this strategy makes from ``items``."""
        return [list(idx) for idx, _ in self.batches(items)]


def _slices(items: Iterable[Any], size: Callable[[], int]) -> Iterator[Batch]:
    """Consecutive slices cut at C speed: no per-item Python work in the host."""
    it = iter(items)
    start = 0
    while True:
        chunk = list(itertools.islice(it, size()))
        if not chunk:
            return
        yield range(start, start + len(chunk)), chunk
        start += len(chunk)


@dataclass(frozen=True)
class FixedBatch(Batching):
    """Batches of ``size`` items (the last may be smaller)."""

    size: int

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            raise ConfigError(f"FixedBatch size must be a positive integer, got {self.size!r}")

    def batches(self, items: Iterable[Any]) -> Iterator[Batch]:
        return _slices(items, lambda: self.size)


@dataclass(frozen=True)
class WeightedBatch(Batching):
    """Batches whose summed ``weight(item)`` stays within ``max_weight``.

    A batch closes before the item that would push it past the limit; an item heavier than the limit
    travels alone.
    """

    max_weight: float
    weight: Callable[[Any], float] = field(default=lambda item: 1)

    def __post_init__(self) -> None:
        if not (isinstance(self.max_weight, (int, float)) and self.max_weight > 0):
            raise ConfigError(f"WeightedBatch max_weight must be positive, got {self.max_weight!r}")

    def batches(self, items: Iterable[Any]) -> Iterator[Batch]:
        idx: list[int] = []
        vals: list[Any] = []
        total = 0.0
        for i, v in enumerate(items):
            w = self.weight(v)
            if w < 0:
                raise ConfigError(f"WeightedBatch weight of item {i} is negative ({w!r})")
            if idx and total + w > self.max_weight:
                yield idx, vals
                idx, vals, total = [], [], 0.0
            idx.append(i)
            vals.append(v)
            total += w
        if idx:
            yield idx, vals


@dataclass(frozen=True)
class KeyPartition(Batching):
    """One batch per ``key(item)``, keys in first-seen order, split every ``max_size`` items."""

    key: Callable[[Any], Hashable]
    max_size: int | None = None

    def __post_init__(self) -> None:
        if self.max_size is not None and (not isinstance(self.max_size, int) or self.max_size < 1):
            raise ConfigError(f"KeyPartition max_size must be a positive integer or None, got {self.max_size!r}")

    def batches(self, items: Iterable[Any]) -> Iterator[Batch]:
        groups: dict[Hashable, tuple[list[int], list[Any]]] = {}
        for i, v in enumerate(items):
            k = self.key(v)
            group = groups.get(k)
            if group is None:
                group = groups[k] = ([], [])
            group[0].append(i)
            group[1].append(v)
            if self.max_size is not None and len(group[0]) == self.max_size:
                yield group
                groups[k] = ([], [])
        for group in groups.values():
            if group[0]:
                yield group


class AutoBatch(Batching):
    """``map``'s default: sizes batches so each takes about ``target_s`` in a worker, from measured durations."""

    def __init__(self, target_s: float = 0.02, first: int = 8, limit: int = 8192) -> None:
        self.target_s = target_s
        self.size = first
        self.limit = limit

    def observe(self, items: int, seconds: float) -> None:
        if items <= 0:
            return
        per_item = max(seconds / items, 1e-7)
        want = int(self.target_s / per_item)
        # Grow at most 4x per observation so one fast outlier does not make a huge batch.
        self.size = max(1, min(want, self.size * 4, self.limit))

    def batches(self, items: Iterable[Any]) -> Iterator[Batch]:
        return _slices(items, lambda: self.size)


def resolve_batching(batching: Batching | None, batch_size: int | None, default: int | None) -> Batching:
    if batching is not None:
        if batch_size is not None:
            raise ConfigError("pass either batching= or batch_size=, not both")
        if not isinstance(batching, Batching):
            raise ConfigError(f"batching must be FixedBatch, WeightedBatch or KeyPartition, got {batching!r}")
        return batching
    size = batch_size if batch_size is not None else default
    if size is None:
        return AutoBatch()
    return FixedBatch(size)
