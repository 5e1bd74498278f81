"""Pool statistics and worker descriptions: frozen objects with named fields, built by the native core.

``Pool.stats()`` returns a :class:`PoolStats`; ``Pool.workers_info()`` a list of :class:`WorkerInfo`. What
each counter counts is in the classes' docstrings (``help(slither.WorkerStats)``).
"""

from __future__ import annotations

from slither._native import _slither

PoolStats = _slither.PoolStats
WorkerStats = _slither.WorkerStats
WorkerInfo = _slither.WorkerInfo

__all__ = ["PoolStats", "WorkerInfo", "WorkerStats"]
