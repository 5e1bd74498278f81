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
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Pool": "slither.pool",
    "AsyncResult": "slither._calls",
    "Session": "slither.session",
    "Store": "slither.store",
    "Pipe": "slither.pipe",
    "FixedBatch": "slither.batching",
    "WeightedBatch": "slither.batching",
    "KeyPartition": "slither.batching",
    "Outcome": "slither.outcome",
    "Failure": "slither.outcome",
    "RunStats": "slither.outcome",
    "Reply": "slither.outcome",
    "Retry": "slither.outcome",
    "PoolStats": "slither.stats",
    "WorkerStats": "slither.stats",
    "SlitherError": "slither.errors",
    "TaskError": "slither.errors",
    "WorkerCrashed": "slither.errors",
    "BatchTimeout": "slither.errors",
    "SessionLost": "slither.errors",
    "BatchLengthError": "slither.errors",
    "PoolClosed": "slither.errors",
    "PoolBroken": "slither.errors",
    "SerializationError": "slither.errors",
    "StoreError": "slither.errors",
    "ConfigError": "slither.errors",
    "ProtocolError": "slither.errors",
    "RemoteTraceback": "slither.errors",
    "WorkerInfo": "slither.stats",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
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
    from slither.outcome import Failure, Outcome, Reply, Retry, RunStats
    from slither.pipe import Pipe
    from slither.pool import Pool
    from slither.session import Session
    from slither.stats import PoolStats, WorkerInfo, WorkerStats
    from slither.store import Store


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'slither' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
