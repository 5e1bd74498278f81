"""slither: isolated Python worker processes coordinated from Rust.

>>> import slither
>>> with slither.Pool(workers=2) as pool:          # doctest: +SKIP
...     pool.map(abs, [-1, -2, 3])
[1, 2, 3]

Attributes are imported on first use, so that ``python -m slither._worker`` (which imports this package
first) stays cheap and never loads the native extension.
"""

from __future__ import annotations

import importlib

# Not typing.TYPE_CHECKING: importing typing would cost every worker's start several milliseconds.
TYPE_CHECKING = False

__version__ = "0.1.0"

_EXPORTS = {
    "AsyncResult": "slither._calls",
    "FixedBatch": "slither.batching",
    "KeyPartition": "slither.batching",
    "WeightedBatch": "slither.batching",
    "BatchLengthError": "slither.errors",
    "BatchTimeout": "slither.errors",
    "ConfigError": "slither.errors",
    "PoolBroken": "slither.errors",
    "PoolClosed": "slither.errors",
    "ProtocolError": "slither.errors",
    "RemoteTraceback": "slither.errors",
    "SerializationError": "slither.errors",
    "SessionLost": "slither.errors",
    "SlitherError": "slither.errors",
    "StoreError": "slither.errors",
    "TaskError": "slither.errors",
    "WorkerCrashed": "slither.errors",
    "Failure": "slither.outcome",
    "Outcome": "slither.outcome",
    "Reply": "slither.outcome",
    "Retry": "slither.outcome",
    "RunStats": "slither.outcome",
    "Pipe": "slither.pipe",
    "Pool": "slither.pool",
    "ProcessPoolExecutor": "slither.executor",
    "Session": "slither.session",
    "PoolStats": "slither.stats",
    "WorkerInfo": "slither.stats",
    "WorkerStats": "slither.stats",
    "Store": "slither.store",
}

# Spelled out (not computed) so that type checkers read it; tests/test_typing.py keeps it equal to _EXPORTS.
__all__ = [
    "AsyncResult",
    "BatchLengthError",
    "BatchTimeout",
    "ConfigError",
    "Failure",
    "FixedBatch",
    "KeyPartition",
    "Outcome",
    "Pipe",
    "Pool",
    "PoolBroken",
    "PoolClosed",
    "PoolStats",
    "ProcessPoolExecutor",
    "ProtocolError",
    "RemoteTraceback",
    "Reply",
    "Retry",
    "RunStats",
    "SerializationError",
    "Session",
    "SessionLost",
    "SlitherError",
    "Store",
    "StoreError",
    "TaskError",
    "WeightedBatch",
    "WorkerCrashed",
    "WorkerInfo",
    "WorkerStats",
]

if TYPE_CHECKING:
    # What the lazy __getattr__ below gives, spelled out for type checkers.
    from slither._calls import AsyncResult
    from slither.batching import FixedBatch, KeyPartition, WeightedBatch
    from slither.errors import (
        BatchLengthError,
        BatchTimeout,
        ConfigError,
        PoolBroken,
        PoolClosed,
        ProtocolError,
        RemoteTraceback,
        SerializationError,
        SessionLost,
        SlitherError,
        StoreError,
        TaskError,
        WorkerCrashed,
    )
    from slither.executor import ProcessPoolExecutor
    from slither.outcome import (
        Failure,
        Outcome,
        Reply,
        Retry,
        RunStats,
    )
    from slither.pipe import Pipe
    from slither.pool import Pool
    from slither.session import Session
    from slither.stats import PoolStats, WorkerInfo, WorkerStats
    from slither.store import Store


if not TYPE_CHECKING:
    # Hidden from type checkers: a module __getattr__ would make every misspelt name (slither.Pol) valid.
    def __getattr__(name: str) -> object:
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'slither' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
