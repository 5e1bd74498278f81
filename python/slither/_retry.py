"""Retries: the error policy's verdicts, their backoff, and the queue of batches waiting to run again.

Cost model. A batch's items share one worker, so a crash (or a timeout) kills every item of the batch:

- under ``"skip"`` / ``"raise"`` a crash costs its whole batch;
- under ``"retry"`` / ``Retry(...)`` a batch that killed its worker and held more than one item is split in
  halves and both are run again, recursively. Only the halves holding a poison item crash again, so the
  crashes converge on it: one poison item among ``n`` in a batch costs about ``log2(n)`` extra crashes and
  ends as its own Failure; every other item gets its result. These splitting runs are not charged to the
  policy's attempts (the guilty item is not known yet); once an item crashes alone, each of its runs is.

``Failure.attempts`` counts the runs of that item, splitting runs included.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from typing import Any

from slither import errors
from slither.outcome import Failure, Retry

# Failure kinds whose batch lost its worker with every item in it: the guilty item is unknown.
SPLITTABLE = frozenset({"crash", "timeout"})


class Batch:
    """Items sent together. ``attempts``: runs so far of these items; ``charged``: those the policy counts."""

    __slots__ = ("attempts", "charged", "indices", "items", "tag")

    def __init__(self, tag: int, indices: Sequence[int], items: list[Any], attempts: int = 1, charged: int = 0) -> None:
        self.tag = tag
        self.indices = indices
        self.items = items
        self.attempts = attempts
        self.charged = charged

    def halves(self) -> tuple[tuple[Sequence[int], list[Any]], tuple[Sequence[int], list[Any]]]:
        mid = len(self.items) // 2
        return (self.indices[:mid], self.items[:mid]), (self.indices[mid:], self.items[mid:])


def check_policy(policy: Any) -> None:
    if policy in ("raise", "skip", "retry") or isinstance(policy, Retry) or callable(policy):
        return
    raise errors.ConfigError(
        f"on_error must be 'raise', 'skip', 'retry', a slither.Retry or a callable, got {policy!r}"
    )


def decide(policy: Any, failure: Failure, charged: int | None = None) -> str:
    """The policy's verdict for one failure: "raise", "skip" or "retry".

    ``charged`` is how many failed runs of the item count toward ``Retry.attempts`` (default: all of them).
    """
    if policy == "raise" or policy == "skip":
        return str(policy)
    if policy == "retry":
        policy = Retry()
    if isinstance(policy, Retry):
        counted = failure.attempts if charged is None else charged
        return "retry" if counted < policy.attempts else policy.then
    verdict = policy(failure)
    if verdict not in ("raise", "skip", "retry"):
        raise errors.ConfigError(f"on_error callable returned {verdict!r}; expected 'raise', 'skip' or 'retry'")
    return str(verdict)


def plan(policy: Any, failure: Failure, size: int, charged: int, retryable: bool) -> str:
    """What to do with a failed batch of ``size`` items: "split", "retry", "skip" or "raise".

    ``failure`` is its first item's; ``charged`` counts the failed runs the policy charges, this one
    included. A batch that lost its worker with several items in it is split (if the policy retries at
    all) without charging anyone. A callable policy is asked once.
    """
    lost_worker = size > 1 and failure.kind in SPLITTABLE and retryable
    if callable(policy) and not isinstance(policy, (str, Retry)):
        verdict = decide(policy, failure)
        if verdict == "retry":
            return "split" if lost_worker else ("retry" if retryable else "skip")
        return verdict
    if lost_worker and (policy == "retry" or (isinstance(policy, Retry) and policy.attempts > 1)):
        return "split"
    verdict = decide(policy, failure, charged)
    if verdict == "retry" and not retryable:
        return policy.then if isinstance(policy, Retry) else "skip"
    return verdict


def delay(policy: Any, charged: int) -> float:
    """Seconds before a retry: ``backoff * 2**(charged - 1)``; splitting runs wait ``backoff``."""
    base = policy.backoff if isinstance(policy, Retry) else 0.05
    return base * (2 ** max(0, charged - 1))


class RetryQueue:
    """Batches waiting to run again, earliest due first."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Batch]] = []

    def __bool__(self) -> bool:
        return bool(self._heap)

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, batch: Batch, seconds: float) -> None:
        heapq.heappush(self._heap, (time.monotonic() + seconds, batch.tag, batch))

    def due_in(self) -> float | None:
        """Seconds until the earliest retry is due (0 if it is); None when none waits."""
        if not self._heap:
            return None
        return max(0.0, self._heap[0][0] - time.monotonic())

    def pop_due(self) -> Batch | None:
        if self._heap and self._heap[0][0] <= time.monotonic():
            return heapq.heappop(self._heap)[2]
        return None
