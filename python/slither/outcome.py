"""What a dispatch gives back: every input as a result or as a :class:`Failure`, and run statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

R = TypeVar("R")

FailureKind = Literal["error", "crash", "timeout", "session_lost", "serialization", "length", "aborted"]


@dataclass(frozen=True)
class Failure:
    """One input item that did not produce a result, and why."""

    index: int
    """Position of the item in the input."""
    item: Any
    batch: int | None
    """Pool-wide id of the batch the item was in (the last attempt's); None if it never reached a worker."""
    worker: int | None
    pid: int | None
    kind: FailureKind
    exception: BaseException | None
    traceback: str | None
    """The worker's formatted traceback, when user code raised."""
    exit_code: int | None = None
    signal: str | None = None
    attempts: int = 1
    """How many times this item ran (each split of a crashed batch counts)."""

    def __str__(self) -> str:
        if self.worker is None:
            where = "before reaching a worker" if self.batch is None else f"in batch {self.batch}"
        else:
            where = f"on worker {self.worker} (pid {self.pid}), batch {self.batch}"
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        return f"item {self.index} failed {where}{tries}: {self.describe()}"

    def describe(self) -> str:
        """One line on why, without repeating where."""
        if self.kind == "crash":
            if self.signal:
                return f"its worker was killed by {self.signal} while running it"
            if self.exit_code is not None:
                return f"its worker exited with code {self.exit_code} while running it"
            return "its worker died while running it"
        if self.kind == "timeout":
            return "its batch timed out; the worker was killed and replaced"
        if self.kind == "session_lost":
            return "the session's worker died or was replaced"
        if self.exception is not None:
            try:
                text = str(self.exception).split("\n", 1)[0]
            except Exception:
                text = "<str() failed>"
            return f"{type(self.exception).__name__}: {text}"
        return self.kind


@dataclass(frozen=True)
class RunStats:
    batches: int
    items: int
    succeeded: int
    failed: int
    retried_batches: int
    max_in_flight_seen: int
    wall_s: float


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """Results of the items that succeeded (in input order when ordered) and a Failure for every other."""

    results: list[R]
    failures: list[Failure]
    stats: RunStats
    indices: list[int] = field(default_factory=list, repr=False)
    """The input index of each entry of ``results``."""

    @property
    def ok(self) -> bool:
        return not self.failures

    def by_index(self) -> dict[int, R | Failure]:
        """Every input index mapped to its result or its Failure."""
        out: dict[int, R | Failure] = dict(zip(self.indices, self.results))
        out.update((f.index, f) for f in self.failures)
        return out


@dataclass(frozen=True)
class Reply:
    """One worker's answer to a broadcast."""

    worker: int
    pid: int
    value: Any


@dataclass(frozen=True)
class Retry:
    """Run failed items again, up to ``attempts`` times in all, waiting ``backoff * 2**n`` seconds.

    A batch of several items whose worker died (crash or timeout) is split in halves and both run again,
    recursively, without counting toward ``attempts``: a poison item ends up alone and costs only itself.
    Once an item fails alone, each run counts. When attempts run out, ``then`` applies.
    """

    attempts: int = 3
    backoff: float = 0.05
    then: Literal["skip", "raise"] = "raise"

    def __post_init__(self) -> None:
        from slither.errors import ConfigError

        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ConfigError(f"Retry attempts must be an integer of at least 1, got {self.attempts!r}")
        backoff = self.backoff
        if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or not 0 <= backoff < float("inf"):
            raise ConfigError(f"Retry backoff must be a non-negative number of seconds, got {backoff!r}")
        if self.then not in ("skip", "raise"):
            raise ConfigError(f"Retry then= must be 'skip' or 'raise', got {self.then!r}")

