"""slither's exception tree, declared once in the native module and re-exported here.

::

    SlitherError
    ├── PoolClosed, PoolBroken, ConfigError, ProtocolError
    ├── TaskError            user code raised and its exception could not be rebuilt as its own type
    ├── WorkerCrashed        the worker process died mid-batch (exit code / signal named)
    ├── BatchTimeout         the batch overran ``timeout=``; its worker was killed and replaced
    ├── SessionLost          a session's worker died or was replaced
    ├── BatchLengthError     a batch function returned the wrong length or not a list
    ├── SerializationError   an item, result or function would not pickle
    └── StoreError

An exception raised by user code in a worker is re-raised as its own type where it unpickles, with the
remote traceback as ``__cause__`` (a :class:`RemoteTraceback`).
"""

from __future__ import annotations

from slither._native import _slither

SlitherError = _slither.SlitherError
PoolClosed = _slither.PoolClosed
PoolBroken = _slither.PoolBroken
SessionLost = _slither.SessionLost
WorkerCrashed = _slither.WorkerCrashed
BatchTimeout = _slither.BatchTimeout
TaskError = _slither.TaskError
BatchLengthError = _slither.BatchLengthError
SerializationError = _slither.SerializationError
StoreError = _slither.StoreError
ProtocolError = _slither.ProtocolError
ConfigError = _slither.ConfigError


class RemoteTraceback(Exception):
    """Carries a worker's formatted traceback; set as ``__cause__`` of re-raised exceptions."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


__all__ = [
    "BatchLengthError",
    "BatchTimeout",
    "ConfigError",
    "PoolBroken",
    "PoolClosed",
    "ProtocolError",
    "RemoteTraceback",
    "SerializationError",
    "SessionLost",
    "SlitherError",
    "StoreError",
    "TaskError",
    "WorkerCrashed",
]
