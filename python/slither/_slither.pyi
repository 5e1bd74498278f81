"""Type stubs for the native module (slither_py). The public API is in slither.pool, slither.store, ..."""

from typing import Any, final

__all__ = [
    "BUILD_GIL",
    "PROTOCOL",
    "BatchLengthError",
    "BatchTimeout",
    "Completion",
    "ConfigError",
    "PoolBroken",
    "PoolClosed",
    "PoolCore",
    "PoolStats",
    "ProtocolError",
    "RunCore",
    "Segment",
    "SerializationError",
    "SessionLost",
    "SlitherError",
    "SnapshotCore",
    "StoreCore",
    "StoreError",
    "TaskError",
    "TransferStats",
    "WorkerCrashed",
    "WorkerInfo",
    "WorkerStats",
    "__version__",
]
__version__: str
BUILD_GIL: bool
PROTOCOL: dict[str, Any]

class SlitherError(Exception): ...
class PoolClosed(SlitherError, RuntimeError): ...
class PoolBroken(SlitherError): ...
class SessionLost(SlitherError): ...
class WorkerCrashed(SlitherError): ...
class BatchTimeout(SlitherError, TimeoutError): ...
class TaskError(SlitherError): ...
class BatchLengthError(SlitherError): ...
class SerializationError(SlitherError): ...
class StoreError(SlitherError): ...
class ProtocolError(SlitherError): ...
class ConfigError(SlitherError, ValueError): ...

@final
class Completion:
    """One batch's answer: named, immutable fields (see slither_py/src/pool.rs)."""

    batch: int
    tag: int
    worker: int | None
    pid: int
    kind: str
    data: Any
    exit_code: int | None
    signal: str | None
    duration: float
    started: bool
    segment: Segment | None
    def __new__(
        cls,
        batch: int,
        tag: int,
        worker: int | None,
        pid: int,
        kind: str,
        data: Any = None,
        exit_code: int | None = None,
        signal: str | None = None,
        duration: float = 0.0,
        started: bool = True,
    ) -> Completion: ...

@final
class Segment:
    """A received shared-memory segment's descriptor, owned (closed when dropped unless taken)."""

    def take(self) -> int: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...

@final
class RunCore:
    def next(self, timeout: float | None = None) -> Completion | None: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def max_in_flight_seen(self) -> int: ...

@final
class WorkerInfo:
    """One worker slot now. ``state``: "starting", "ready", "draining", "dead" or "stopped"."""

    index: int
    pid: int
    generation: int
    state: str
    python: str
    gil: bool
    free_threaded_build: bool
    def __new__(
        cls, *, index: int, pid: int, generation: int, state: str, python: str, gil: bool,
        free_threaded_build: bool = False,
    ) -> WorkerInfo: ...

@final
class WorkerStats:
    """One worker slot's counters over every process it held (see the class docstring for each)."""

    index: int
    pid: int
    generation: int
    state: str
    batches: int
    items: int
    failures: int
    restarts: int
    recycles: int
    uptime_s: float
    rss_bytes: int
    peak_rss_bytes: int
    in_flight: int
    python: str
    gil: bool
    sessions: int
    def __new__(
        cls, *, index: int, pid: int, generation: int, state: str, batches: int = 0, items: int = 0,
        failures: int = 0, restarts: int = 0, recycles: int = 0, uptime_s: float = 0.0, rss_bytes: int = 0,
        peak_rss_bytes: int = 0, in_flight: int = 0, python: str = ..., gil: bool = True, sessions: int = 0,
    ) -> WorkerStats: ...

@final
class PoolStats:
    """The pool now: per-worker stats, queued and in-flight batches, whether it broke or closed."""

    workers: list[WorkerStats]
    queued: int
    in_flight: int
    max_in_flight_seen: int
    broken: str | None
    closed: bool
    transfers: TransferStats
    def __new__(
        cls, *, workers: list[WorkerStats], queued: int = 0, in_flight: int = 0, max_in_flight_seen: int = 0,
        broken: str | None = None, closed: bool = False, transfers: TransferStats | None = None,
    ) -> PoolStats: ...

@final
class TransferStats:
    """Payloads by path since the pool started: in the frame (inband) or in a shared-memory segment (shared);
    sent = host to worker, received = worker to host; bytes in the frame or the segment."""

    sent_inband: int
    sent_inband_bytes: int
    sent_shared: int
    sent_shared_bytes: int
    received_inband: int
    received_inband_bytes: int
    received_shared: int
    received_shared_bytes: int
    def __new__(
        cls, *, sent_inband: int = 0, sent_inband_bytes: int = 0, sent_shared: int = 0, sent_shared_bytes: int = 0,
        received_inband: int = 0, received_inband_bytes: int = 0, received_shared: int = 0,
        received_shared_bytes: int = 0,
    ) -> TransferStats: ...

@final
class PoolCore:
    def __new__(cls, config: dict[str, Any], init_payload: bytes, store: StoreCore | None = None) -> PoolCore: ...
    def wait_ready(self, timeout: float | None = None) -> bool: ...
    def new_run(self) -> RunCore: ...
    def submit(
        self,
        run: RunCore,
        tag: int,
        payload: bytes,
        items: int,
        timeout: float | None = None,
        pin: tuple[int, int] | None = None,
        segment: int | None = None,
    ) -> int: ...
    def cancel(self, run: RunCore) -> None: ...
    def open_session(self, timeout: float | None = 60.0) -> tuple[int, int]: ...
    def record_failures(self, worker: int, generation: int, count: int) -> None: ...
    def close_session(self, worker: int, generation: int) -> None: ...
    def session_alive(self, worker: int, generation: int) -> bool: ...
    def workers(self) -> list[WorkerInfo]: ...
    def stats(self) -> PoolStats: ...
    @property
    def size(self) -> int: ...
    def set_events(self, on: bool) -> None: ...
    def next_events(self, max: int = 1024, timeout: float = 0.0) -> list[dict[str, Any]]: ...
    def drain(self, timeout: float | None = None) -> bool: ...
    def shutdown(self, graceful: bool) -> None: ...
    @property
    def stopped(self) -> bool: ...

@final
class SnapshotCore:
    def get(self, table: str, key: bytes) -> bytes | None: ...
    def version(self, table: str) -> int: ...
    def keys(self, table: str) -> list[bytes]: ...
    def items(self, table: str) -> list[tuple[bytes, bytes]]: ...
    def len(self, table: str) -> int: ...
    def tables(self) -> list[str]: ...

@final
class StoreCore:
    """Not a subclass of SnapshotCore at runtime: it has the same read methods, over the current tables."""

    def __new__(cls) -> StoreCore: ...
    def get(self, table: str, key: bytes) -> bytes | None: ...
    def version(self, table: str) -> int: ...
    def keys(self, table: str) -> list[bytes]: ...
    def items(self, table: str) -> list[tuple[bytes, bytes]]: ...
    def len(self, table: str) -> int: ...
    def tables(self) -> list[str]: ...
    def put(self, table: str, key: bytes, value: bytes) -> int: ...
    def put_many(self, table: str, pairs: list[tuple[bytes, bytes]]) -> int: ...
    def delete(self, table: str, key: bytes) -> bool: ...
    def compare_and_swap(self, table: str, key: bytes, expected: bytes | None, new: bytes | None) -> bool: ...
    def reload(self, table: str, pairs: list[tuple[bytes, bytes]]) -> int: ...
    def reload_many(self, tables: list[tuple[str, list[tuple[bytes, bytes]]]]) -> list[int]: ...
    def snapshot(self) -> SnapshotCore: ...
    def handle_request(self, payload: bytes) -> bytes: ...
