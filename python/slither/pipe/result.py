"""What a pipe run gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StageFailure:
    """An item that left the pipe at ``stage`` because of ``error``."""

    stage: str
    item: Any
    error: BaseException | None
    failure: Any = None
    """The underlying :class:`slither.Failure` for worker stages (worker, pid, traceback, ...)."""


@dataclass
class StageStats:
    name: str
    kind: str
    items_in: int = 0
    items_out: int = 0
    failed: int = 0
    seconds: float = 0.0
    """Time spent in this stage's own work (host calls, or waiting on workers)."""


@dataclass
class PipeResult:
    run_id: str
    outputs: dict[str, list[Any]]
    failures: list[StageFailure]
    stages: list[StageStats]
    events: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def timings(self) -> dict[str, float]:
        return {s.name: s.seconds for s in self.stages}

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        return {s.name: {"in": s.items_in, "out": s.items_out, "failed": s.failed} for s in self.stages}

    def total(self) -> int:
        """Items in every bucket plus failures (equals the input count for a pipe with no 1→N stage)."""
        return sum(len(v) for v in self.outputs.values()) + len(self.failures)
