"""Pool statistics as plain frozen dataclasses (read from the core in one call)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WorkerStats:
    index: int
    pid: int
    generation: int
    state: str
    batches: int
    """Batches this slot's workers answered (whatever the answer)."""
    items: int
    """Items in those batches."""
    failures: int
    """Failed batches (crash, timeout, whole-batch error), plus items whose own call raised where the core
    records them (``PoolCore.record_failures``)."""
    restarts: int
    """Workers of this slot that died (crash, kill, timeout) and were replaced (recycling counts in ``recycles``
    once the core reports it; a core without that counter counts recycling here)."""
    uptime_s: float
    rss_bytes: int
    """Resident memory now, read by the supervisor from /proc."""
    peak_rss_bytes: int
    """The highest resident memory any process in this slot reached (the kernel's high-water mark)."""
    in_flight: int
    python: str
    gil: bool
    sessions: int
    recycles: int = 0
    """Workers of this slot replaced on purpose (``max_tasks_per_worker``, ``max_memory_per_worker``)."""


_WORKER_FIELDS = frozenset(WorkerStats.__dataclass_fields__)


@dataclass(frozen=True)
class PoolStats:
    workers: list[WorkerStats]
    queued: int
    """Batches waiting in the core for room on a worker's channel."""
    in_flight: int
    """Batches written to workers and not yet answered."""
    max_in_flight_seen: int
    """The most batches ever submitted and unanswered at once (queued + in flight), pool-wide."""
    broken: str | None
    closed: bool

    @classmethod
    def from_core(cls, raw: dict[str, Any]) -> PoolStats:
        return cls(
            workers=[WorkerStats(**{k: v for k, v in w.items() if k in _WORKER_FIELDS}) for w in raw["workers"]],
            queued=raw["queued"],
            in_flight=raw["in_flight"],
            max_in_flight_seen=raw["max_in_flight_seen"],
            broken=raw["broken"],
            closed=raw["closed"],
        )
